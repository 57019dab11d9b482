//! Stress: 8 tasks × many random operations on multi-thread smol and tokio
//! executors: loads, `load_many`, clears, primes and loads dropped after
//! their first poll. Every load must get `key * 2` (primes store the same),
//! every load must come back exactly once, every batch must respect the cap
//! and hold distinct keys; every executed value must run exactly once.
//!
//! `ANYBATCH_STRESS_OPS` sets the operations per task (default 100,000).
//! Each test prints its figures (run with `--nocapture` to see them).
// The native suite; wasm32 runs tests/wasm.rs.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anybatch::{BatchExecutor, BatchFetcher, Executor, Fetcher, Values};
use common::Rt;
use futures::future::join_all;

const TASKS: u64 = 8;
/// Keys are `0..KEY_SPACE`: small enough that tasks meet on the same keys.
const KEY_SPACE: u64 = 1_000;
const MAX_BATCH_SIZE: usize = 64;
/// Loads a task issues together (one `join_all`), so batches fill.
const GROUP: u64 = 16;
/// A hang detector for a whole run, not a speed assertion.
const HANG_LIMIT: Duration = Duration::from_secs(600);

fn ops_per_task() -> u64 {
    std::env::var("ANYBATCH_STRESS_OPS")
        .ok()
        .and_then(|ops| ops.parse().ok())
        .unwrap_or(100_000)
}

/// A small deterministic generator (xorshift64*): reproducible runs with no
/// extra dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

// Runners: the same body on a 2-thread smol executor and a 2-worker tokio
// runtime (the shared harness's), with a hang detector far beyond any
// expected run.

fn on_smol<Fut>(body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    common::run_smol_within(HANG_LIMIT, body);
}

#[cfg(feature = "tokio")]
fn on_tokio<Fut>(body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    common::run_tokio_within(HANG_LIMIT, body);
}

/// Fails if `found` holds anything, naming how many and the first few.
fn assert_none<T: std::fmt::Debug>(found: &[T], what: &str) {
    let shown = &found[..found.len().min(5)];
    assert!(found.is_empty(), "{} {what}, first: {shown:?}", found.len());
}

// ---------------------------------------------------------------------------
// Loads
// ---------------------------------------------------------------------------

/// What the fetcher saw, kept by the test after the loader is gone.
struct Seen {
    batches: AtomicU64,
    /// How many batches held each key.
    fetches: Vec<AtomicU64>,
    /// Batches over the cap or holding a key twice (must stay empty).
    bad_batches: Mutex<Vec<Vec<u64>>>,
}

/// Doubles keys, and records every batch it is given.
struct Doubler(Arc<Seen>);

impl Fetcher for Doubler {
    type Key = u64;
    type Value = u64;
    type Error = std::convert::Infallible;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
        let seen = &*self.0;
        let distinct: HashSet<_> = keys.iter().collect();
        if distinct.len() != keys.len() || keys.len() > MAX_BATCH_SIZE {
            seen.bad_batches.lock().unwrap().push(keys.to_vec());
        }
        seen.batches.fetch_add(1, Ordering::Relaxed);
        for &key in keys {
            seen.fetches[key as usize].fetch_add(1, Ordering::Relaxed);
        }
        values.extend(keys.iter().map(|&key| (key, key * 2)));
        Ok(())
    }
}

/// What one task did.
#[derive(Default)]
struct Tally {
    loads: u64,
    answers: u64,
    wrong: Vec<(u64, String)>,
    clears: u64,
    primes: u64,
    dropped: u64,
}

