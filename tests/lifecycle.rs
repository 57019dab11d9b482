//! Cancellation, `close`, dropping the last handle and executors that drop
//! their work.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anybatch::{BoxFuture, LoadError, Spawner};
use common::*;
use futures::FutureExt;

/// A spawner that either forwards work to the test's runtime or parks it
/// unpolled, so a test can drop parked work the way a shutting-down executor
/// does.
#[derive(Clone)]
struct Parking {
    rt: Rt,
    park: Arc<AtomicBool>,
    parked: Arc<Mutex<Vec<BoxFuture>>>,
}

impl Parking {
    fn new(rt: &Rt, park: bool) -> Self {
        Self {
            rt: rt.clone(),
            park: Arc::new(AtomicBool::new(park)),
            parked: Arc::default(),
        }
    }

    fn set_park(&self, park: bool) {
        self.park.store(park, Ordering::SeqCst);
    }

    fn parked(&self) -> usize {
        self.parked.lock().unwrap().len()
    }

    /// Drops every parked future unpolled, as an executor shutting down does.
    fn drop_parked(&self) {
        let parked = std::mem::take(&mut *self.parked.lock().unwrap());
        drop(parked);
    }
}

impl Spawner for Parking {
    fn spawn(&self, future: BoxFuture) {
        if self.park.load(Ordering::SeqCst) {
            self.parked.lock().unwrap().push(future);
        } else {
            Spawner::spawn(&self.rt, future);
        }
    }
}

/// A loader whose collector runs but whose batch tasks are parked unpolled.
fn loader_parking_batches(rt: &Rt) -> (Parking, anybatch::BatchFetcher<TestFetcher>, Probe) {
    let spawner = Parking::new(rt, false);
    let (fetcher, probe) = TestFetcher::new();
    let loader = anybatch::BatchFetcher::builder(fetcher)
        .spawner(spawner.clone())
        .build()
        .unwrap();
    // The collector is running now; what is spawned next is parked.
    spawner.set_park(true);
    (spawner, loader, probe)
}

/// Waits until the first batch task has been parked.
async fn batch_parked(spawner: &Parking) {
    eventually(
        Duration::from_secs(10),
        "the batch task to be spawned",
        || spawner.parked() == 1,
    )
    .await;
}

