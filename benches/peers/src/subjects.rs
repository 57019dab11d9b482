//! The loaders compared, each over the same instant in-memory backend
//! (`value = key * 2`), behind one small trait so every workload runs the
//! same code against each of them.
//!
//! Settings, all on one tokio multi-thread runtime with 2 workers and a batch
//! size of 100:
//!
//! - **anybatch**: `max_batch_size(100)`, the default `max_delay` (1 ms,
//!   counted from a batch's first key) and `max_in_flight` (10), spawning
//!   through `TokioSpawner::from_handle`. Lowest latency: `max_delay(ZERO)`
//!   and `gather_yields(0)`, which its docs advise when requests rarely come
//!   together: a load on an idle loader then runs its batch at once instead
//!   of yielding first, as dataloader's `with_yield_count(0)` does.
//! - **ultra-batch**: `eager_batch_size(Some(100))` (its default, and the
//!   batch size), `delay_duration(1 ms)`. Its docs describe the delay only as
//!   the longest wait for more keys; its default is 10 ms and its example uses
//!   5 ms. We give it the same 1 ms window anybatch and async-graphql use by
//!   default, so a partial batch waits as long in every library. Lowest
//!   latency: `delay_duration(ZERO)`.
//! - **dataloader** (cksac): `with_max_batch_size(100)` and its default
//!   `with_yield_count(10)`: a load yields to the runtime 10 times before it
//!   fetches what is pending. Its author's advice is that more yields gather
//!   larger batches but wait longer; it documents no other value. Lowest
//!   latency: `with_yield_count(0)`.
//! - **async-graphql**: `DataLoader::with_cache(.., tokio::spawn,
//!   HashMapCache::default())` (an identity map like the others; its `new`
//!   caches nothing), `max_batch_size(100)`, its default `delay` (1 ms), and
//!   the `tokio-timer` feature its README advises for tokio. Lowest latency:
//!   `delay(ZERO)`.
//!
//! A zero delay still lets ultra-batch and async-graphql wait on a tokio
//! timer, which has millisecond resolution; so the latency workload also runs
//! with a batch size of 1 ([`Tuning::Unbatched`]), which makes every library
//! dispatch a load as it arrives (ultra-batch: `eager_batch_size(Some(1))`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, HashMapCache};

/// What one loader's backend was asked for.
#[derive(Default)]
pub struct Counts {
    keys: AtomicU64,
    batches: AtomicU64,
    largest: AtomicU64,
}

/// A copy of [`Counts`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub keys: u64,
    pub batches: u64,
    pub largest: u64,
}

impl Counts {
    fn record(&self, batch: usize) {
        let batch = batch as u64;
        self.keys.fetch_add(batch, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.largest.fetch_max(batch, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Fetched {
        Fetched {
            keys: self.keys.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
        }
    }
}

/// The backend every library is given: instant, in memory, `key * 2`,
/// counting keys and batches. Each library's trait is implemented on it in
/// that library's own shape (a sink, a cache, or a returned `HashMap`).
pub struct Doubler {
    counts: Arc<Counts>,
}

impl Doubler {
    fn new(counts: &Arc<Counts>) -> Self {
        Self {
            counts: counts.clone(),
        }
    }

    fn pairs<'a>(&self, keys: &'a [u64]) -> impl Iterator<Item = (u64, u64)> + 'a {
        self.counts.record(keys.len());
        keys.iter().map(|&key| (key, key * 2))
    }
}

/// How a loader is tuned for a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// The batching settings its docs advise (see the module docs).
    Batching,
    /// Its lowest-latency batching settings (shortest wait), batch size kept.
    LowLatency,
    /// `LowLatency` with a batch size of 1: batching off, so a load is
    /// dispatched the moment it arrives. The floor of each load path.
    Unbatched,
}

impl Tuning {
    fn batch_size(self) -> usize {
        match self {
            Tuning::Unbatched => 1,
            Tuning::Batching | Tuning::LowLatency => BATCH,
        }
    }
}

/// The batch size every loader is given.
pub const BATCH: usize = 100;
/// The batching window given where a library takes one (see the module docs).
const WINDOW: Duration = Duration::from_millis(1);