async fn load_task(loader: BatchFetcher<Doubler>, seed: u64, ops: u64, clears: bool) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut done = 0;
    while done < ops {
        match rng.below(1_000) {
            // Per step, 10%: forget a key; 0.5%: forget everything.
            0..=99 if clears => {
                loader.clear(&rng.below(KEY_SPACE)).await;
                tally.clears += 1;
                done += 1;
            }
            100..=104 if clears => {
                loader.clear_all().await;
                tally.clears += 1;
                done += 1;
            }
            // 5%: prime the value a fetch would give.
            105..=154 => {
                let key = rng.below(KEY_SPACE);
                loader.prime(key, key * 2).await;
                tally.primes += 1;
                done += 1;
            }
            // 10%: one `load_many` of up to 8 keys, duplicates allowed.
            155..=254 => {
                let keys: Vec<u64> = (0..1 + rng.below(8))
                    .map(|_| rng.below(KEY_SPACE))
                    .collect();
                tally.loads += keys.len() as u64;
                done += keys.len() as u64;
                match loader.load_many(&keys).await {
                    Ok(values) => {
                        tally.answers += values.len() as u64;
                        for (key, value) in keys.iter().zip(values) {
                            if value != key * 2 {
                                tally.wrong.push((*key, format!("load_many gave {value}")));
                            }
                        }
                    }
                    Err(error) => tally.wrong.push((keys[0], format!("load_many: {error}"))),
                }
            }
            // 1%: a load dropped after its first poll, as by a caller that
            // gave up; the fetch it may have queued still answers others.
            255..=264 => {
                let mut load = Box::pin(loader.load(rng.below(KEY_SPACE)));
                let _ = futures::poll!(load.as_mut());
                tally.dropped += 1;
                done += 1;
            }
            // The rest: a group of concurrent loads.
            _ => {
                let keys: Vec<u64> = (0..GROUP).map(|_| rng.below(KEY_SPACE)).collect();
                tally.loads += GROUP;
                done += GROUP;
                let results = join_all(keys.iter().map(|&key| loader.load(key))).await;
                for (key, result) in keys.iter().zip(results) {
                    tally.answers += 1;
                    match result {
                        Ok(value) if value == key * 2 => {}
                        other => tally.wrong.push((*key, format!("{other:?}"))),
                    }
                }
            }
        }
    }
    tally
}

/// 8 tasks of random loads on one loader. With `clears`, keys are also
/// forgotten at random; without, every key must be fetched at most once
/// (dedup across tasks, batches and the cache).
async fn stress_loads(rt: Rt, max_delay: Duration, clears: bool) {
    let ops = ops_per_task();
    let started = Instant::now();
    let seen = Arc::new(Seen {
        batches: AtomicU64::new(0),
        fetches: (0..KEY_SPACE).map(|_| AtomicU64::new(0)).collect(),
        bad_batches: Mutex::default(),
    });
    let loader = BatchFetcher::builder(Doubler(seen.clone()))
        .max_batch_size(MAX_BATCH_SIZE)
        .max_delay(max_delay)
        .max_in_flight(4)
        .spawner(rt.spawner())
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| rt.spawn(load_task(loader.clone(), task + 1, ops, clears)))
        .collect();
    let tallies = common::join_all(tasks).await;
    loader.close().await;

    let loads: u64 = tallies.iter().map(|t| t.loads).sum();
    let answers: u64 = tallies.iter().map(|t| t.answers).sum();
    let wrong: Vec<_> = tallies.iter().flat_map(|t| t.wrong.iter()).collect();
    let fetched: Vec<u64> = seen
        .fetches
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let stats = loader.stats();
    println!(
        "stress {} loads, max_delay {max_delay:?}, clears {clears}: {loads} loads, {} clears, \
         {} primes, {} dropped loads in {:.2?}; {} batches (mean {:.1}, largest {}), \
         {} keys fetched, most fetches of one key {}, {} hits, {} joins",
        rt.name(),
        tallies.iter().map(|t| t.clears).sum::<u64>(),
        tallies.iter().map(|t| t.primes).sum::<u64>(),
        tallies.iter().map(|t| t.dropped).sum::<u64>(),
        started.elapsed(),
        stats.batches,
        stats.mean_batch_size,
        stats.largest_batch,
        fetched.iter().sum::<u64>(),
        fetched.iter().max().unwrap(),
        stats.cache_hits,
        stats.joins,
    );
    assert_none(&wrong, "wrong answers");
    assert_eq!(answers, loads, "every load answered exactly once");
    assert_none(
        &seen.bad_batches.lock().unwrap(),
        "batches over the cap or with a repeated key",
    );
    assert_eq!(stats.batches, seen.batches.load(Ordering::Relaxed));
    assert_eq!(
        stats.failed_batches + stats.panicked_batches + stats.closed,
        0
    );
    if !clears {
        let twice: Vec<_> = (0..KEY_SPACE)
            .filter(|&k| fetched[k as usize] > 1)
            .collect();
        assert_none(&twice, "keys fetched more than once with no clear");
    }
}

