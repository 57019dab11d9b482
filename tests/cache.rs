//! The identity map: hits, `prime`, `clear`, `clear_all`, remembered absence
//! and `cache(false)`.

mod common;

use std::time::Duration;

use anybatch::LoadError;
use common::*;

runtime_tests! {
    /// A key loaded once is answered from the map afterwards.
    async fn hit_makes_no_new_batch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load_many(&[1, 1]).await, Ok(vec![10, 10]));
        assert_eq!(loader.load_each(&[1]).await, vec![Ok(10)]);
        assert_eq!(probe.batches(), [vec![1]]);
    }

    /// A clone shares the map: what one handle fetched, the other knows.
    async fn clones_share_one_map(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        let clone = loader.clone();
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(clone.load(1).await, Ok(10));
        assert_eq!(probe.batch_count(), 1);
    }

    /// A cache hit never waits for a fetch that is running for another key.
    async fn hit_never_waits_for_a_fetch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        assert!(loader.prime(3, 33).await);
        probe.forget_started();
        let gate = probe.close_gate().await;
        let pending = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(2).await })
        };
        assert_eq!(probe.started().await, [2]);
        let hit = within(
            Duration::from_secs(5),
            "a cache hit waited for a fetch",
            loader.load(1),
        )
        .await;
        assert_eq!(hit, Ok(10));
        let many = within(
            Duration::from_secs(5),
            "load_many of known keys waited for a fetch",
            loader.load_many(&[3, 1]),
        )
        .await;
        assert_eq!(many, Ok(vec![33, 10]));
        drop(gate);
        assert_eq!(pending.await, Ok(20));
    }

    /// A primed value is answered without a fetch.
    async fn prime_then_load_uses_the_primed_value(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert!(loader.prime(5, 500).await);
        assert_eq!(loader.load(5).await, Ok(500));
        assert_eq!(loader.load_many(&[5, 6]).await, Ok(vec![500, 60]));
        assert_eq!(probe.batches(), [vec![6]]);
    }

    /// `prime` never overwrites a known value, nor a fetch in flight.
    async fn prime_never_overwrites(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert!(loader.prime(5, 500).await);
        assert!(!loader.prime(5, 0).await);
        assert_eq!(loader.load(5).await, Ok(500));

        assert_eq!(loader.load(1).await, Ok(10));
        assert!(!loader.prime(1, 0).await);
        assert_eq!(loader.load(1).await, Ok(10));

        probe.omit(4);
        assert_eq!(loader.load(4).await, Err(LoadError::NotFound));
        assert!(!loader.prime(4, 0).await, "prime replaced a remembered absence");
        assert_eq!(loader.load(4).await, Err(LoadError::NotFound));

        probe.forget_started();
        let gate = probe.close_gate().await;
        let running = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(2).await })
        };
        assert_eq!(probe.started().await, [2]);
        assert!(!loader.prime(2, 0).await, "prime replaced a fetch in flight");
        drop(gate);
        assert_eq!(running.await, Ok(20));
        assert_eq!(loader.load(2).await, Ok(20));
    }

    /// After `clear`, the next load fetches the key again.
    async fn clear_refetches(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(2).await, Ok(20));
        loader.clear(&1).await;
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(2).await, Ok(20));
        assert_eq!(probe.times_fetched(1), 2);
        assert_eq!(probe.times_fetched(2), 1);
        // A primed value is forgotten as well.
        assert!(loader.prime(3, 33).await);
        loader.clear(&3).await;
        assert_eq!(loader.load(3).await, Ok(30));
        // Clearing an unknown key is harmless.
        loader.clear(&99).await;
    }

    /// After `clear_all`, every key is fetched again.
    async fn clear_all_refetches_everything(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        assert_eq!(loader.load_many(&[1, 2, 3]).await, Ok(vec![10, 20, 30]));
        assert!(loader.prime(4, 44).await);
        loader.clear_all().await;
        assert_eq!(loader.load_many(&[1, 2, 3, 4]).await, Ok(vec![10, 20, 30, 40]));
        for key in 1..=3 {
            assert_eq!(probe.times_fetched(key), 2, "key {key}");
        }
        assert_eq!(probe.times_fetched(4), 1);
    }

    /// Clearing a key whose fetch is running: its waiters still get the
    /// value, and a load after the clear starts a fetch of its own.
    async fn clear_during_fetch_refetches_for_later_loads(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        let gate = probe.close_gate().await;
        let before = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(1).await })
        };
        assert_eq!(probe.started().await, [1]);
        loader.clear(&1).await;
        let after = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(1).await })
        };
        assert_eq!(probe.started().await, [1], "a load after clear joined the old fetch");
        drop(gate);
        assert_eq!(before.await, Ok(10));
        assert_eq!(after.await, Ok(10));
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.times_fetched(1), 2, "batches: {:?}", probe.batches());
    }

    /// Clearing a key whose fetch is running: that fetch's value is not
    /// stored, so the next load fetches again.
    async fn clear_during_fetch_does_not_store_its_value(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        let gate = probe.close_gate().await;
        let running = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load_many(&[1, 2]).await })
        };
        assert_eq!(probe.started().await, [1, 2]);
        loader.clear(&1).await;
        drop(gate);
        assert_eq!(running.await, Ok(vec![10, 20]));
        assert_eq!(loader.load_many(&[1, 2]).await, Ok(vec![10, 20]));
        assert_eq!(probe.times_fetched(1), 2, "batches: {:?}", probe.batches());
        assert_eq!(probe.times_fetched(2), 1, "batches: {:?}", probe.batches());
    }

    /// `clear_all` while a fetch runs: its waiters are answered, nothing of
    /// it is stored.
    async fn clear_all_during_fetch_does_not_store_its_value(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        let gate = probe.close_gate().await;
        let running = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load_many(&[1, 2]).await })
        };
        assert_eq!(probe.started().await, [1, 2]);
        loader.clear_all().await;
        drop(gate);
        assert_eq!(running.await, Ok(vec![10, 20]));
        assert_eq!(loader.load_many(&[1, 2]).await, Ok(vec![10, 20]));
        assert_eq!(probe.batch_count(), 2, "batches: {:?}", probe.batches());
    }

    /// Clearing a key that is queued but not yet fetched keeps it queued:
    /// later loads join it rather than queueing it a second time.
    async fn clear_of_a_queued_key_keeps_one_fetch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_delay(FOREVER).build().unwrap();
        let first = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(1).await }).await
        };
        loader.clear(&1).await;
        let second = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(1).await }).await
        };
        loader.close().await;
        assert_eq!(first.await, Ok(10));
        assert_eq!(second.await, Ok(10));
        assert_eq!(probe.batches(), [vec![1]]);
    }

    /// With `cache(false)`, every sequential load fetches and `prime` stores
    /// nothing.
    async fn without_cache_every_load_fetches(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.cache(false).build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.times_fetched(1), 2);
        assert!(!loader.prime(2, 22).await);
        assert_eq!(loader.load(2).await, Ok(20));
        assert_eq!(probe.times_fetched(2), 1);
        probe.omit(3);
        assert_eq!(loader.load(3).await, Err(LoadError::NotFound));
        assert_eq!(loader.load(3).await, Err(LoadError::NotFound));
        assert_eq!(probe.times_fetched(3), 2, "absence remembered with caching off");
    }

    /// A key the fetcher did not deliver is `NotFound`, remembered until
    /// cleared.
    async fn not_found_is_remembered_until_cleared(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        probe.omit(4);
        assert_eq!(loader.load(4).await, Err(LoadError::NotFound));
        assert_eq!(loader.load(4).await, Err(LoadError::NotFound));
        assert_eq!(loader.load_many(&[4]).await, Err(LoadError::NotFound));
        assert_eq!(probe.batch_count(), 1);
        loader.clear(&4).await;
        assert_eq!(loader.load(4).await, Err(LoadError::NotFound));
        assert_eq!(probe.times_fetched(4), 2);
    }

    /// Values for keys the batch did not ask for are ignored, not stored.
    async fn unrequested_values_are_ignored(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        probe.deliver_extra(1, 2);
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(2).await, Ok(20));
        assert_eq!(probe.batches(), [vec![1], vec![2]]);
    }

    /// When a key is delivered twice, the first value counts.
    async fn first_of_two_values_counts(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        probe.deliver_twice(1);
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(1).await, Ok(10));
        let (builder, probe) = common::builder(&rt);
        let uncached = builder.cache(false).build().unwrap();
        probe.deliver_twice(1);
        assert_eq!(uncached.load(1).await, Ok(10));
    }

    /// The first value counts for a key cleared while its fetch runs, too.
    async fn first_of_two_values_counts_for_a_cleared_key(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.build().unwrap();
        probe.deliver_twice(1);
        let gate = probe.close_gate().await;
        let running = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(1).await })
        };
        assert_eq!(probe.started().await, [1]);
        loader.clear(&1).await;
        drop(gate);
        assert_eq!(running.await, Ok(10), "the second delivered value won");
    }
}
