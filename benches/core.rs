//! A quick look at the core's own cost, each figure next to a floor measured
//! in the same run (the backend is instant: `value = key * 2`).
//!
//! Run: `cargo bench --bench core`, or only some parts:
//! `cargo bench --bench core -- burst`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use anybatch::{BatchFetcher, Fetcher, SmolSpawner, Values};
use futures::future::join_all;

struct Doubles {
    batches: Arc<AtomicUsize>,
}

impl Fetcher for Doubles {
    type Key = u64;
    type Value = u64;
    type Error = std::convert::Infallible;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        values.extend(keys.iter().map(|&key| (key, key * 2)));
        Ok(())
    }
}

/// The same backend behind a map-returning API: what delivering through a
/// `HashMap` (built by the fetcher, then looked up per key) would cost.
struct DoublesViaMap;

impl Fetcher for DoublesViaMap {
    type Key = u64;
    type Value = u64;
    type Error = std::convert::Infallible;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
        let mut found: HashMap<u64, u64> = keys.iter().map(|&key| (key, key * 2)).collect();
        for key in keys {
            if let Some(value) = found.remove(key) {
                values.insert(*key, value);
            }
        }
        Ok(())
    }
}

/// A smol executor run by two threads, like a small server.
struct Pool {
    executor: Arc<smol::Executor<'static>>,
    stop: async_channel::Sender<()>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Pool {
    fn new() -> Self {
        let executor = Arc::new(smol::Executor::new());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let threads = (0..2)
            .map(|_| {
                let (executor, stopped) = (executor.clone(), stopped.clone());
                thread::spawn(move || smol::block_on(executor.run(stopped.recv())).unwrap_or(()))
            })
            .collect();
        Self {
            executor,
            stop,
            threads,
        }
    }

    fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        smol::block_on(self.executor.spawn(future))
    }

    fn loader(&self, delay: Duration) -> (BatchFetcher<Doubles>, Arc<AtomicUsize>) {
        let batches = Arc::new(AtomicUsize::new(0));
        let loader = BatchFetcher::builder(Doubles {
            batches: batches.clone(),
        })
        .max_delay(delay)
        .spawner(SmolSpawner::on(self.executor.clone()))
        .build()
        .unwrap();
        (loader, batches)
    }

    fn shutdown(self) {
        drop(self.stop);
        self.threads
            .into_iter()
            .for_each(|thread| thread.join().unwrap());
    }
}