#[test]
fn loads_on_smol() {
    on_smol(|rt| stress_loads(rt, Duration::from_micros(100), true));
}

#[test]
fn loads_without_clears_fetch_each_key_once_on_smol() {
    on_smol(|rt| stress_loads(rt, Duration::ZERO, false));
}

#[cfg(feature = "tokio")]
#[test]
fn loads_on_tokio() {
    on_tokio(|rt| stress_loads(rt, Duration::from_micros(100), true));
}

#[cfg(feature = "tokio")]
#[test]
fn loads_without_clears_fetch_each_key_once_on_tokio() {
    on_tokio(|rt| stress_loads(rt, Duration::ZERO, false));
}

// ---------------------------------------------------------------------------
// Executes
// ---------------------------------------------------------------------------

/// Doubles values and counts how often each one ran.
struct Runs(Arc<Vec<AtomicU8>>);

impl Executor for Runs {
    type Value = u64;
    type Output = u64;
    type Error = std::convert::Infallible;

    async fn execute(&self, values: &[u64]) -> Result<Vec<u64>, Self::Error> {
        for &value in values {
            self.0[value as usize].fetch_add(1, Ordering::Relaxed);
        }
        Ok(values.iter().map(|value| value * 2).collect())
    }
}

/// 8 tasks each execute their own range of values (a tenth submitted
/// fire-and-forget); after close, every value ran exactly once and every
/// `execute` got its own value's output.
async fn stress_executes(rt: Rt) {
    let ops = ops_per_task();
    let started = Instant::now();
    let runs = Arc::new(
        (0..TASKS * ops)
            .map(|_| AtomicU8::new(0))
            .collect::<Vec<_>>(),
    );
    let executor = BatchExecutor::builder(Runs(runs.clone()))
        .max_batch_size(MAX_BATCH_SIZE)
        .max_delay(Duration::from_micros(100))
        .max_in_flight(4)
        .max_queued(1_024)
        .spawner(rt.spawner())
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let executor = executor.clone();
            rt.spawn(async move {
                let mut rng = Rng::new(task + 100);
                let mut wrong = Vec::new();
                let mut value = task * ops;
                let end = value + ops;
                while value < end {
                    if rng.below(10) == 0 {
                        executor.submit(value).await.expect("open");
                        value += 1;
                        continue;
                    }
                    let group: Vec<u64> = (value..end.min(value + GROUP)).collect();
                    value += group.len() as u64;
                    let outputs = join_all(group.iter().map(|&v| executor.execute(v))).await;
                    for (v, output) in group.iter().zip(outputs) {
                        if output != Ok(v * 2) {
                            wrong.push((*v, format!("{output:?}")));
                        }
                    }
                }
                wrong
            })
        })
        .collect();
    let wrong: Vec<_> = common::join_all(tasks).await.concat();
    executor.close().await;
    let counts: Vec<u8> = runs.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    let stats = executor.stats();
    println!(
        "stress {} executes: {} values in {:.2?}; {} batches (mean {:.1}, largest {})",
        rt.name(),
        counts.len(),
        started.elapsed(),
        stats.batches,
        stats.mean_batch_size,
        stats.largest_batch,
    );
    assert_none(&wrong, "wrong outputs");
    let not_once: Vec<_> = (0..counts.len()).filter(|&v| counts[v] != 1).collect();
    assert_none(&not_once, "values not run exactly once");
    assert!(stats.largest_batch <= MAX_BATCH_SIZE as u64);
}

#[test]
fn executes_on_smol() {
    on_smol(stress_executes);
}

#[cfg(feature = "tokio")]
#[test]
fn executes_on_tokio() {
    on_tokio(stress_executes);
}
