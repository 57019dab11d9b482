//! An event logger: many tasks `submit` events without waiting, and a
//! `BatchExecutor` writes them to SQLite in batched transactions, flushing by
//! size or interval, one write at a time. `close()` drains everything queued
//! before the program exits; the example checks no event was lost.
//!
//! Run: `cargo run --release --example event_log`

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anybatch::{BatchExecutor, Executor};
use rusqlite::Connection;

const TASKS: usize = 50;
const EVENTS_PER_TASK: usize = 1_000;

#[derive(Clone, Debug)]
struct Event {
    source: usize,
    sequence: usize,
    kind: &'static str,
}

/// Inserts a batch of events in one transaction, off the executor.
struct EventWriter {
    connection: Arc<Mutex<Connection>>,
}

impl Executor for EventWriter {
    type Value = Event;
    type Output = ();
    type Error = rusqlite::Error;

    async fn execute(&self, events: &[Event]) -> rusqlite::Result<Vec<()>> {
        let events = events.to_vec();
        let connection = self.connection.clone();
        smol::unblock(move || {
            let mut connection = connection.lock().expect("no writer panicked");
            let transaction = connection.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO events (source, sequence, kind) VALUES (?1, ?2, ?3)",
                )?;
                for event in &events {
                    insert.execute((event.source, event.sequence, event.kind))?;
                }
            }
            transaction.commit()?;
            Ok(vec![(); events.len()])
        })
        .await
    }
}

fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("anybatch-event-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("events.db");
    let connection = Connection::open(&path).expect("open database");
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE events (id INTEGER PRIMARY KEY, source INTEGER, sequence INTEGER, kind TEXT);",
        )
        .expect("schema");
    let connection = Arc::new(Mutex::new(connection));
    let lost = Arc::new(AtomicUsize::new(0));

    let started = Instant::now();
    let stats = smol::block_on(async {
        let lost = lost.clone();
        let log = BatchExecutor::builder(EventWriter {
            connection: connection.clone(),
        })
        .max_batch_size(500)
        .max_delay(Duration::from_millis(20))
        .max_in_flight(1)
        .max_queued(10_000)
        .label("event log")
        .on_error(move |failure| {
            eprintln!("lost {} events: {}", failure.values.len(), failure.error);
            lost.fetch_add(failure.values.len(), Ordering::Relaxed);
        })
        .build()
        .expect("valid settings");
        let producers: Vec<_> = (0..TASKS)
            .map(|source| {
                let log = log.clone();
                smol::spawn(async move {
                    for sequence in 0..EVENTS_PER_TASK {
                        let kind = if sequence % 10 == 0 { "login" } else { "click" };
                        log.submit(Event {
                            source,
                            sequence,
                            kind,
                        })
                        .await
                        .expect("log is open");
                    }
                })
            })
            .collect();
        futures::future::join_all(producers).await;
        // Everything is submitted, much of it still queued: drain it.
        log.close().await;
        log.stats()
    });
    let elapsed = started.elapsed();

    let connection = connection.lock().expect("no writer panicked");
    let stored: usize = connection
        .query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))
        .expect("count");
    let logins: usize = connection
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'login'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    drop(connection);
    let _ = std::fs::remove_dir_all(&dir);

    let submitted = TASKS * EVENTS_PER_TASK;
    println!("{submitted} events submitted by {TASKS} tasks in {elapsed:.2?}");
    println!(
        "{stored} stored ({logins} logins) in {} transactions, {:.0} events each on average (largest {}), {:.2?} writing",
        stats.batches, stats.mean_batch_size, stats.largest_batch, stats.backend_time
    );
    if stored != submitted || lost.load(Ordering::Relaxed) != 0 {
        eprintln!("error: {stored} of {submitted} events stored");
        return ExitCode::FAILURE;
    }
    println!("ok: every event stored, none lost");
    ExitCode::SUCCESS
}
