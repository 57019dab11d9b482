//! Resolves the author of every post twice: once with one query per post (the
//! N+1 pattern), once through a `BatchFetcher` fed by one task per post.
//! The "database" is in memory and counts the queries it answers.
//!
//! Run: `cargo run --example quickstart`

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anybatch::{BatchFetcher, Fetcher, LoadError, Values};

const AUTHORS: u32 = 1_000;
const POSTS: u32 = 20_000;
const BATCH: usize = 100;

/// A stand-in for a SQL table of authors, counting the queries it serves.
struct Database {
    authors: HashMap<u32, String>,
    queries: AtomicUsize,
}

impl Database {
    fn seed() -> Self {
        // Author 13 was deleted: posts still point at it.
        let authors = (0..AUTHORS)
            .filter(|&id| id != 13)
            .map(|id| (id, format!("author #{id}")))
            .collect();
        Self {
            authors,
            queries: AtomicUsize::new(0),
        }
    }

    /// `SELECT id, name FROM authors WHERE id IN (...)`
    fn select_authors(&self, ids: &[u32]) -> Vec<(u32, String)> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        ids.iter()
            .filter_map(|id| self.authors.get(id).map(|name| (*id, name.clone())))
            .collect()
    }
}

struct AuthorFetcher(Arc<Database>);

impl Fetcher for AuthorFetcher {
    type Key = u32;
    type Value = String;
    type Error = std::io::Error;

    async fn fetch(
        &self,
        ids: &[u32],
        values: &mut Values<u32, String>,
    ) -> Result<(), Self::Error> {
        values.extend(self.0.select_authors(ids));
        Ok(())
    }
}

fn post_author(post: u32) -> u32 {
    (post * 7919) % AUTHORS
}

fn main() -> ExitCode {
    let db = Arc::new(Database::seed());
    let posts: Vec<u32> = (0..POSTS).collect();

    // 1. Naive: one query per post.
    let started = Instant::now();
    let naive: Vec<Option<String>> = posts
        .iter()
        .map(|&post| {
            db.select_authors(&[post_author(post)])
                .pop()
                .map(|(_, name)| name)
        })
        .collect();
    let naive_time = started.elapsed();
    let naive_queries = db.queries.swap(0, Ordering::Relaxed);

    // 2. Batched: one task per post, each loading its author.
    let started = Instant::now();
    let batched: Vec<Option<String>> = smol::block_on(async {
        let authors = BatchFetcher::builder(AuthorFetcher(db.clone()))
            .max_batch_size(BATCH)
            .label("authors")
            .build()
            .expect("valid settings");
        let tasks: Vec<_> = posts
            .iter()
            .map(|&post| {
                let authors = authors.clone();
                smol::spawn(async move { authors.load(post_author(post)).await })
            })
            .collect();
        let mut names = Vec::with_capacity(tasks.len());
        for task in tasks {
            match task.await {
                Ok(name) => names.push(Some(name)),
                Err(LoadError::NotFound) => names.push(None),
                Err(error) => panic!("unexpected load error: {error}"),
            }
        }
        authors.close().await;
        names
    });
    let batched_time = started.elapsed();
    let batched_queries = db.queries.load(Ordering::Relaxed);

    let missing = batched.iter().filter(|name| name.is_none()).count();
    println!("{POSTS} posts by {AUTHORS} authors (author 13 deleted)");
    println!("{:<10} {:>8} {:>12}", "pass", "queries", "wall time");
    println!("{:<10} {:>8} {:>12.2?}", "naive", naive_queries, naive_time);
    println!(
        "{:<10} {:>8} {:>12.2?}",
        "batched", batched_queries, batched_time
    );
    println!("posts whose author is missing (NotFound): {missing}");

    if naive != batched {
        eprintln!("error: the two passes returned different authors");
        return ExitCode::FAILURE;
    }
    let bound = (AUTHORS as usize).div_ceil(BATCH) + 2;
    if batched_queries > bound {
        eprintln!("error: {batched_queries} batched queries, expected at most {bound}");
        return ExitCode::FAILURE;
    }
    println!("ok: identical results, {naive_queries} queries became {batched_queries}");
    ExitCode::SUCCESS
}