/// A loader under test. Built inside the runtime (some spawn a task there).
pub trait Subject: Clone + Send + Sync + 'static {
    const NAME: &'static str;

    fn build(tuning: Tuning, counts: &Arc<Counts>) -> Self;

    /// Loads one key; panics if the library reports an error or no value.
    fn load(&self, key: u64) -> impl Future<Output = u64> + Send + '_;

    /// Loads `keys` through the library's own many-keys call and returns the
    /// sum of their values in input order (each value looked up by key where
    /// the library answers with a map), so the caller can check them.
    fn load_many<'a>(&'a self, keys: &'a [u64]) -> impl Future<Output = u64> + Send + 'a;
}

/// A batched write API under test.
pub trait WriteSubject: Send + Sync + 'static {
    const NAME: &'static str;

    fn build(counts: &Arc<Counts>) -> Self;

    /// Executes one value in the next batch and returns its output.
    fn execute(&self, value: u64) -> impl Future<Output = u64> + Send + '_;
}

// ---------------------------------------------------------------- anybatch

impl anybatch::Fetcher for Doubler {
    type Key = u64;
    type Value = u64;
    type Error = Infallible;

    async fn fetch(
        &self,
        keys: &[u64],
        values: &mut anybatch::Values<u64, u64>,
    ) -> Result<(), Infallible> {
        values.extend(self.pairs(keys));
        Ok(())
    }
}

impl anybatch::Executor for Doubler {
    type Value = u64;
    type Output = u64;
    type Error = Infallible;

    async fn execute(&self, values: &[u64]) -> Result<Vec<u64>, Infallible> {
        Ok(self.pairs(values).map(|(_, doubled)| doubled).collect())
    }
}

#[derive(Clone)]
pub struct Anybatch(anybatch::BatchFetcher<Doubler>);

impl Subject for Anybatch {
    const NAME: &'static str = "anybatch";

    fn build(tuning: Tuning, counts: &Arc<Counts>) -> Self {
        let spawner = anybatch::TokioSpawner::from_handle(tokio::runtime::Handle::current());
        let builder = anybatch::BatchFetcher::builder(Doubler::new(counts))
            .spawner(spawner)
            .max_batch_size(tuning.batch_size());
        let builder = match tuning {
            Tuning::Batching => builder,
            Tuning::LowLatency | Tuning::Unbatched => {
                builder.max_delay(Duration::ZERO).gather_yields(0)
            }
        };
        Self(builder.build().expect("valid settings"))
    }

    async fn load(&self, key: u64) -> u64 {
        self.0.load(key).await.expect("anybatch load")
    }

    async fn load_many<'a>(&'a self, keys: &'a [u64]) -> u64 {
        let values = self.0.load_many(keys).await.expect("anybatch load_many");
        values.iter().sum()
    }
}

pub struct AnybatchWrites(anybatch::BatchExecutor<Doubler>);

impl WriteSubject for AnybatchWrites {
    const NAME: &'static str = "anybatch";

    fn build(counts: &Arc<Counts>) -> Self {
        let spawner = anybatch::TokioSpawner::from_handle(tokio::runtime::Handle::current());
        let executor = anybatch::BatchExecutor::builder(Doubler::new(counts))
            .spawner(spawner)
            .max_batch_size(BATCH)
            .build()
            .expect("valid settings");
        Self(executor)
    }

    async fn execute(&self, value: u64) -> u64 {
        self.0.execute(value).await.expect("anybatch execute")
    }
}

// ------------------------------------------------------------- ultra-batch

impl ultra_batch::Fetcher for Doubler {
    type Key = u64;
    type Value = u64;
    type Error = Infallible;

    async fn fetch(
        &self,
        keys: &[u64],
        values: &mut ultra_batch::Cache<'_, u64, u64>,
    ) -> Result<(), Infallible> {
        for (key, value) in self.pairs(keys) {
            values.insert(key, value);
        }
        Ok(())
    }
}

impl ultra_batch::Executor for Doubler {
    type Value = u64;
    type Result = u64;
    type Error = Infallible;

    async fn execute(&self, values: Vec<u64>) -> Result<Vec<u64>, Infallible> {
        Ok(self.pairs(&values).map(|(_, doubled)| doubled).collect())
    }
}

#[derive(Clone)]
pub struct UltraBatch(ultra_batch::BatchFetcher<Doubler>);

impl Subject for UltraBatch {
    const NAME: &'static str = "ultra-batch";

