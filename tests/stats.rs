//! `stats()`: what each kind of request and batch outcome counts as.

mod common;

use std::time::Duration;

use common::*;

runtime_tests! {
    /// With zero delay, a `load_many` on an idle loader leads; when all its
    /// keys go in a whole batch, its lead runs nothing, and only the batch
    /// that ran is counted. The collector is held (it never runs): running,
    /// it could take the first key alone once its 1 ms grace for the lead
    /// passed, on a machine that stalls the caller between its two keys.
    async fn a_lead_left_with_nothing_is_not_counted_as_a_batch(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder
            .spawner(HeldSpawner::default())
            .max_batch_size(2)
            .max_delay(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(loader.load_many(&[1, 2]).await, Ok(vec![value_of(1), value_of(2)]));
        assert_eq!(probe.batch_count(), 1);
        let stats = loader.stats();
        assert_eq!((stats.batches, stats.largest_batch), (1, 2));
    }

    /// Every request is counted once, as a hit, a join or a queued key, and
    /// every batch outcome lands in its own counter.
    async fn fetcher_counts_each_outcome(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.omit(5);
        probe.fail(6, 1);
        // wasm32 aborts on a panic, so there key 7's batch fails instead.
        let panics = cfg!(not(target_arch = "wasm32"));
        if panics {
            probe.panic(7, 1);
        } else {
            probe.fail(7, 1);
        }
        let loader = builder.max_batch_size(3).max_delay(FOREVER).build().unwrap();

        // [1, 2, 2]: two keys queued, one joined; one batch of 2 (flushed by
        // a third key).
        let (first, _) = futures::join!(loader.load_many(&[1, 2, 2]), loader.load(5));
        first.unwrap();
        assert_eq!(loader.load(1).await, Ok(10)); // hit
        assert_eq!(loader.load(5).await, Err(anybatch::LoadError::NotFound)); // remembered: a hit
        let (six, _, _) = futures::join!(loader.load(6), loader.load(8), loader.load(9));
        assert!(six.is_err());
        let (seven, _, _) = futures::join!(loader.load(7), loader.load(11), loader.load(12));
        assert!(seven.is_err());
        loader.close().await;
        assert!(loader.load(99).await.is_err()); // refused: closed

        let stats = loader.stats();
        assert_eq!(stats.cache_hits, 2);
        assert_eq!(stats.joins, 1);
        assert_eq!(stats.queued, 9, "1 2 5 6 8 9 7 11 12");
        assert_eq!(stats.requests, 2 + 1 + 9 + 1);
        assert_eq!(stats.batches, 3);
        assert_eq!(stats.largest_batch, 3);
        assert!((stats.mean_batch_size - 3.0).abs() < f64::EPSILON);
        assert_eq!(stats.not_found, 1);
        assert_eq!(stats.failed_batches, if panics { 1 } else { 2 });
        assert_eq!(stats.panicked_batches, if panics { 1 } else { 0 });
        assert_eq!(stats.closed, 1);
    }

    /// On a closed loader every miss is refused, never joined, even when
    /// loads of one key overlap on several threads: nobody sees a key
    /// claimed before it is queued, and a refused key is never queued.
    #[cfg(not(target_arch = "wasm32"))] // Native only: needs OS threads
    async fn misses_on_a_closed_loader_are_refused_not_joined(rt: Rt) {
        for _ in 0..20 {
            let (builder, _probe) = builder(&rt);
            let loader = builder.max_delay(Duration::ZERO).build().unwrap();
            loader.close().await;
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let loader = loader.clone();
                    std::thread::spawn(move || {
                        for _ in 0..1_000 {
                            let refused = futures::executor::block_on(loader.load(7));
                            assert_eq!(refused, Err(anybatch::LoadError::Closed));
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            let stats = loader.stats();
            assert_eq!((stats.requests, stats.closed), (2_000, 2_000));
            assert_eq!((stats.joins, stats.queued), (0, 0), "joined a refused key");
        }
    }

    /// Backend time covers the whole backend call: at least as long as the
    /// test held the fetch at its gate.
    #[cfg(not(target_arch = "wasm32"))] // wasm32 has no clock: backend time stays zero there
    async fn backend_time_covers_the_call(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.max_delay(Duration::ZERO).build().unwrap();
        let gate = probe.close_gate().await;
        let load = loader.clone();
        let load = rt.spawn(async move { load.load(1).await });
        probe.started().await;
        sleep(Duration::from_millis(30)).await;
        drop(gate);
        assert_eq!(load.await, Ok(10));
        assert!(loader.stats().backend_time >= Duration::from_millis(30));
    }
}

/// Hits and joins from more threads than the counters have shards (each
/// thread's own, and the shared one) add up exactly.
// Native only: it spawns OS threads.
#[cfg(not(target_arch = "wasm32"))]
#[cfg(feature = "smol")]
#[test]
fn hits_from_many_threads_are_counted_exactly() {
    const THREADS: u64 = 40;
    const HITS: u64 = 2_000;
    let (fetcher, _probe) = TestFetcher::new();
    let loader = anybatch::BatchFetcher::builder(fetcher).build().unwrap();
    let keys: Vec<u64> = (0..100).collect();
    smol::block_on(loader.load_many(&keys)).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (loader, barrier) = (loader.clone(), barrier.clone());
            std::thread::spawn(move || {
                // Half the threads take a slow path first (and so a shard of
                // their own while any is free), half only ever hit.
                if thread % 2 == 0 {
                    smol::block_on(loader.load(1_000 + thread)).unwrap();
                }
                barrier.wait();
                for hit in 0..HITS {
                    assert_eq!(
                        smol::block_on(loader.load(hit % 100)),
                        Ok(value_of(hit % 100))
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = loader.stats();
    assert_eq!(stats.cache_hits, THREADS * HITS);
    assert_eq!(stats.queued, 100 + THREADS / 2);
    assert_eq!(
        stats.requests,
        stats.cache_hits + stats.joins + stats.queued
    );
}
