//! One measured run of each workload, generic over the loader. Each runs as a
//! task on the shared runtime; only the loads themselves are timed (building
//! a loader and checking the values are not).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::subjects::{Counts, Fetched, Subject, Tuning, WriteSubject};

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub elapsed: Duration,
    /// What the backend was asked for during the timed part.
    pub fetched: Fetched,
    /// Per-load percentiles, for the latency workload.
    pub latency: Option<Latency>,
}

#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

impl Sample {
    fn new(elapsed: Duration, counts: &Counts) -> Self {
        Self {
            elapsed,
            fetched: counts.snapshot(),
            latency: None,
        }
    }
}

fn check(key: u64, value: u64) {
    assert_eq!(value, key * 2, "wrong value for key {key}");
}

/// A loader of `S` with `keys` (0, 1, ...) already fetched, for the hit path.
pub async fn preloaded<S: Subject>(keys: u64) -> (S, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let loader = S::build(Tuning::Batching, &counts);
    let values = join_all((0..keys).map(|key| loader.load(key))).await;
    for (key, value) in (0..keys).zip(values) {
        check(key, value);
    }
    (loader, counts)
}

/// Workload 1: `loads` sequential loads of known keys from one task.
pub async fn hit_path<S: Subject>(
    loader: S,
    counts: Arc<Counts>,
    known: u64,
    loads: u64,
) -> Sample {
    let before = counts.snapshot();
    let start = Instant::now();
    for i in 0..loads {
        let key = i % known;
        let value = loader.load(key).await;
        // Kept cheap inside the loop: a mismatch still fails the run.
        if value != key * 2 {
            check(key, value);
        }
    }
    let elapsed = start.elapsed();
    let after = counts.snapshot();
    let fetched = Fetched {
        keys: after.keys - before.keys,
        batches: after.batches - before.batches,
        largest: if after.batches > before.batches {
            after.largest
        } else {
            0
        },
    };
    Sample {
        elapsed,
        fetched,
        latency: None,
    }
}

/// Workload 2a: `keys` distinct keys, loaded by one task through `join_all`.
pub async fn burst_joined<S: Subject>(keys: u64) -> Sample {
    let counts = Arc::new(Counts::default());
    let loader = S::build(Tuning::Batching, &counts);
    let start = Instant::now();
    let values = join_all((0..keys).map(|key| loader.load(key))).await;
    let sample = Sample::new(start.elapsed(), &counts);
    for (key, value) in (0..keys).zip(values) {
        check(key, value);
    }
    sample
}

/// How the spawned tasks of workload 2b are awaited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gather {
    /// Each `JoinHandle` awaited in turn, in spawn order (the default).
    #[default]
    InOrder,
    /// A `tokio::task::JoinSet`, drained in completion order.
    JoinSet,
    /// `futures::future::join_all` over the `JoinHandle`s. Under tokio's
    /// cooperative budget, a handle polled after the task's budget is spent
    /// returns `Pending` and wakes itself, so every poll of the `join_all`
    /// re-polls thousands of handles: the cost grows with the square of
    /// the task count and with how the tasks happen to finish, and swamps
    /// the loaders' own (tokio-rs/tokio#2401).
    JoinAll,
}

impl Gather {
    pub const NAMES: [(&'static str, Gather); 3] = [
        ("in-order", Gather::InOrder),
        ("joinset", Gather::JoinSet),
        ("join-all", Gather::JoinAll),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, gather)| *gather == self)
            .map_or("?", |(name, _)| name)
    }
}

