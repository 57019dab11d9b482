//! The N+1 problem on a real SQLite database, and the same work through
//! `BatchFetcher`.
//!
//! Seeds 10,000 authors and 100,000 posts (a few authors deleted), then
//! resolves "every post with its author" twice on smol, from one task per post:
//!
//! 1. naive: each task runs `SELECT ... WHERE id = ?` for its post's author;
//! 2. batched: each task calls `authors.load(author_id)`, and the loader turns
//!    those calls into `SELECT ... WHERE id IN (...)` batches.
//!
//! SQLite calls block, so they run off the executor (`smol::unblock`) on a
//! small pool of connections, one per query in flight. Exits non-zero if the
//! two passes disagree or the batched pass issued more queries than
//! `ceil(distinct authors / max_batch_size)` plus a small slack.
//!
//! Run: `cargo run --release --example sqlite`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anybatch::{BatchFetcher, Fetcher, LoadError, Values};
use rusqlite::{params_from_iter, Connection, OpenFlags};

const AUTHORS: i64 = 10_000;
const POSTS: i64 = 100_000;
/// Authors deleted after seeding: their posts must come back as `NotFound`.
const DELETED: [i64; 4] = [13, 4_242, 7_001, 9_999];
/// Well under SQLite's bound-parameter limit (32,766 since 3.32, 999 before).
const BATCH: usize = 500;
/// Queries in flight at once, and so connections in the pool.
const CONNECTIONS: usize = 4;

/// A few read connections to one database file, each lent to one query at a
/// time, counting the SELECTs they run.
struct Pool {
    idle: async_channel::Receiver<Connection>,
    returned: async_channel::Sender<Connection>,
    queries: AtomicUsize,
}

impl Pool {
    fn open(path: &Path, size: usize) -> rusqlite::Result<Arc<Self>> {
        let (returned, idle) = async_channel::bounded(size);
        for _ in 0..size {
            let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            returned.try_send(connection).expect("pool has room");
        }
        Ok(Arc::new(Self {
            idle,
            returned,
            queries: AtomicUsize::new(0),
        }))
    }

    /// Runs `query` on an idle connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let connection = self.idle.recv().await.expect("the pool owns its sender");
        self.queries.fetch_add(1, Ordering::Relaxed);
        let (connection, result) = smol::unblock(move || {
            let result = query(&connection);
            (connection, result)
        })
        .await;
        self.returned
            .try_send(connection)
            .expect("a slot was freed");
        result
    }

    fn take_query_count(&self) -> usize {
        self.queries.swap(0, Ordering::Relaxed)
    }
}

/// `SELECT id, name FROM authors WHERE id IN (...)`, one query per batch.
struct AuthorNames(Arc<Pool>);

impl Fetcher for AuthorNames {
    type Key = i64;
    type Value = Arc<str>;
    type Error = rusqlite::Error;