fn per_op(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn hit_path(pool: &Pool) {
    const KEYS: u64 = 10_000;
    const LOOKUPS: usize = 1_000_000;
    let (loader, _) = pool.loader(Duration::ZERO);
    let floor: RwLock<HashMap<u64, u64>> =
        RwLock::new((0..KEYS).map(|key| (key, key * 2)).collect());
    let started = Instant::now();
    for i in 0..LOOKUPS {
        let key = i as u64 % KEYS;
        black_box(floor.read().unwrap().get(&key).copied());
    }
    let floor_ns = per_op(started.elapsed(), LOOKUPS);
    let loader_ns = pool.run(async move {
        loader
            .load_many(&(0..KEYS).collect::<Vec<_>>())
            .await
            .unwrap();
        let started = Instant::now();
        for i in 0..LOOKUPS {
            black_box(loader.load(i as u64 % KEYS).await.unwrap());
        }
        per_op(started.elapsed(), LOOKUPS)
    });
    println!(
        "hit path            {loader_ns:8.1} ns/load   std RwLock<HashMap> floor {floor_ns:6.1} ns   ratio {:.2}",
        loader_ns / floor_ns
    );
}

fn lone_load_latency(pool: &Pool) {
    const SAMPLES: usize = 20_000;
    let (loader, _) = pool.loader(Duration::ZERO);
    let executor = pool.executor.clone();
    let (mut loads, mut hops) = pool.run(async move {
        let mut loads = Vec::with_capacity(SAMPLES);
        let mut hops = Vec::with_capacity(SAMPLES);
        for key in 0..SAMPLES as u64 {
            let started = Instant::now();
            black_box(loader.load(key).await.unwrap());
            loads.push(started.elapsed());
            // Floor: one round trip through a freshly spawned task.
            let started = Instant::now();
            black_box(executor.spawn(async move { key * 2 }).await);
            hops.push(started.elapsed());
        }
        (loads, hops)
    });
    loads.sort();
    hops.sort();
    let pct = |samples: &[Duration], p: usize| samples[samples.len() * p / 100].as_secs_f64() * 1e6;
    println!(
        "lone load, delay 0  p50 {:6.2} µs  p99 {:6.2} µs   spawn+await floor p50 {:5.2} µs  p99 {:5.2} µs",
        pct(&loads, 50),
        pct(&loads, 99),
        pct(&hops, 50),
        pct(&hops, 99)
    );
}

fn burst(pool: &Pool) {
    const KEYS: u64 = 10_000;
    for delay in [Duration::ZERO, Duration::from_millis(1)] {
        let (loader, batches) = pool.loader(delay);
        let elapsed = pool.run(async move {
            let started = Instant::now();
            let values = join_all((0..KEYS).map(|key| loader.load(key))).await;
            let elapsed = started.elapsed();
            assert!(values.iter().all(Result::is_ok));
            elapsed
        });
        let floor = pool.run(async move {
            let started = Instant::now();
            black_box(join_all((0..KEYS).map(|key| async move { key * 2 })).await);
            started.elapsed()
        });
        let batches = batches.load(Ordering::Relaxed);
        println!(
            "burst, join_all     {:8.1} ns/key    join_all floor {:6.1} ns   {batches} batches (delay {delay:?})",
            per_op(elapsed, KEYS as usize),
            per_op(floor, KEYS as usize)
        );
    }
}

/// Why `Fetcher` delivers into a sink: the same burst, with and without an
/// intermediate map.
fn delivery(pool: &Pool) {
    const KEYS: u64 = 10_000;
    const ROUNDS: u32 = 20;
    let spawner = SmolSpawner::on(pool.executor.clone());
    let (sink, map) = pool.run(async move {
        let keys: Vec<u64> = (0..KEYS).collect();
        let (mut sink, mut map) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ROUNDS {
            let batches = Arc::default();
            sink += time_load_many(Doubles { batches }, spawner.clone(), &keys).await;
            map += time_load_many(DoublesViaMap, spawner.clone(), &keys).await;
        }
        (sink, map)
    });
    let keys = (KEYS as usize) * ROUNDS as usize;
    println!(
        "load_many 10k, sink {:8.1} ns/key    via a map {:6.1} ns/key   ratio {:.2}",
        per_op(sink, keys),
        per_op(map, keys),
        per_op(map, keys) / per_op(sink, keys)
    );
}

/// How long one `load_many` of `keys` takes on a fresh loader.
async fn time_load_many<F: Fetcher<Key = u64>>(
    fetcher: F,
    spawner: SmolSpawner,
    keys: &[u64],
) -> Duration {
    let loader = BatchFetcher::builder(fetcher)
        .max_delay(Duration::ZERO)
        .spawner(spawner)
        .build()
        .unwrap();
    let started = Instant::now();
    black_box(loader.load_many(keys).await.unwrap());
    started.elapsed()
}

fn spawned_tasks(pool: &Pool) {
    const KEYS: u64 = 10_000;
    let (loader, batches) = pool.loader(Duration::from_millis(1));
    let executor = pool.executor.clone();
    let elapsed = pool.run(async move {
        let started = Instant::now();
        let tasks: Vec<_> = (0..KEYS)
            .map(|key| {
                let loader = loader.clone();
                executor.spawn(async move { loader.load(key).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        started.elapsed()
    });
    let batches = batches.load(Ordering::Relaxed);
    println!(
        "task per load       {:8.1} ns/key    {batches} batches, mean {:.1} keys (default settings)",
        per_op(elapsed, KEYS as usize),
        KEYS as f64 / batches as f64
    );
}

/// The per-request pattern: what creating (and dropping) a loader costs,
/// next to one load. Each timing waits until every loader it created has
/// stopped (its fetcher dropped), so the collectors' exits are counted.
fn per_request_loader(pool: &Pool) {
    const LOADERS: usize = 20_000;
    let executor = pool.executor.clone();
    let (create_ns, create_load_ns, load_ns) = pool.run(async move {
        let spawner = SmolSpawner::on(executor);
        let shared = Arc::new(AtomicUsize::new(0));
        let build = || {
            BatchFetcher::builder(Doubles {
                batches: shared.clone(),
            })
            .max_delay(Duration::ZERO)
            .spawner(spawner.clone())
            .build()
            .unwrap()
        };
        let all_stopped = || async {
            while Arc::strong_count(&shared) > 1 {
                smol::future::yield_now().await;
            }
        };
        let started = Instant::now();
        for _ in 0..LOADERS {
            black_box(build());
        }
        all_stopped().await;
        let create = per_op(started.elapsed(), LOADERS);
        let started = Instant::now();
        for key in 0..LOADERS as u64 {
            let loader = build();
            black_box(loader.load(key).await.unwrap());
        }
        all_stopped().await;
        let create_load = per_op(started.elapsed(), LOADERS);
        let loader = build();
        let started = Instant::now();
        for key in 0..LOADERS as u64 {
            black_box(loader.load(key).await.unwrap());
        }
        let load = per_op(started.elapsed(), LOADERS);
        (create, create_load, load)
    });
    println!(
        "per-request loader  create+drop {create_ns:6.0} ns   create+load+drop {create_load_ns:6.0} ns   one load (delay 0, new key) {load_ns:5.0} ns   create/load {:.1}",
        create_ns / load_ns
    );
}

/// A named part of this bench.
type Part = (&'static str, fn(&Pool));

fn main() {
    // `cargo bench --bench core -- burst` runs only the parts named `burst`.
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    let wanted = |name: &str| {
        filter
            .as_ref()
            .is_none_or(|filter| name.contains(filter.as_str()))
    };
    let pool = Pool::new();
    let parts: [Part; 6] = [
        ("per_request", per_request_loader),
        ("hit_path", hit_path),
        ("lone_load", lone_load_latency),
        ("burst", burst),
        ("delivery", delivery),
        ("spawned_tasks", spawned_tasks),
    ];
    for (name, part) in parts {
        if wanted(name) {
            part(&pool);
        }
    }
    pool.shutdown();
}
