//! How loads become batches: size, delay, in-flight limit and deduplication.

mod common;

use std::time::Duration;

use common::*;

/// Asserts every key of `keys` was fetched exactly once.
fn assert_fetched_once(probe: &Probe, keys: impl IntoIterator<Item = u64>) {
    for key in keys {
        assert_eq!(
            probe.times_fetched(key),
            1,
            "key {key} fetched {} times in {:?}",
            probe.times_fetched(key),
            probe.batches()
        );
    }
}

/// The key sets of the batches, sorted, for order-free comparisons.
fn sorted(mut batch: Vec<u64>) -> Vec<u64> {
    batch.sort_unstable();
    batch
}

/// Spawns one task per key, each loading that key through its own clone.
fn spawn_loads(
    rt: &Rt,
    loader: &Loader,
    keys: impl IntoIterator<Item = u64>,
) -> Vec<JoinHandle<Result<u64, Error>>> {
    keys.into_iter()
        .map(|key| {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(key).await })
        })
        .collect()
}

/// A loader with batches of 10 and no timer whose collector never runs (it
/// is held by a [`HeldSpawner`]): only the loads can run its batches.
fn loader_without_collector(rt: &Rt) -> (Loader, Probe, HeldSpawner) {
    let (builder, probe) = builder(rt);
    let spawner = HeldSpawner::default();
    let loader = builder
        .spawner(spawner.clone())
        .max_batch_size(10)
        .max_delay(FOREVER)
        .build()
        .unwrap();
    (loader, probe, spawner)
}