    fn build(tuning: Tuning, counts: &Arc<Counts>) -> Self {
        let delay = match tuning {
            Tuning::Batching => WINDOW,
            Tuning::LowLatency | Tuning::Unbatched => Duration::ZERO,
        };
        // `finish` spawns the batching task on the current tokio runtime.
        let fetcher = ultra_batch::BatchFetcher::build(Doubler::new(counts))
            .eager_batch_size(Some(tuning.batch_size()))
            .delay_duration(delay)
            .finish();
        Self(fetcher)
    }

    async fn load(&self, key: u64) -> u64 {
        self.0.load(key).await.expect("ultra-batch load")
    }

    async fn load_many<'a>(&'a self, keys: &'a [u64]) -> u64 {
        let values = self.0.load_many(keys).await.expect("ultra-batch load_many");
        values.iter().sum()
    }
}

pub struct UltraBatchWrites(ultra_batch::BatchExecutor<Doubler>);

impl WriteSubject for UltraBatchWrites {
    const NAME: &'static str = "ultra-batch";

    fn build(counts: &Arc<Counts>) -> Self {
        let executor = ultra_batch::BatchExecutor::build(Doubler::new(counts))
            .eager_batch_size(Some(BATCH))
            .delay_duration(WINDOW)
            .finish();
        Self(executor)
    }

    async fn execute(&self, value: u64) -> u64 {
        // `None` would mean the executor returned fewer outputs than values.
        let output = self.0.execute(value).await.expect("ultra-batch execute");
        output.expect("ultra-batch: an output for every value")
    }
}

// -------------------------------------------------------------- dataloader

impl dataloader::BatchFn<u64, u64> for Doubler {
    async fn load(&mut self, keys: &[u64]) -> HashMap<u64, u64> {
        self.pairs(keys).collect()
    }
}

#[derive(Clone)]
pub struct Dataloader(dataloader::cached::Loader<u64, u64, Doubler>);

impl Subject for Dataloader {
    const NAME: &'static str = "dataloader";

    fn build(tuning: Tuning, counts: &Arc<Counts>) -> Self {
        let yields = match tuning {
            Tuning::Batching => 10, // its default
            Tuning::LowLatency | Tuning::Unbatched => 0,
        };
        let loader = dataloader::cached::Loader::new(Doubler::new(counts))
            .with_max_batch_size(tuning.batch_size())
            .with_yield_count(yields);
        Self(loader)
    }

    async fn load(&self, key: u64) -> u64 {
        // `load` panics on a key the batch function did not return;
        // `try_load` reports it as an error instead.
        self.0.try_load(key).await.expect("dataloader load")
    }

    async fn load_many<'a>(&'a self, keys: &'a [u64]) -> u64 {
        let values = self
            .0
            .try_load_many(keys.to_vec())
            .await
            .expect("dataloader load_many");
        keys.iter().map(|key| values[key]).sum()
    }
}

// ----------------------------------------------------------- async-graphql

impl async_graphql::dataloader::Loader<u64> for Doubler {
    type Value = u64;
    type Error = Infallible;

    async fn load(&self, keys: &[u64]) -> Result<HashMap<u64, u64>, Infallible> {
        Ok(self.pairs(keys).collect())
    }
}

/// `DataLoader` is not `Clone`: shared through an `Arc`, as in a GraphQL
/// schema's context data.
#[derive(Clone)]
pub struct AsyncGraphql(Arc<DataLoader<Doubler, HashMapCache>>);

impl Subject for AsyncGraphql {
    const NAME: &'static str = "async-graphql";

    fn build(tuning: Tuning, counts: &Arc<Counts>) -> Self {
        let delay = match tuning {
            Tuning::Batching => WINDOW, // its default
            Tuning::LowLatency | Tuning::Unbatched => Duration::ZERO,
        };
        let loader =
            DataLoader::with_cache(Doubler::new(counts), tokio::spawn, HashMapCache::default())
                .max_batch_size(tuning.batch_size())
                .delay(delay);
        Self(Arc::new(loader))
    }

    async fn load(&self, key: u64) -> u64 {
        let value = self.0.load_one(key).await.expect("async-graphql load_one");
        value.expect("async-graphql: a value for every key")
    }

    async fn load_many<'a>(&'a self, keys: &'a [u64]) -> u64 {
        let values = self
            .0
            .load_many(keys.iter().copied())
            .await
            .expect("async-graphql load_many");
        keys.iter().map(|key| values[key]).sum()
    }
}