    async fn fetch(&self, ids: &[i64], values: &mut Values<i64, Arc<str>>) -> rusqlite::Result<()> {
        let ids = ids.to_vec();
        let rows = self
            .0
            .run(move |connection| {
                let marks = vec!["?"; ids.len()].join(",");
                let sql = format!("SELECT id, name FROM authors WHERE id IN ({marks})");
                let mut statement = connection.prepare_cached(&sql)?;
                let rows = statement.query_map(params_from_iter(&ids), |row| {
                    Ok((row.get::<_, i64>(0)?, Arc::from(row.get::<_, String>(1)?)))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        values.extend(rows);
        Ok(())
    }
}

/// Creates the database in a fresh temporary directory.
fn seed() -> rusqlite::Result<(PathBuf, Vec<(i64, i64)>)> {
    let dir = std::env::temp_dir().join(format!("anybatch-sqlite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("blog.db");
    let mut connection = Connection::open(&path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.execute_batch(
        "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL, title TEXT NOT NULL);",
    )?;
    let transaction = connection.transaction()?;
    {
        let mut insert = transaction.prepare("INSERT INTO authors (id, name) VALUES (?1, ?2)")?;
        for id in 0..AUTHORS {
            insert.execute((id, format!("Author {id}")))?;
        }
        let mut insert =
            transaction.prepare("INSERT INTO posts (id, author_id, title) VALUES (?1, ?2, ?3)")?;
        for id in 0..POSTS {
            // Every author writes ten posts, scattered over the table.
            let author = (id * 7_919) % AUTHORS;
            insert.execute((id, author, format!("Post {id}")))?;
            if (id + 1) % 25_000 == 0 {
                println!("  seeded {} of {POSTS} posts", id + 1);
            }
        }
        let mut delete = transaction.prepare("DELETE FROM authors WHERE id = ?1")?;
        for id in DELETED {
            delete.execute([id])?;
        }
    }
    transaction.commit()?;
    let mut statement = connection.prepare("SELECT id, author_id FROM posts ORDER BY id")?;
    let posts = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(i64, i64)>>>()?;
    Ok((path, posts))
}

type Resolved = Vec<Result<Arc<str>, String>>;

/// One task per post, each running its own `SELECT ... WHERE id = ?`.
async fn resolve_naive(pool: &Arc<Pool>, posts: &[(i64, i64)]) -> Resolved {
    let tasks: Vec<_> = posts
        .iter()
        .map(|&(_, author)| {
            let pool = pool.clone();
            smol::spawn(async move {
                let name = pool
                    .run(move |connection| {
                        let mut statement =
                            connection.prepare_cached("SELECT name FROM authors WHERE id = ?1")?;
                        let mut rows = statement.query([author])?;
                        rows.next()?.map(|row| row.get::<_, String>(0)).transpose()
                    })
                    .await;
                match name {
                    Ok(Some(name)) => Ok(Arc::from(name)),
                    Ok(None) => Err("not found".to_owned()),
                    Err(error) => Err(error.to_string()),
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await
}

/// One task per post, each loading its author through the loader.
async fn resolve_batched(authors: &BatchFetcher<AuthorNames>, posts: &[(i64, i64)]) -> Resolved {
    let tasks: Vec<_> = posts
        .iter()
        .map(|&(_, author)| {
            let authors = authors.clone();
            smol::spawn(async move {
                match authors.load(author).await {
                    Ok(name) => Ok(name),
                    Err(LoadError::NotFound) => Err("not found".to_owned()),
                    Err(error) => Err(error.to_string()),
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> rusqlite::Result<ExitCode> {
    let started = Instant::now();
    println!("seeding {AUTHORS} authors and {POSTS} posts (SQLite, WAL)");
    let (path, posts) = seed()?;
    println!("  done in {:.2?}", started.elapsed());
    let pool = Pool::open(&path, CONNECTIONS)?;

    let (naive, naive_time) = timed(|| smol::block_on(resolve_naive(&pool, &posts)));
    let naive_queries = pool.take_query_count();

    let authors = BatchFetcher::builder(AuthorNames(pool.clone()))
        .max_batch_size(BATCH)
        .max_in_flight(CONNECTIONS)
        .label("authors")
        .build()
        .expect("valid settings");
    let (batched, batched_time) = timed(|| {
        smol::block_on(async {
            let resolved = resolve_batched(&authors, &posts).await;
            authors.close().await;
            resolved
        })
    });
    let batched_queries = pool.take_query_count();
    let stats = authors.stats();

    let mut distinct: Vec<i64> = posts.iter().map(|&(_, author)| author).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let not_found = batched.iter().filter(|name| name.is_err()).count();

    println!();
    println!(
        "every post with its author, one task per post ({} posts, {} distinct authors)",
        posts.len(),
        distinct.len()
    );
    println!("{:<24} {:>10} {:>12}", "", "queries", "wall time");
    println!(
        "{:<24} {:>10} {:>12.2?}",
        "naive (N+1)", naive_queries, naive_time
    );
    println!(
        "{:<24} {:>10} {:>12.2?}",
        "BatchFetcher", batched_queries, batched_time
    );
    println!(
        "loader: {} loads = {} keys fetched in {} batches (mean {:.0}, largest {}) + {} joins of keys in flight + {} cache hits; {} not found",
        stats.requests,
        stats.queued,
        stats.batches,
        stats.mean_batch_size,
        stats.largest_batch,
        stats.joins,
        stats.cache_hits,
        stats.not_found
    );
    println!("posts whose author was deleted (NotFound): {not_found}");
    if let Some(index) = batched.iter().position(Result::is_err) {
        let (post, author) = posts[index];
        println!(
            "  e.g. post {post} -> author {author}: {:?}",
            batched[index]
        );
    }

    let _ = std::fs::remove_dir_all(path.parent().expect("file in a directory"));
    if naive != batched {
        eprintln!("error: the naive and batched passes returned different authors");
        return Ok(ExitCode::FAILURE);
    }
    let bound = distinct.len().div_ceil(BATCH) + 3;
    if batched_queries > bound {
        eprintln!("error: the batched pass issued {batched_queries} queries, more than {bound}");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "ok: identical results; {naive_queries} queries became {batched_queries} (bound {bound})"
    );
    Ok(ExitCode::SUCCESS)
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let result = work();
    (result, started.elapsed())
}