runtime_tests! {
    /// Concurrent loads from one task form one fetch holding every key.
    async fn batches_concurrent_loads(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(20).max_delay(FOREVER).build().unwrap();
        let values = futures::future::join_all((1..=20).map(|key| loader.load(key))).await;
        let expected: Vec<_> = (1..=20).map(|key| Ok(value_of(key))).collect();
        assert_eq!(values, expected);
        assert_eq!(probe.batch_count(), 1, "batches: {:?}", probe.batches());
        assert_eq!(sorted(probe.batches()[0].clone()), (1..=20).collect::<Vec<_>>());
    }

    /// Loads from many tasks meet in one fetch too.
    async fn batches_loads_from_many_tasks(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(20).max_delay(FOREVER).build().unwrap();
        let tasks = spawn_loads(&rt, &loader, 1..=20);
        let values = join_all(tasks).await;
        assert_eq!(values, (1..=20).map(|key| Ok(value_of(key))).collect::<Vec<_>>());
        assert_eq!(probe.batch_count(), 1, "batches: {:?}", probe.batches());
        assert_eq!(sorted(probe.batches()[0].clone()), (1..=20).collect::<Vec<_>>());
    }

    /// Concurrent loads of the same key share one fetch, which sees it once.
    async fn concurrent_loads_of_one_key_share_a_fetch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(2).max_delay(FOREVER).build().unwrap();
        let loads = [7, 7, 8, 7, 7].map(|key| loader.load(key));
        let values = futures::future::join_all(loads).await;
        assert_eq!(values, [70, 70, 80, 70, 70].map(Ok).to_vec());
        assert_eq!(probe.batches().into_iter().map(sorted).collect::<Vec<_>>(), [vec![7, 8]]);
    }

    /// `load_many` dedups its keys within a batch and answers in input order.
    async fn load_many_dedups_within_a_batch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert_eq!(loader.load_many(&[1, 1, 1, 2]).await, Ok(vec![10, 10, 10, 20]));
        assert_eq!(probe.batches().into_iter().map(sorted).collect::<Vec<_>>(), [vec![1, 2]]);
        assert_eq!(loader.load_many(&[5, 3, 4, 3]).await, Ok(vec![50, 30, 40, 30]));
        assert_eq!(probe.batch_count(), 2);
        assert_eq!(sorted(probe.batches()[1].clone()), [3, 4, 5]);
    }

    /// A batch never exceeds `max_batch_size`: 250 keys in batches of 100,
    /// 100 and 50, each key fetched once.
    async fn max_batch_size_is_a_hard_cap(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(100).max_delay(FOREVER).build().unwrap();
        let keys: Vec<u64> = (1..=250).collect();
        // The first poll queues every key under one lock; closing then
        // dispatches the last, partial batch instead of waiting an hour.
        let load = {
            let loader = loader.clone();
            let keys = keys.clone();
            rt.spawn_polled(async move { loader.load_many(&keys).await }).await
        };
        loader.close().await;
        assert_eq!(load.await, Ok(keys.iter().map(|&key| value_of(key)).collect()));
        let mut sizes: Vec<usize> = probe.batches().iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [50, 100, 100], "batches: {:?}", probe.batches());
        assert_fetched_once(&probe, keys);
    }

    /// The delay runs from a batch's first key and is never pushed back: 40
    /// keys arriving every 10 ms over a 100 ms window cannot all wait for one
    /// batch (which a delay restarted on every key would give).
    async fn delay_counts_from_the_first_key(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .max_batch_size(1000)
            .max_delay(Duration::from_millis(100))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for key in 1..=40 {
            let loader = loader.clone();
            tasks.push(rt.spawn(async move { loader.load(key).await }));
            sleep(Duration::from_millis(10)).await;
        }
        let values = join_all(tasks).await;
        assert_eq!(values, (1..=40).map(|key| Ok(value_of(key))).collect::<Vec<_>>());
        assert!(
            probe.batch_count() >= 2,
            "keys spread over >= 390 ms were held in one batch: {:?}",
            probe.batches()
        );
        assert_fetched_once(&probe, 1..=40);
    }

    /// With a zero delay, a lone load on an idle loader is fetched at once.
    async fn zero_delay_fetches_a_lone_load(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(1000).max_delay(Duration::ZERO).build().unwrap();
        assert_eq!(loader.load(7).await, Ok(70));
        assert_eq!(probe.batches(), [vec![7]]);
    }

    /// With batches of one key and no delay, nobody could join a lone load,
    /// so it runs at once, in the caller's first poll, without yielding.
    async fn full_lone_batch_runs_without_yielding(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(1).max_delay(Duration::ZERO).build().unwrap();
        let mut load = std::pin::pin!(loader.load(7));
        assert_eq!(futures::poll!(load.as_mut()), std::task::Poll::Ready(Ok(70)));
        assert_eq!(probe.batches(), [vec![7]]);
    }

    /// A load leading a zero-delay batch and then kept without being polled
    /// (the loser of a `select`) holds up nobody else: a load of another key
    /// is fetched, by the collector, after a short grace.
    async fn a_kept_unpolled_leader_does_not_hold_up_other_loads(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_delay(Duration::ZERO).build().unwrap();
        let mut kept = Box::pin(loader.load(1));
        assert!(futures::poll!(kept.as_mut()).is_pending(), "it leads, and yields");
        let other = within(Duration::from_secs(10), "a load behind a kept leader", loader.load(2));
        assert_eq!(other.await, Ok(20));
        assert_eq!(kept.await, Ok(10));
        assert_eq!(probe.batches(), [vec![2], vec![1]]);
    }

    /// With zero delay, the first `load_many` to queue a key on an idle
    /// loader leads: the calls polled while it yields queue behind it, the
    /// calls that complete whole batches run them, and the leader runs what
    /// is left. The calls of one `join_all` share whole batches with no
    /// help from the collector (held here, it never runs).
    async fn zero_delay_load_many_calls_share_batches_the_first_one_leads(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let spawner = HeldSpawner::default();
        let loader = builder
            .spawner(spawner.clone())
            .max_batch_size(10)
            .max_delay(Duration::ZERO)
            .build()
            .unwrap();
        let calls: Vec<Vec<u64>> = (0..7).map(|call| (call * 5..call * 5 + 5).collect()).collect();
        let loads = futures::future::join_all(calls.iter().map(|keys| loader.load_many(keys)));
        let values = within(Duration::from_secs(10), "load_many calls", loads).await;
        for (keys, values) in calls.iter().zip(values) {
            assert_eq!(values, Ok(keys.iter().map(|&key| value_of(key)).collect()));
        }
        let batches: Vec<Vec<u64>> = probe.batches().into_iter().map(sorted).collect();
        let expected: Vec<Vec<u64>> = vec![
            (0..10).collect(),
            (10..20).collect(),
            (20..30).collect(),
            (30..35).collect(),
        ];
        assert_eq!(batches, expected);
        assert_eq!(spawner.held(), 1, "only the collector was spawned");
    }

    /// With `gather_yields(0)`, a lone load on an idle loader runs its batch
    /// in its first poll, even when the batch has room for more.
    async fn no_gather_yields_runs_a_lone_load_at_once(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .max_batch_size(1000)
            .max_delay(Duration::ZERO)
            .gather_yields(0)
            .build()
            .unwrap();
        let mut load = std::pin::pin!(loader.load(7));
        assert_eq!(futures::poll!(load.as_mut()), std::task::Poll::Ready(Ok(70)));
        assert_eq!(probe.batches(), [vec![7]]);
    }

    /// A batch that waits out its delay, then one that fills before its
    /// delay: both are answered (the first one's timer, which has fired, is
    /// not waited on again).
    async fn a_full_batch_after_a_timed_out_one_is_answered(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .max_batch_size(2)
            .max_delay(Duration::from_millis(50))
            .build()
            .unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        let (two, three) = futures::join!(loader.load(2), loader.load(3));
        assert_eq!((two, three), (Ok(20), Ok(30)));
        assert_eq!(probe.batches()[0], [1]);
    }

    /// The load that completes a batch fetches it on its own task: with a
    /// collector that never runs, three full batches from one `join_all`
    /// are still fetched, and no task besides the collector is spawned.
    async fn a_full_batch_is_fetched_by_the_load_that_completed_it(rt: Rt) {
        let (loader, probe, spawner) = loader_without_collector(&rt);
        let loads = futures::future::join_all((0..30).map(|key| loader.load(key)));
        let values = within(Duration::from_secs(10), "the loads", loads).await;
        assert_eq!(values, (0..30).map(|key| Ok(value_of(key))).collect::<Vec<_>>());
        assert_eq!(probe.batch_count(), 3, "batches: {:?}", probe.batches());
        assert_eq!(spawner.held(), 1, "only the collector was spawned");
        assert_fetched_once(&probe, 0..30);
    }

    /// Dropping the load that completed a batch, while that batch's fetch
    /// waits, hands the batch to a task of its own: the other key in it is
    /// still answered, from the one fetch.
    async fn dropping_the_load_running_a_full_batch_still_answers_the_rest(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(2).max_delay(FOREVER).build().unwrap();
        let gate = probe.close_gate().await;
        let first = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(1).await }).await
        };
        // Completes the batch and runs it here, up to the gate.
        let mut second = Box::pin(loader.load(2));
        assert_pending(&mut second, "the batch's fetch waits at the gate").await;
        assert_eq!(probe.started().await, [1, 2]);
        drop(second);
        drop(gate);
        assert_eq!(first.await, Ok(10));
        assert_eq!(probe.batches(), [vec![1, 2]]);
    }

    /// The batches a `load_many` completes run on its task side by side:
    /// all three start while the first is still held at the gate.
    async fn load_many_runs_the_batches_it_completes_side_by_side(rt: Rt) {
        let (loader, probe, spawner) = loader_without_collector(&rt);
        let gate = probe.close_gate().await;
        let keys: Vec<u64> = (0..30).collect();
        let load = {
            let (loader, keys) = (loader.clone(), keys.clone());
            rt.spawn(async move { loader.load_many(&keys).await })
        };
        let mut started = Vec::new();
        for _ in 0..3 {
            started.extend(probe.started().await);
        }
        drop(gate);
        let values = within(Duration::from_secs(10), "load_many", load).await;
        assert_eq!(values, Ok(keys.iter().map(|&key| value_of(key)).collect()));
        assert_eq!(sorted(started), keys);
        assert_eq!(spawner.held(), 1, "only the collector was spawned");
    }

    /// After a load took the batch it completed, the next batch's window is
    /// counted from its own first key, not from the taken batch's: a key
    /// arriving late in the old window still waits its whole delay.
    // Native only: it reads `std::time::Instant`, which panics on wasm32.
    #[cfg(not(target_arch = "wasm32"))]
    async fn the_window_after_a_taken_batch_starts_at_its_first_key(rt: Rt) {
        let window = Duration::from_millis(300);
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(2).max_delay(window).build().unwrap();
        // Queued before key 2, whatever the scheduling.
        let first = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(1).await }).await
        };
        // Time for the collector to open the window of key 1 (a stall only
        // makes the check below weaker, never wrong).
        sleep(Duration::from_millis(50)).await;
        assert_eq!(loader.load(2).await, Ok(20), "2 completes the batch and runs it");
        assert_eq!(first.await, Ok(10));
        sleep(Duration::from_millis(150)).await;
        let start = std::time::Instant::now();
        assert_eq!(loader.load(3).await, Ok(30));
        assert!(
            start.elapsed() >= window,
            "3 waited {:?} of its {window:?}",
            start.elapsed()
        );
        assert_eq!(probe.batches(), [vec![1, 2], vec![3]]);
    }

    /// With a long delay, a lone load waits for more keys; `close` flushes it.
    async fn long_delay_holds_a_lone_load_until_close(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_batch_size(1000).max_delay(FOREVER).build().unwrap();
        let mut load = Box::pin(loader.load(7));
        assert_pending(&mut load, "a lone load completed before its hour-long delay").await;
        assert_eq!(probe.batch_count(), 0);
        let (closed, value) = futures::join!(loader.close(), load);
        let () = closed;
        assert_eq!(value, Ok(70));
        assert_eq!(probe.batches(), [vec![7]]);
    }

    /// At most `max_in_flight` fetches run at once.
    async fn max_in_flight_caps_running_fetches(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .max_in_flight(2)
            .max_batch_size(1)
            .max_delay(Duration::ZERO)
            .build()
            .unwrap();
        let gate = probe.close_gate().await;
        let tasks = spawn_loads(&rt, &loader, 1..=3);
        probe.started().await;
        probe.started().await;
        probe.assert_no_start("a third fetch started while two were running").await;
        drop(gate);
        assert_eq!(join_all(tasks).await, vec![Ok(10), Ok(20), Ok(30)]);
        assert_eq!(probe.batch_count(), 3);
        assert_eq!(probe.max_concurrent(), 2);
    }

    /// Up to the limit, fetches do run at the same time.
    async fn fetches_run_concurrently_up_to_the_limit(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .max_in_flight(2)
            .max_batch_size(1)
            .max_delay(Duration::ZERO)
            .build()
            .unwrap();
        let gate = probe.close_gate().await;
        let tasks = spawn_loads(&rt, &loader, 1..=2);
        // Both start while the gate still holds the first one.
        let mut started = vec![probe.started().await, probe.started().await];
        started.sort();
        assert_eq!(started, [vec![1], vec![2]]);
        assert_eq!(probe.max_concurrent(), 2);
        drop(gate);
        assert_eq!(join_all(tasks).await, vec![Ok(10), Ok(20)]);
    }

    /// With one slot, fetches run one at a time.
    async fn single_slot_runs_fetches_one_at_a_time(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .max_in_flight(1)
            .max_batch_size(1)
            .max_delay(Duration::ZERO)
            .build()
            .unwrap();
        let gate = probe.close_gate().await;
        let tasks = spawn_loads(&rt, &loader, 1..=2);
        probe.started().await;
        probe.assert_no_start("a second fetch started while the only slot was busy").await;
        drop(gate);
        assert_eq!(join_all(tasks).await, vec![Ok(10), Ok(20)]);
        assert_eq!(probe.batch_count(), 2);
        assert_eq!(probe.max_concurrent(), 1);
    }

    /// While every slot is busy, new keys gather into the next batch.
    async fn keys_queue_while_every_slot_is_busy(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .max_in_flight(1)
            .max_batch_size(100)
            .max_delay(Duration::ZERO)
            .build()
            .unwrap();
        let gate = probe.close_gate().await;
        let first = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(1).await })
        };
        assert_eq!(probe.started().await, [1]);
        // One poll of a load queues its key (nothing else holds the map's
        // lock now: the only fetch waits at the gate).
        let mut second = Box::pin(loader.load(2));
        assert!(futures::poll!(second.as_mut()).is_pending());
        // Let the collector take key 2 and wait for the busy slot, so the
        // keys below arrive while it waits (any order passes when correct).
        sleep(Duration::from_millis(50)).await;
        let mut rest = Box::pin(futures::future::join_all((3..=51).map(|key| loader.load(key))));
        assert!(futures::poll!(rest.as_mut()).is_pending());
        drop(gate);
        assert_eq!(first.await, Ok(10));
        assert_eq!(second.await, Ok(20));
        assert_eq!(rest.await, (3..=51).map(|key| Ok(value_of(key))).collect::<Vec<_>>());
        let batches = probe.batches();
        assert_eq!(batches.len(), 2, "batches: {batches:?}");
        assert_eq!(batches[0], [1]);
        assert_eq!(sorted(batches[1].clone()), (2..=51).collect::<Vec<_>>());
    }

    /// Loads of a key whose fetch is running join it instead of fetching again.
    async fn joins_the_fetch_in_flight(rt: Rt) {
        joins_the_fetch_in_flight_with(rt, true).await;
    }

    /// Joining a running fetch works with caching off as well.
    async fn joins_the_fetch_in_flight_without_cache(rt: Rt) {
        joins_the_fetch_in_flight_with(rt, false).await;
    }
}

