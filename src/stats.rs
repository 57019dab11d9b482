//! Counters every loader keeps, and the snapshot [`Stats`] users read.
//!
//! Counting is a relaxed add, never a lock: a plain load and store in the
//! counting thread's own shard, or an atomic add. What every request or every
//! batch counts (cache hits, joins, queued requests; batches, their keys and
//! their backend time) is sharded per thread (see [`HotCounters`]), so a
//! lone load on an idle loader makes no shared atomic addition for its
//! statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::hot_counter::HotCounters;

/// Where each sharded count is in `Counters::hot`.
const HITS: usize = 0;
const JOINS: usize = 1;
const QUEUED: usize = 2;
const BATCHES: usize = 3;
const BATCHED_ITEMS: usize = 4;
const BACKEND_NANOS: usize = 5;

/// Live counters, shared by a loader's handle, collector and batches.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Cache hits, joins and queued requests (see [`hit`](Self::hit),
    /// [`join`](Self::join) and [`queued`](Self::queued)); batches, their
    /// keys and their backend time (see [`record_batch`](Self::record_batch)
    /// and [`record_backend_time`](Self::record_backend_time)).
    hot: HotCounters<6>,
    pub(crate) rejected: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) panicked_batches: AtomicU64,
    pub(crate) not_found: AtomicU64,
    pub(crate) closed: AtomicU64,
}

impl Counters {
    /// Counts a request answered from the identity map.
    #[inline]
    pub(crate) fn hit(&self) {
        self.hot.add(HITS, 1);
    }

    /// Counts a request that joined a fetch in flight.
    #[inline]
    pub(crate) fn join(&self) {
        self.hot.add(JOINS, 1);
    }

    /// Counts a request queued for a batch: on every miss, so sharded too.
    #[inline]
    pub(crate) fn queued(&self) {
        self.hot.add(QUEUED, 1);
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn record_batch(&self, size: usize) {
        self.hot.add(BATCHES, 1);
        self.hot.add(BATCHED_ITEMS, size as u64);
        // `fetch_max` is a compare-and-swap even when nothing changes: look
        // first, as a new largest batch is rare.
        if size as u64 > self.largest_batch.load(Ordering::Relaxed) {
            self.largest_batch.fetch_max(size as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_backend_time(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.hot.add(BACKEND_NANOS, nanos);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (cache_hits, joins, queued, rejected) = (
            self.hot.sum(HITS),
            self.hot.sum(JOINS),
            self.hot.sum(QUEUED),
            read(&self.rejected),
        );
        let (batches, batched_items) = (self.hot.sum(BATCHES), self.hot.sum(BATCHED_ITEMS));
        Stats {
            requests: cache_hits + joins + queued + rejected,
            cache_hits,
            joins,
            queued,
            batches,
            mean_batch_size: if batches == 0 {
                0.0
            } else {
                batched_items as f64 / batches as f64
            },
            largest_batch: read(&self.largest_batch),
            failed_batches: read(&self.failed_batches),
            panicked_batches: read(&self.panicked_batches),
            not_found: read(&self.not_found),
            closed: read(&self.closed),
            backend_time: Duration::from_nanos(self.hot.sum(BACKEND_NANOS)),
        }
    }
}

/// A snapshot of what a loader or executor has done since it was built.
///
/// For a [`BatchExecutor`](crate::BatchExecutor) a request is one value given
/// to `execute` or `submit`; it has no cache hits or joins.
///
/// ```
/// # use anybatch::{BatchFetcher, Fetcher, Values};
/// # struct Doubles;
/// # impl Fetcher for Doubles {
/// #     type Key = u64; type Value = u64; type Error = std::convert::Infallible;
/// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
/// #         values.extend(keys.iter().map(|&key| (key, key * 2))); Ok(())
/// #     }
/// # }
/// # smol::block_on(async {
/// let loader = BatchFetcher::builder(Doubles).build().unwrap();
/// loader.load_many(&[1, 2, 2]).await.unwrap();
/// loader.load(1).await.unwrap();
/// let stats = loader.stats();
/// assert_eq!((stats.requests, stats.queued, stats.joins, stats.cache_hits), (4, 2, 1, 1));
/// assert_eq!(stats.batches, 1);
/// # });
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Every key asked for (each key of `load_many` counts) or value given.
    pub requests: u64,
    /// Requests answered from the identity map, `NotFound` included.
    pub cache_hits: u64,
    /// Requests that joined a fetch already queued or running for their key.
    pub joins: u64,
    /// Keys or values queued for a batch.
    pub queued: u64,
    /// Batches dispatched to the backend.
    pub batches: u64,
    /// Keys or values per batch, on average.
    pub mean_batch_size: f64,
    /// The most keys or values one batch held.
    pub largest_batch: u64,
    /// Batches whose backend call returned an error (or, for an executor, a
    /// wrong number of results).
    pub failed_batches: u64,
    /// Batches whose backend call panicked.
    pub panicked_batches: u64,
    /// Keys a fetcher was asked for and did not deliver.
    pub not_found: u64,
    /// Requests answered `Closed`: refused after `close`, or whose work was
    /// dropped or handed back by a forced shutdown.
    pub closed: u64,
    /// Time spent inside backend calls, summed over batches (zero on wasm32,
    /// which has no monotonic clock in `std`).
    pub backend_time: Duration,
}
