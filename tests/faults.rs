//! Fault injection that the other suites leave out: a stalled batch must
//! not hold up other batches (up to `max_in_flight`), and after `close`,
//! dropping every handle or `shutdown_now`, no task of the loader is left
//! and its fetcher or executor is dropped, even with a batch stalled at
//! that moment. (Errors, panics, omitted keys and wrong result counts are
//! in tests/errors.rs, tests/cache.rs and tests/executor.rs; their mixes
//! in tests/model.rs.)
// The native suite; wasm32 runs tests/wasm.rs.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anybatch::{
    BatchExecutor, BatchFetcher, BoxFuture, ExecuteError, Executor, Fetcher, LoadError, Spawner,
    Values,
};
use common::*;

/// A hang detector for one step, not a speed check.
const STEP: Duration = Duration::from_secs(10);

/// The key (or value) whose batch stalls until the test releases it.
const STALLS: u64 = 1;

/// Runs the loader's tasks on `rt`, keeping them countable.
#[derive(Clone)]
struct Counting {
    rt: Rt,
    live: LiveTasks,
}

impl Counting {
    fn new(rt: &Rt) -> Self {
        Self {
            rt: rt.clone(),
            live: LiveTasks::default(),
        }
    }

    fn live(&self) -> usize {
        self.live.count()
    }

    async fn wait_all_ended(&self, what: &str) {
        eventually(STEP, what, || self.live() == 0).await;
    }
}

impl Spawner for Counting {
    fn spawn(&self, future: BoxFuture) {
        Spawner::spawn(&self.rt, self.live.track(future));
    }
}

/// Dropping it releases the stalled batch.
struct Release {
    _sender: async_channel::Sender<()>,
}

/// `key * 10`; a batch holding [`STALLS`] waits for the release first.
struct Stalling {
    released: async_channel::Receiver<()>,
    started: async_channel::Sender<Vec<u64>>,
    _alive: Arc<()>,
}

struct Watch {
    started: async_channel::Receiver<Vec<u64>>,
    alive: Weak<()>,
}

impl Watch {
    async fn started(&self) -> Vec<u64> {
        within(STEP, "a batch to start", self.started.recv())
            .await
            .expect("fetcher alive")
    }

    /// Spawns `call` (a load or execute of [`STALLS`]) and returns once its
    /// batch has started and stalls.
    async fn stall<T: Send + 'static>(
        &self,
        rt: &Rt,
        call: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        let stalled = rt.spawn(call);
        assert_eq!(self.started().await, [STALLS]);
        stalled
    }
}

fn stalling() -> (Stalling, Watch, Release) {
    let (release, released) = async_channel::bounded(1);
    let (started, started_rx) = async_channel::unbounded();
    let alive = Arc::new(());
    let watch = Watch {
        started: started_rx,
        alive: Arc::downgrade(&alive),
    };
    let fetcher = Stalling {
        released,
        started,
        _alive: alive,
    };
    (fetcher, watch, Release { _sender: release })
}

/// A loader over `fetcher` on `spawner` that dispatches at once.
fn build_loader(
    fetcher: Stalling,
    spawner: impl Spawner,
    max_batch_size: usize,
    max_in_flight: usize,
) -> BatchFetcher<Stalling> {
    BatchFetcher::builder(fetcher)
        .max_batch_size(max_batch_size)
        .max_in_flight(max_in_flight)
        .max_delay(Duration::ZERO)
        .spawner(spawner)
        .build()
        .unwrap()
}

/// An executor over `executor` on `spawner` that dispatches at once.
fn build_executor(
    executor: Stalling,
    spawner: impl Spawner,
    max_batch_size: usize,
    max_in_flight: usize,
) -> BatchExecutor<Stalling> {
    BatchExecutor::builder(executor)
        .max_batch_size(max_batch_size)
        .max_in_flight(max_in_flight)
        .max_delay(Duration::ZERO)
        .spawner(spawner)
        .build()
        .unwrap()
}

impl Stalling {
    async fn stall_if_asked(&self, items: &[u64]) {
        let _ = self.started.try_send(items.to_vec());
        if items.contains(&STALLS) {
            let _ = self.released.recv().await;
        }
    }
}

impl Fetcher for Stalling {
    type Key = u64;
    type Value = u64;
    type Error = TestError;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), TestError> {
        self.stall_if_asked(keys).await;
        values.extend(keys.iter().map(|&key| (key, key * 10)));
        Ok(())
    }
}

impl Executor for Stalling {
    type Value = u64;
    type Output = u64;
    type Error = TestError;

    async fn execute(&self, values: &[u64]) -> Result<Vec<u64>, TestError> {
        self.stall_if_asked(values).await;
        Ok(values.iter().map(|value| value * 10).collect())
    }
}