async fn joins_the_fetch_in_flight_with(rt: Rt, cache: bool) {
    let (builder, probe) = builder(&rt);
    let loader = builder.cache(cache).build().unwrap();
    let gate = probe.close_gate().await;
    let first = {
        let loader = loader.clone();
        rt.spawn(async move { loader.load(1).await })
    };
    assert_eq!(probe.started().await, [1]);
    // Each task has looked its key up before the gate opens (the running
    // fetch holds no lock while it waits at the gate).
    let mut joiners = Vec::new();
    for _ in 0..5 {
        let loader = loader.clone();
        joiners.push(rt.spawn_polled(async move { loader.load(1).await }).await);
    }
    let many = {
        let loader = loader.clone();
        rt.spawn_polled(async move { loader.load_many(&[1, 1, 2]).await })
            .await
    };
    assert_eq!(probe.started().await, [2]);
    drop(gate);
    assert_eq!(first.await, Ok(10));
    assert_eq!(join_all(joiners).await, vec![Ok(10); 5]);
    assert_eq!(many.await, Ok(vec![10, 10, 20]));
    assert_eq!(probe.times_fetched(1), 1, "batches: {:?}", probe.batches());
    assert_eq!(probe.batches(), [vec![1], vec![2]]);
}

/// `join_all` and spawned tasks move every `load` future, so it stays small:
/// the paths that wait for a lock or run a batch are boxed. (144 bytes for a
/// `u64` key and value with rustc 1.95; the bound leaves room for others.)
// Native only: the size bound is for 64-bit targets.
#[cfg(not(target_arch = "wasm32"))]
#[cfg(feature = "smol")]
#[test]
fn the_load_future_stays_small() {
    let (fetcher, _probe) = TestFetcher::new();
    let loader = anybatch::BatchFetcher::builder(fetcher).build().unwrap();
    let load = loader.load(1);
    let size = std::mem::size_of_val(&load);
    assert!(size <= 192, "the load future takes {size} bytes");
}
