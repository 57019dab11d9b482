//! The cache-hit path with each store, next to its floors, measured in the
//! same run: a `std::sync::RwLock<HashMap>` lookup + clone, and the same
//! behind `async_lock::RwLock` (the lock the identity map uses).
//!
//! Run: `cargo bench --bench stores`; `cargo bench --bench stores -- lru`
//! runs only the lines whose name contains `lru`. Instruction counts per hit
//! are repeatable whatever else the machine does: run one line under
//! `valgrind --tool=callgrind` with `HITS=0` and with `HITS=1000000`, and
//! divide the difference by a million (see `benches/README.md`).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anybatch::{BatchFetcher, Fetcher, LruStore, TtlStore, Values};

const KEYS: u64 = 10_000;
/// How many hits each line times (`HITS` in the environment overrides).
fn hit_count() -> usize {
    std::env::var("HITS")
        .ok()
        .and_then(|hits| hits.parse().ok())
        .unwrap_or(1_000_000)
}

struct Doubles;

impl Fetcher for Doubles {
    type Key = u64;
    type Value = u64;
    type Error = std::convert::Infallible;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
        values.extend(keys.iter().map(|&key| (key, key * 2)));
        Ok(())
    }
}

/// A value that is costly to clone: 1 KiB of text, as is or behind `Arc`.
struct Pages;

impl Fetcher for Pages {
    type Key = u64;
    type Value = String;
    type Error = std::convert::Infallible;

    async fn fetch(
        &self,
        keys: &[u64],
        values: &mut Values<u64, String>,
    ) -> Result<(), Self::Error> {
        values.extend(keys.iter().map(|&key| (key, page(key))));
        Ok(())
    }
}

struct SharedPages;

impl Fetcher for SharedPages {
    type Key = u64;
    type Value = Arc<String>;
    type Error = std::convert::Infallible;

    async fn fetch(
        &self,
        keys: &[u64],
        values: &mut Values<u64, Arc<String>>,
    ) -> Result<(), Self::Error> {
        values.extend(keys.iter().map(|&key| (key, Arc::new(page(key)))));
        Ok(())
    }
}

fn page(key: u64) -> String {
    format!("{key:>1024}")
}

/// Sequential hits, in ns per hit.
async fn hits_of<F: Fetcher<Key = u64>>(loader: &BatchFetcher<F>) -> f64 {
    let hits = hit_count();
    let started = Instant::now();
    for i in 0..hits {
        let _ = black_box(loader.load(i as u64 % KEYS).await);
    }
    per_hit(started, hits)
}

fn per_hit(started: Instant, hits: usize) -> f64 {
    started.elapsed().as_nanos() as f64 / hits.max(1) as f64
}

async fn warmed<F: Fetcher<Key = u64>>(loader: BatchFetcher<F>) -> BatchFetcher<F> {
    let keys: Vec<u64> = (0..KEYS).collect();
    let _ = loader.load_each(&keys).await;
    loader
}

fn std_floor() -> f64 {
    let map: RwLock<HashMap<u64, u64>> = RwLock::new((0..KEYS).map(|key| (key, key * 2)).collect());
    let hits = hit_count();
    let started = Instant::now();
    for i in 0..hits {
        black_box(map.read().unwrap().get(&(i as u64 % KEYS)).copied());
    }
    per_hit(started, hits)
}

async fn async_lock_floor() -> f64 {
    let map: async_lock::RwLock<HashMap<u64, u64>> =
        async_lock::RwLock::new((0..KEYS).map(|key| (key, key * 2)).collect());
    let hits = hit_count();
    let started = Instant::now();
    for i in 0..hits {
        let slots = match map.try_read() {
            Some(slots) => slots,
            None => map.read().await,
        };
        black_box(slots.get(&(i as u64 % KEYS)).copied());
    }
    per_hit(started, hits)
}

/// The lines to run (the command line's filter) and the first line's figure,
/// which every line printed is compared with.
struct Lines {
    filter: Option<String>,
    floor: Option<f64>,
}

impl Lines {
    fn wanted(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| name.contains(filter.as_str()))
    }

    fn print(&mut self, name: &str, ns: f64) {
        let floor = *self.floor.get_or_insert(ns);
        println!("{name:34} {ns:6.1}  ({:.2})", ns / floor);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is a filter.
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    let mut lines = Lines {
        filter,
        floor: None,
    };
    println!(
        "{} sequential hits over {KEYS} keys from one task: ns per hit (ratio to the first line)",
        hit_count()
    );
    smol::block_on(async {
        if lines.wanted("floor std") {
            lines.print("floor std RwLock<HashMap>", std_floor());
        }
        if lines.wanted("floor async_lock") {
            lines.print("floor async_lock RwLock<HashMap>", async_lock_floor().await);
        }
        if lines.wanted("default") {
            let loader = warmed(BatchFetcher::builder(Doubles).build().unwrap()).await;
            lines.print("default store (MapStore)", hits_of(&loader).await);
        }
        if lines.wanted("lru") {
            let store = LruStore::new(KEYS as usize);
            let loader = warmed(BatchFetcher::builder(Doubles).store(store).build().unwrap()).await;
            lines.print("lru store (LruStore, all keys fit)", hits_of(&loader).await);
        }
        if lines.wanted("ttl") {
            let store = TtlStore::new(Duration::from_secs(3600));
            let loader = warmed(BatchFetcher::builder(Doubles).store(store).build().unwrap()).await;
            lines.print("ttl store (TtlStore)", hits_of(&loader).await);
        }
        if lines.wanted("string") {
            let loader = warmed(BatchFetcher::builder(Pages).build().unwrap()).await;
            lines.print("value String of 1 KiB, cloned", hits_of(&loader).await);
        }
        if lines.wanted("arc") {
            let loader = warmed(BatchFetcher::builder(SharedPages).build().unwrap()).await;
            lines.print("value Arc<String> of 1 KiB", hits_of(&loader).await);
        }
    });
}