runtime_tests! {
    /// Fetches run on the runtime the loader was given, through the crate's
    /// adapter for it (smol's on the harness's own executor, not the global
    /// one).
    #[cfg(not(target_arch = "wasm32"))] // thread names: wasm32 has one thread
    async fn fetches_run_on_the_given_runtime(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(1).build().unwrap();
        assert_eq!(loader.load_many(&[1, 2, 3]).await, Ok(vec![10, 20, 30]));
        let threads = probe.threads();
        assert_eq!(threads.len(), 3);
        for thread in threads {
            assert!(rt.is_worker(&thread), "a fetch ran on {thread:?}, not on {}", rt.name());
        }
    }

    /// Dropping a load future does not cancel the fetch: another caller of
    /// the key still gets the value, the key is fetched once and remembered.
    async fn dropped_load_does_not_cancel_the_fetch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        let gate = probe.close_gate().await;
        let mut first = Box::pin(loader.load(1));
        assert!(futures::poll!(first.as_mut()).is_pending());
        assert_eq!(probe.started().await, [1]);
        drop(first);
        let second = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(1).await }).await
        };
        drop(gate);
        assert_eq!(second.await, Ok(10));
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.batches(), [vec![1]]);
    }

    /// A load dropped before its key's batch started does not cancel it.
    async fn dropped_queued_load_does_not_cancel_the_fetch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_delay(FOREVER).build().unwrap();
        let mut first = Box::pin(loader.load_many(&[1, 2]));
        assert!(futures::poll!(first.as_mut()).is_pending());
        drop(first);
        let second = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(2).await }).await
        };
        loader.close().await;
        assert_eq!(second.await, Ok(20));
        assert_eq!(loader.load(1).await, Ok(10), "the dropped load's key was not stored");
        assert_eq!(probe.batches().len(), 1, "batches: {:?}", probe.batches());
    }

    /// With every waiter of a running fetch dropped, the fetch still finishes
    /// and is stored: a later load is a hit, without a hang or a refetch.
    async fn fetch_with_every_waiter_dropped_still_stores(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_in_flight(1).build().unwrap();
        let gate = probe.close_gate().await;
        let mut waiters = Box::pin(futures::future::join(loader.load(1), loader.load(1)));
        assert!(futures::poll!(waiters.as_mut()).is_pending());
        assert_eq!(probe.started().await, [1]);
        drop(waiters);
        drop(gate);
        // With one slot, key 2's fetch starts only after key 1's has ended.
        assert_eq!(loader.load(2).await, Ok(20));
        let hit = within(
            Duration::from_secs(5),
            "load after abandoned fetch",
            loader.load(1),
        )
        .await;
        assert_eq!(hit, Ok(10));
        assert_eq!(probe.batches(), [vec![1], vec![2]]);
    }

    /// `close` fetches every queued key before it returns; afterwards keys
    /// that need a fetch are `Closed` and known keys are still answered.
    async fn close_drains_queued_loads(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(100).max_delay(FOREVER).build().unwrap();
        let mut loads: Vec<_> = (1..=5).map(|key| Box::pin(loader.load(key))).collect();
        for load in &mut loads {
            assert!(futures::poll!(load.as_mut()).is_pending());
        }
        let mut tasks = Vec::new();
        for key in 6..=8 {
            let loader = loader.clone();
            tasks.push(rt.spawn_polled(async move { loader.load(key).await }).await);
        }
        assert!(!loader.is_closed());
        loader.close().await;
        assert!(loader.is_closed());
        // Answered by the time `close` returned: ready without waiting.
        for (key, load) in (1..=5).zip(loads) {
            assert_eq!(load.now_or_never(), Some(Ok(value_of(key))), "key {key}");
        }
        assert_eq!(join_all(tasks).await, vec![Ok(60), Ok(70), Ok(80)]);
        assert_eq!(probe.batch_count(), 1);

        assert_eq!(loader.load(99).await, Err(LoadError::Closed));
        assert_eq!(loader.load(3).await, Ok(30));
        assert_eq!(loader.load_many(&[3, 99]).await, Err(LoadError::Closed));
        assert_eq!(loader.load_each(&[3, 99]).await, vec![Ok(30), Err(LoadError::Closed)]);
        // A key refused once is not left half-claimed.
        assert_eq!(loader.load(99).await, Err(LoadError::Closed));
        assert_eq!(probe.batch_count(), 1);
        // Closing again is harmless, from any clone.
        within(Duration::from_secs(5), "second close", loader.clone().close()).await;
    }

    /// `close` waits for fetches in flight.
    async fn close_waits_for_running_fetches(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        let gate = probe.close_gate().await;
        let running = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(1).await })
        };
        assert_eq!(probe.started().await, [1]);
        let mut closing = Box::pin(loader.close());
        assert_pending(&mut closing, "close returned while a fetch was running").await;
        assert!(loader.is_closed());
        drop(gate);
        closing.await;
        assert_eq!(running.await, Ok(10));
    }

    /// Dropping every handle ends the collector and drops the fetcher.
    async fn dropping_every_handle_drops_the_fetcher(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        let clone = loader.clone();
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(clone.load_many(&[2, 3]).await, Ok(vec![20, 30]));
        sleep(Duration::from_millis(20)).await;
        assert!(probe.fetcher_alive(), "the fetcher was dropped while handles live");
        drop(loader);
        assert!(probe.fetcher_alive(), "the fetcher was dropped while a clone lives");
        drop(clone);
        probe.wait_fetcher_dropped("the fetcher outlived every handle").await;
    }

    /// Keys still queued when the last handle drops are fetched, then the
    /// collector exits and drops the fetcher.
    async fn dropping_the_last_handle_flushes_queued_keys(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_delay(FOREVER).build().unwrap();
        let mut loads = Box::pin(futures::future::join_all([1, 2, 3].map(|key| loader.load(key))));
        assert!(futures::poll!(loads.as_mut()).is_pending());
        drop(loads);
        drop(loader);
        probe.wait_fetcher_dropped("the fetcher outlived every handle").await;
        let mut batches = probe.batches();
        batches.iter_mut().for_each(|batch| batch.sort_unstable());
        assert_eq!(batches, [vec![1, 2, 3]]);
    }

    /// A closed loader drops its fetcher too once the handles are gone.
    async fn closed_loader_drops_the_fetcher(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        loader.close().await;
        drop(loader);
        probe.wait_fetcher_dropped("the fetcher outlived a closed loader").await;
    }

    /// Label and `Debug`.
    async fn label_and_debug(rt: Rt) {
        let (builder, _probe) = builder(&rt);
        let loader = builder.label("users").build().unwrap();
        assert_eq!(loader.label(), Some("users"));
        let shown = format!("{loader:?}");
        assert!(shown.contains("users") && shown.contains("closed: false"), "{shown}");
        let (builder, _probe) = common::builder(&rt);
        assert_eq!(builder.build().unwrap().label(), None);
    }

    /// A batch task dropped unpolled by its executor answers `Closed`, and
    /// the key is fetched again by a later load.
    async fn dropped_batch_answers_closed_and_is_retried(rt: Rt) {
        let (spawner, loader, probe) = loader_parking_batches(&rt);
        let mut load = Box::pin(loader.load(1));
        assert!(futures::poll!(load.as_mut()).is_pending());
        batch_parked(&spawner).await;
        spawner.drop_parked();
        let answer = within(Duration::from_secs(5), "load of a dropped batch", load).await;
        assert_eq!(answer, Err(LoadError::Closed));
        spawner.set_park(false);
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.batches(), [vec![1]]);
    }

    /// A batch dropped unanswered after its only caller gave up leaves a
    /// settled entry behind, with nobody to remove it: the next load of the
    /// key replaces it and fetches again instead of joining it.
    async fn dropped_batch_without_callers_is_fetched_again(rt: Rt) {
        let (spawner, loader, probe) = loader_parking_batches(&rt);
        let mut load = Box::pin(loader.load(1));
        assert!(futures::poll!(load.as_mut()).is_pending());
        batch_parked(&spawner).await;
        drop(load);
        spawner.drop_parked();
        spawner.set_park(false);
        let again = within(Duration::from_secs(5), "load after an unanswered batch", loader.load(1)).await;
        assert_eq!(again, Ok(10));
        assert_eq!(probe.batches(), [vec![1]], "the dropped batch never ran");
    }

    /// When the executor drops the collector, later loads are `Closed` and
    /// `close` returns.
    async fn dropped_collector_refuses_new_loads(rt: Rt) {
        let spawner = Parking::new(&rt, true);
        let (fetcher, probe) = TestFetcher::new();
        let loader = anybatch::BatchFetcher::builder(fetcher)
            .spawner(spawner.clone())
            .build()
            .unwrap();
        assert_eq!(spawner.parked(), 1);
        spawner.drop_parked();
        let answer = within(
            Duration::from_secs(5),
            "load after the collector was dropped",
            loader.load(1),
        )
        .await;
        assert_eq!(answer, Err(LoadError::Closed));
        assert!(loader.is_closed());
        within(
            Duration::from_secs(5),
            "close after the collector was dropped",
            loader.close(),
        )
        .await;
        assert_eq!(probe.batch_count(), 0);
    }

    /// When the executor drops the collector while keys are queued, their
    /// loads are answered `Closed` rather than left waiting.
    async fn dropped_collector_answers_queued_loads(rt: Rt) {
        let spawner = Parking::new(&rt, true);
        let (fetcher, _probe) = TestFetcher::new();
        let loader = anybatch::BatchFetcher::builder(fetcher)
            .spawner(spawner.clone())
            .build()
            .unwrap();
        let mut load = Box::pin(loader.load(1));
        assert!(futures::poll!(load.as_mut()).is_pending());
        spawner.drop_parked();
        let answer = within(
            Duration::from_secs(5),
            "load queued when the collector was dropped",
            load,
        )
        .await;
        assert_eq!(answer, Err(LoadError::Closed));
    }
}

