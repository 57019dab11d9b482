//! What one batch of a fetcher does: tag its keys, call the fetcher, and
//! answer every key from what came back.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::FutureExt;

use super::{Fetcher, Values};
use crate::cache::{IdentityMap, Outcome};
use crate::clock::Stopwatch;
use crate::core::{split_pairs, RunBatch};
use crate::error::panic_message;
use crate::promise::Resolver;
use crate::stats::Counters;
use crate::trace::BatchSpan;
use crate::LoadError;

/// A key on its way to a batch, with the resolver of its callers' promise.
pub(crate) type Ticket<F> = (
    <F as Fetcher>::Key,
    Resolver<Outcome<<F as Fetcher>::Value, <F as Fetcher>::Error>>,
);

pub(crate) type Map<F> =
    IdentityMap<<F as Fetcher>::Key, <F as Fetcher>::Value, <F as Fetcher>::Error>;

pub(crate) struct FetchRunner<F: Fetcher> {
    pub(crate) fetcher: F,
    pub(crate) map: Arc<Map<F>>,
    /// Source of batch ids; 0 is reserved for "not dispatched".
    pub(crate) batches: AtomicU64,
    pub(crate) counters: Arc<Counters>,
}

impl<F: Fetcher> RunBatch for FetchRunner<F> {
    type Item = Ticket<F>;

    async fn run(self: Arc<Self>, batch: Vec<Ticket<F>>, span: BatchSpan) {
        // Worker threads that run batches get their own hit-counter shard
        // here, even if they only ever hit afterwards (see `hot_counter`).
        crate::hot_counter::enroll();
        let id = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        let (keys, resolvers) = split_pairs(batch);
        self.map.start_batch(id, &resolvers).await;
        let mut values = Values::with_capacity(keys.len());
        let stopwatch = Stopwatch::start();
        // The fetcher's future is created inside the guarded block, so a
        // panic while creating it is caught as well.
        let fetched = AssertUnwindSafe(async { self.fetcher.fetch(&keys, &mut values).await })
            .catch_unwind()
            .await;
        let counters = &self.counters;
        counters.record_backend_time(stopwatch.elapsed());
        match fetched {
            Ok(Ok(())) => {
                span.outcome("ok");
                let delivered =
                    AssertUnwindSafe(self.map.deliver(id, &keys, &resolvers, values.into_vec()))
                        .catch_unwind()
                        .await;
                match delivered {
                    Ok(0) => {}
                    Ok(missing) => Counters::add(&counters.not_found, missing),
                    // `default_with`, a store or a value's `Clone` panicked:
                    // the keys not yet answered get the panic.
                    Err(panic) => {
                        Counters::add(&counters.panicked_batches, 1);
                        let error = LoadError::Panicked(panic_message(&*panic));
                        self.map.fail(id, &keys, &resolvers, error).await
                    }
                }
            }
            Ok(Err(error)) => {
                span.outcome("error");
                Counters::add(&counters.failed_batches, 1);
                let error = LoadError::Fetch(Arc::new(error));
                self.map.fail(id, &keys, &resolvers, error).await
            }
            Err(panic) => {
                span.outcome("panicked");
                Counters::add(&counters.panicked_batches, 1);
                let error = LoadError::Panicked(panic_message(&*panic));
                self.map.fail(id, &keys, &resolvers, error).await
            }
        }
        // Dropping the resolvers wakes every caller, now that the map's
        // lock is released.
        drop(resolvers);
    }
}