/// Workload 2b: `keys` distinct keys, one spawned task per load, awaited as
/// `gather` says.
pub async fn burst_spawned<S: Subject>(keys: u64, gather: Gather) -> Sample {
    let counts = Arc::new(Counts::default());
    let loader = S::build(Tuning::Batching, &counts);
    let load = |key: u64| {
        let loader = loader.clone();
        async move { (key, loader.load(key).await) }
    };
    let start = Instant::now();
    let mut values: Vec<(u64, u64)> = match gather {
        Gather::JoinAll => {
            let tasks: Vec<_> = (0..keys).map(|key| tokio::spawn(load(key))).collect();
            join_all(tasks)
                .await
                .into_iter()
                .map(|done| done.expect("load task"))
                .collect()
        }
        Gather::InOrder => {
            let tasks: Vec<_> = (0..keys).map(|key| tokio::spawn(load(key))).collect();
            let mut values = Vec::with_capacity(tasks.len());
            for task in tasks {
                values.push(task.await.expect("load task"));
            }
            values
        }
        Gather::JoinSet => {
            let mut tasks = tokio::task::JoinSet::new();
            for key in 0..keys {
                tasks.spawn(load(key));
            }
            let mut values = Vec::with_capacity(keys as usize);
            while let Some(done) = tasks.join_next().await {
                values.push(done.expect("load task"));
            }
            values
        }
    };
    let sample = Sample::new(start.elapsed(), &counts);
    values.sort_unstable();
    assert_eq!(values.len() as u64, keys, "a load task went missing");
    for (key, value) in values {
        check(key, value);
    }
    sample
}

/// Workload 3: `loads` concurrent loads (one task, `join_all`) over `distinct` keys.
pub async fn duplicates<S: Subject>(loads: u64, distinct: u64) -> Sample {
    let counts = Arc::new(Counts::default());
    let loader = S::build(Tuning::Batching, &counts);
    let keys = (0..loads).map(|i| i % distinct);
    let start = Instant::now();
    let values = join_all(keys.clone().map(|key| loader.load(key))).await;
    let sample = Sample::new(start.elapsed(), &counts);
    for (key, value) in keys.zip(values) {
        check(key, value);
    }
    sample
}

/// Workload 4: one concurrent many-keys call per entry of `calls` (one task,
/// `join_all`), each through the library's own `load_many`.
pub async fn many<S: Subject>(calls: Arc<Vec<Vec<u64>>>) -> Sample {
    let counts = Arc::new(Counts::default());
    let loader = S::build(Tuning::Batching, &counts);
    let start = Instant::now();
    let sums = join_all(calls.iter().map(|keys| loader.load_many(keys))).await;
    let sample = Sample::new(start.elapsed(), &counts);
    for (keys, sum) in calls.iter().zip(sums) {
        assert_eq!(
            sum,
            keys.iter().map(|key| key * 2).sum::<u64>(),
            "wrong values"
        );
    }
    sample
}

/// Workload 5: `loads` sequential loads of distinct keys on an otherwise idle loader
/// tuned with `tuning`; each load timed on its own.
pub async fn latency<S: Subject>(tuning: Tuning, loads: u64) -> Sample {
    let counts = Arc::new(Counts::default());
    let loader = S::build(tuning, &counts);
    let mut times = Vec::with_capacity(loads as usize);
    let start = Instant::now();
    for key in 0..loads {
        let began = Instant::now();
        let value = black_box(loader.load(key).await);
        times.push(began.elapsed());
        check(key, value);
    }
    let mut sample = Sample::new(start.elapsed(), &counts);
    times.sort_unstable();
    let at = |quantile: f64| times[((times.len() - 1) as f64 * quantile).round() as usize];
    sample.latency = Some(Latency {
        p50: at(0.50),
        p99: at(0.99),
    });
    sample
}

/// Workload 6: `values` concurrent `execute(value)` calls (one task, `join_all`).
pub async fn writes<W: WriteSubject>(values: u64) -> Sample {
    let counts = Arc::new(Counts::default());
    let writer = W::build(&counts);
    let start = Instant::now();
    let outputs = join_all((0..values).map(|value| writer.execute(value))).await;
    let sample = Sample::new(start.elapsed(), &counts);
    for (value, output) in (0..values).zip(outputs) {
        check(value, output);
    }
    sample
}