mod lead {
    use super::*;

    runtime_tests! {
        /// With no delay, a lone load on an idle loader runs its batch on its
        /// own task; if it is dropped mid-fetch, the rest of the batch is
        /// spawned, so a caller that joined the key is still answered and
        /// the key is fetched once.
        async fn dropped_leader_hands_its_batch_over(rt: Rt) {
            let (builder, probe) = builder(&rt);
            let loader = builder.max_delay(Duration::ZERO).build().unwrap();
            let gate = probe.close_gate().await;
            let mut leader = Box::pin(loader.load(1));
            // Polled on this task: it leads, yields once to let others
            // join, then runs its fetch, which waits at the gate.
            assert!(futures::poll!(leader.as_mut()).is_pending());
            assert!(futures::poll!(leader.as_mut()).is_pending());
            assert_eq!(probe.started().await, [1]);
            let joiner = loader.clone();
            let joiner = rt.spawn_polled(async move { joiner.load(1).await }).await;
            drop(leader);
            drop(gate);
            let answer = within(Duration::from_secs(10), "the joiner", joiner).await;
            assert_eq!(answer, Ok(10));
            assert_eq!(probe.times_fetched(1), 1);
            assert_eq!(loader.stats().batches, 1);
        }

        /// With no delay, a `load_many` on an idle loader leads the batch its
        /// keys queue for; dropped while it gathers, it spawns that batch,
        /// so a caller that joined one of its keys is answered and each key
        /// is fetched once. The collector is parked unpolled, so only the
        /// dropped lead can have run the batch.
        async fn dropped_load_many_lead_spawns_what_it_gathered(rt: Rt) {
            let spawner = Parking::new(&rt, true);
            let (fetcher, probe) = TestFetcher::new();
            let loader = anybatch::BatchFetcher::builder(fetcher)
                .spawner(spawner.clone())
                .max_delay(Duration::ZERO)
                .build()
                .unwrap();
            assert_eq!(spawner.parked(), 1, "the collector is parked");
            spawner.set_park(false);
            let keys = [1, 2, 3];
            let mut many = Box::pin(loader.load_many(&keys));
            // It leads, queues its keys, then yields once to gather.
            assert!(futures::poll!(many.as_mut()).is_pending());
            assert!(probe.batches().is_empty(), "nothing runs while it gathers");
            let joiner = loader.clone();
            let joiner = rt.spawn_polled(async move { joiner.load(2).await }).await;
            drop(many);
            let answer = within(Duration::from_secs(10), "the joiner", joiner).await;
            assert_eq!(answer, Ok(20));
            let mut batches = probe.batches();
            batches.iter_mut().for_each(|batch| batch.sort_unstable());
            assert_eq!(batches, [vec![1, 2, 3]]);
            assert_eq!(loader.stats().batches, 1);
        }
    }
}