runtime_tests! {
    /// One fetch stalls; with three slots, the batches after it are fetched
    /// and answered meanwhile. Its own callers are answered once released.
    async fn stalled_fetch_does_not_hold_up_other_batches(rt: Rt) {
        let (fetcher, watch, release) = stalling();
        let loader = build_loader(fetcher, rt.spawner(), 1, 3);
        let stalled = {
            let loader = loader.clone();
            watch.stall(&rt, async move { loader.load(STALLS).await }).await
        };
        for round in 0..20 {
            let keys = [10 + round, 100 + round];
            let values = within(STEP, "loads beside a stalled fetch", loader.load_many(&keys)).await;
            assert_eq!(values, Ok(vec![keys[0] * 10, keys[1] * 10]));
        }
        drop(release);
        assert_eq!(within(STEP, "the stalled load", stalled).await, Ok(STALLS * 10));
    }

    /// The same for the executor: one stalled batch, the others run.
    async fn stalled_execute_does_not_hold_up_other_batches(rt: Rt) {
        let (executor, watch, release) = stalling();
        let executor = build_executor(executor, rt.spawner(), 1, 2);
        let stalled = {
            let executor = executor.clone();
            watch.stall(&rt, async move { executor.execute(STALLS).await }).await
        };
        for value in 10..30 {
            let output = within(STEP, "an execute beside a stalled one", executor.execute(value)).await;
            assert_eq!(output, Ok(value * 10));
        }
        drop(release);
        assert_eq!(within(STEP, "the stalled execute", stalled).await, Ok(STALLS * 10));
    }

    /// Every handle dropped while a fetch stalls and keys wait behind it:
    /// once released, the queued keys are fetched, every caller answered,
    /// every task of the loader ends and the fetcher is dropped.
    async fn dropping_every_handle_mid_stall_leaves_no_task(rt: Rt) {
        let (fetcher, watch, release) = stalling();
        let spawner = Counting::new(&rt);
        let loader = build_loader(fetcher, spawner.clone(), 4, 1);
        let stalled = {
            let loader = loader.clone();
            watch.stall(&rt, async move { loader.load(STALLS).await }).await
        };
        let queued: Vec<_> = (2..=5)
            .map(|key| {
                let loader = loader.clone();
                rt.spawn(async move { loader.load(key).await })
            })
            .collect();
        // Every load task holds its clone until answered; this drops the last
        // one the test holds.
        drop(loader);
        drop(release);
        assert_eq!(within(STEP, "the stalled load", stalled).await, Ok(10));
        let answers = within(STEP, "the queued loads", join_all(queued)).await;
        assert_eq!(answers, (2..=5).map(|key| Ok(key * 10)).collect::<Vec<_>>());
        spawner.wait_all_ended("the loader's tasks to end").await;
        eventually(STEP, "the fetcher to be dropped", || watch.alive.strong_count() == 0).await;
    }

    /// `close` with a stalled fetch returns once it is released; then no
    /// task is left, loads of unknown keys get `Closed` at once, and
    /// dropping the handle drops the fetcher.
    async fn close_mid_stall_leaves_no_task(rt: Rt) {
        let (fetcher, watch, release) = stalling();
        let spawner = Counting::new(&rt);
        let loader = build_loader(fetcher, spawner.clone(), 100, 10);
        let stalled = {
            let loader = loader.clone();
            watch.stall(&rt, async move { loader.load(STALLS).await }).await
        };
        let mut close = Box::pin(loader.close());
        assert_pending(&mut close, "close returned while a fetch stalled").await;
        drop(release);
        within(STEP, "close after the release", close).await;
        assert_eq!(stalled.await, Ok(10));
        spawner.wait_all_ended("the loader's tasks to end").await;
        assert_eq!(loader.load(2).await, Err(LoadError::Closed));
        assert_eq!(loader.load(STALLS).await, Ok(10), "known keys still answer");
        assert!(watch.alive.strong_count() > 0, "the handle still owns the fetcher");
        drop(loader);
        assert_eq!(watch.alive.strong_count(), 0);
        assert_eq!(spawner.live(), 0);
    }

    /// `shutdown_now` with a batch stalled and values queued: the queued
    /// ones come back, their callers get `Closed`, the stalled batch still
    /// finishes once released, and no task is left.
    async fn shutdown_now_mid_stall_leaves_no_task(rt: Rt) {
        let (executor, watch, release) = stalling();
        let spawner = Counting::new(&rt);
        let executor = build_executor(executor, spawner.clone(), 2, 1);
        let stalled = {
            let executor = executor.clone();
            watch.stall(&rt, async move { executor.execute(STALLS).await }).await
        };
        let waiting = {
            let executor = executor.clone();
            rt.spawn_polled(async move { executor.execute(7).await }).await
        };
        executor.submit(8).await.unwrap();
        let mut handed_back = within(STEP, "shutdown_now", executor.shutdown_now()).await;
        handed_back.sort_unstable();
        assert_eq!(handed_back, [7, 8]);
        assert_eq!(within(STEP, "the queued execute", waiting).await, Err(ExecuteError::Closed));
        drop(release);
        assert_eq!(within(STEP, "the stalled execute", stalled).await, Ok(STALLS * 10));
        spawner.wait_all_ended("the executor's tasks to end").await;
        drop(executor);
        assert_eq!(watch.alive.strong_count(), 0);
    }
}
