//! Grouped loaders: a batch holds keys of one group, caching and dedup are
//! per (group, key), groups share `max_in_flight`; and per-request loaders
//! leave nothing behind.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anybatch::{GroupFetcher, GroupedBatchFetcher, LoadError, Values};
use async_lock::RwLock;
use common::*;

/// The value of `key` in `group`: different in every group.
fn grouped_value(group: u32, key: u64) -> u64 {
    u64::from(group) * 1000 + key
}

/// Every fetch call, as (group, keys).
type Calls = Arc<Mutex<Vec<(u32, Vec<u64>)>>>;

/// Records every call as (group, keys); each call waits at a gate the test
/// can close; key 0 is never delivered.
struct Tenants {
    calls: Calls,
    gate: Arc<RwLock<()>>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    started: async_channel::Sender<u32>,
}

struct TenantsProbe {
    calls: Calls,
    gate: Arc<RwLock<()>>,
    most_running: Arc<AtomicUsize>,
    started: async_channel::Receiver<u32>,
}

impl Tenants {
    fn new() -> (Self, TenantsProbe) {
        let (started, started_rx) = async_channel::unbounded();
        let fetcher = Tenants {
            calls: Arc::default(),
            gate: Arc::default(),
            running: Arc::default(),
            most_running: Arc::default(),
            started,
        };
        let probe = TenantsProbe {
            calls: fetcher.calls.clone(),
            gate: fetcher.gate.clone(),
            most_running: fetcher.most_running.clone(),
            started: started_rx,
        };
        (fetcher, probe)
    }
}

impl TenantsProbe {
    fn calls(&self) -> Vec<(u32, Vec<u64>)> {
        let mut calls = self.calls.lock().unwrap().clone();
        calls.sort();
        calls
    }
}

impl GroupFetcher for Tenants {
    type Group = u32;
    type Key = u64;
    type Value = u64;
    type Error = TestError;

    async fn fetch(
        &self,
        group: &u32,
        keys: &[u64],
        values: &mut Values<u64, u64>,
    ) -> Result<(), TestError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let _ = self.started.try_send(*group);
        let _open = self.gate.read().await;
        self.calls.lock().unwrap().push((*group, keys.to_vec()));
        for &key in keys.iter().filter(|&&key| key != 0) {
            values.insert(key, grouped_value(*group, key));
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

fn grouped(rt: &Rt) -> (anybatch::GroupedFetcherBuilder<Tenants>, TenantsProbe) {
    let (fetcher, probe) = Tenants::new();
    let builder = GroupedBatchFetcher::builder(fetcher).spawner(rt.spawner());
    (builder, probe)
}

runtime_tests! {
    /// Loads of three groups polled together make one batch per group, each
    /// holding only its group's keys, and each key gets its group's value.
    /// Each batch is dispatched by filling up (ten keys a group), not by a
    /// timer, so a slow poll cannot split one.
    async fn batches_never_mix_groups(rt: Rt) {
        let (builder, probe) = grouped(&rt);
        let loader = builder.max_batch_size(10).max_delay(FOREVER).build().unwrap();
        let loads = (0..30u64).map(|i| {
            let loader = loader.clone();
            let group = (i % 3) as u32;
            async move { (group, i, loader.load(&group, i).await) }
        });
        for (group, key, answer) in futures::future::join_all(loads).await {
            match key {
                0 => assert_eq!(answer, Err(LoadError::NotFound)),
                _ => assert_eq!(answer, Ok(grouped_value(group, key))),
            }
        }
        let calls = probe.calls();
        assert_eq!(calls.len(), 3, "one batch per group: {calls:?}");
        for (group, keys) in calls {
            assert_eq!(keys.len(), 10);
            assert!(keys.iter().all(|key| key % 3 == u64::from(group)), "{group}: {keys:?}");
        }
        assert_eq!(loader.groups(), 3);
        assert_eq!(loader.stats().batches, 3);
    }

    /// The same key in two groups is two entries; the same (group, key)
    /// loaded concurrently is fetched once and then cached.
    async fn cache_and_dedup_are_per_group(rt: Rt) {
        let (builder, probe) = grouped(&rt);
        let loader = builder.build().unwrap();
        let (a, b, c) = futures::join!(loader.load(&1, 5), loader.load(&1, 5), loader.load(&2, 5));
        assert_eq!((a, b, c), (Ok(1005), Ok(1005), Ok(2005)));
        assert_eq!(loader.load(&2, 5).await, Ok(2005));
        assert_eq!(loader.load_many(&1, &[5, 5]).await, Ok(vec![1005, 1005]));
        assert_eq!(probe.calls(), [(1, vec![5]), (2, vec![5])]);
        // Priming and clearing touch one group only.
        assert!(loader.prime(&3, 5, 42).await);
        assert_eq!(loader.load(&3, 5).await, Ok(42));
        loader.clear(&1, &5).await;
        assert_eq!(loader.load_each(&1, &[5]).await, vec![Ok(1005)]);
        assert_eq!(loader.load(&2, 5).await, Ok(2005));
        assert_eq!(probe.calls().len(), 3, "only group 1 fetched again");
    }

    /// Batches of different groups run at the same time, but never more of
    /// them than the one `max_in_flight` all groups share.
    async fn groups_share_max_in_flight(rt: Rt) {
        let (builder, probe) = grouped(&rt);
        let loader = builder.max_in_flight(2).build().unwrap();
        let gate = probe.gate.write_arc().await;
        let pending: Vec<_> = (0..4u32)
            .map(|group| {
                let loader = loader.clone();
                rt.spawn(async move { loader.load(&group, 1).await })
            })
            .collect();
        // Two groups start while the gate holds them...
        let first = within(Duration::from_secs(10), "two batches start", async {
            [probe.started.recv().await.unwrap(), probe.started.recv().await.unwrap()]
        })
        .await;
        assert_ne!(first[0], first[1]);
        // ...and no third while both slots are taken.
        let mut third = Box::pin(probe.started.recv());
        assert_pending(&mut third, "a third group's batch started").await;
        drop(gate);
        for (group, answer) in (0..4u32).zip(join_all(pending).await) {
            assert_eq!(answer, Ok(grouped_value(group, 1)));
        }
        assert_eq!(probe.most_running.load(Ordering::SeqCst), 2);
        assert_eq!(loader.stats().batches, 4);
    }

    /// A forgotten group starts afresh; the others keep their maps.
    async fn clear_group_forgets_one_group(rt: Rt) {
        let (builder, probe) = grouped(&rt);
        let loader = builder.build().unwrap();
        assert_eq!(loader.load(&1, 1).await, Ok(1001));
        assert_eq!(loader.load(&2, 1).await, Ok(2001));
        loader.clear_group(&1);
        assert_eq!(loader.groups(), 1);
        assert_eq!(loader.load(&1, 1).await, Ok(1001));
        assert_eq!(loader.load(&2, 1).await, Ok(2001));
        assert_eq!(probe.calls(), [(1, vec![1]), (1, vec![1]), (2, vec![1])]);
        loader.clear_all();
        assert_eq!(loader.groups(), 0);
    }

    /// `close` drains every group; afterwards known keys still answer and
    /// new work, even in a group never seen, is refused.
    async fn close_closes_every_group(rt: Rt) {
        let (builder, probe) = grouped(&rt);
        let loader = builder.max_delay(FOREVER).build().unwrap();
        let queued = {
            let loader = loader.clone();
            rt.spawn_polled(async move { loader.load(&1, 3).await }).await
        };
        loader.close().await;
        assert!(loader.is_closed());
        assert_eq!(queued.await, Ok(1003), "the queued key was fetched by close");
        assert_eq!(loader.load(&1, 3).await, Ok(1003));
        assert_eq!(loader.load(&1, 4).await, Err(LoadError::Closed));
        assert_eq!(loader.load(&9, 4).await, Err(LoadError::Closed));
        assert_eq!(probe.calls(), [(1, vec![3])]);
    }

    /// `close` also waits for a forgotten group whose fetch is still running.
    async fn close_waits_for_forgotten_groups(rt: Rt) {
        let (builder, probe) = grouped(&rt);
        let loader = builder.build().unwrap();
        let gate = probe.gate.write_arc().await;
        let pending = {
            let loader = loader.clone();
            rt.spawn(async move { loader.load(&1, 5).await })
        };
        assert_eq!(probe.started.recv().await, Ok(1));
        loader.clear_group(&1);
        let mut closing = Box::pin(loader.close());
        assert_pending(&mut closing, "close returned while group 1 was fetching").await;
        drop(gate);
        within(Duration::from_secs(10), "close after the fetch", closing).await;
        assert_eq!(pending.await, Ok(1005));
        assert_eq!(probe.calls(), [(1, vec![5])]);
    }

    /// After `close`, loads of unseen groups are refused without keeping a
    /// loader for each.
    async fn closed_loader_keeps_no_new_groups(rt: Rt) {
        let (builder, probe) = grouped(&rt);
        let loader = builder.build().unwrap();
        loader.close().await;
        for group in 0..100u32 {
            assert_eq!(loader.load(&group, 1).await, Err(LoadError::Closed));
        }
        assert_eq!(loader.groups(), 0);
        assert!(probe.calls().is_empty());
    }

    /// The default value applies in every group; stats add up all groups.
    async fn default_value_and_stats_across_groups(rt: Rt) {
        let (builder, _probe) = grouped(&rt);
        let loader = builder.default_value(77).label("tenants").build().unwrap();
        assert_eq!(loader.load(&1, 0).await, Ok(77));
        assert_eq!(loader.load(&2, 0).await, Ok(77));
        assert_eq!(loader.load(&2, 0).await, Ok(77));
        let stats = loader.stats();
        assert_eq!((stats.requests, stats.cache_hits, stats.not_found), (3, 1, 2));
        assert_eq!(loader.label(), Some("tenants"));
        assert_eq!(loader.group(&2).label(), Some("tenants"));
    }

    /// The web pattern: a fresh loader per request, used and dropped. Every
    /// one stops (its fetcher is dropped, so its collector has exited) and
    /// no request sees another's map.
    async fn per_request_loaders_leave_nothing_behind(rt: Rt) {
        let (fetcher, probe) = TestFetcher::new();
        let fetcher = Arc::new(fetcher);
        for request in 0..200u64 {
            let loader = anybatch::BatchFetcher::builder(Shared(fetcher.clone()))
                .spawner(rt.spawner())
                .build()
                .unwrap();
            // Request 0 primes key 0 with a value only it may see.
            if request == 0 {
                assert!(loader.prime(0, 1).await);
            }
            let expected = if request == 0 { 1 } else { value_of(0) };
            assert_eq!(loader.load(0).await, Ok(expected));
            assert_eq!(loader.load(request + 1).await, Ok(value_of(request + 1)));
        }
        assert_eq!(probe.times_fetched(0), 199, "no request saw another's map");
        drop(fetcher);
        probe.wait_fetcher_dropped("a per-request loader stayed alive").await;
    }
}

/// Lets many loaders share one test fetcher.
struct Shared(Arc<TestFetcher>);

impl anybatch::Fetcher for Shared {
    type Key = u64;
    type Value = u64;
    type Error = TestError;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), TestError> {
        anybatch::Fetcher::fetch(&*self.0, keys, values).await
    }
}
