//! Pluggable stores behind the identity map: bounded, expiring, custom.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anybatch::{
    GroupFetcher, GroupedBatchFetcher, LoadError, LruStore, MapStore, Store, TtlStore, Values,
};
use common::*;

/// A store that keeps only even keys and logs what the loader asks of it.
#[derive(Default)]
struct EvenOnly {
    map: HashMap<u64, Option<u64>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Store<u64, Option<u64>> for EvenOnly {
    fn get(&self, key: &u64) -> Option<Option<u64>> {
        self.map.get(key).copied()
    }

    fn insert(&mut self, key: u64, value: Option<u64>) {
        self.log
            .lock()
            .unwrap()
            .push(format!("insert {key} {value:?}"));
        if key % 2 == 0 {
            self.map.insert(key, value);
        }
    }

    fn remove(&mut self, key: &u64) {
        self.log.lock().unwrap().push(format!("remove {key}"));
        self.map.remove(key);
    }

    fn clear(&mut self) {
        self.log.lock().unwrap().push("clear".into());
        self.map.clear();
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A store whose `clear` tells the test it started, then holds the
/// identity map's write until the test lets it go (or 10 s pass).
struct GatedClear {
    map: MapStore<u64, Option<u64>>,
    clearing: mpsc::Sender<()>,
    release: Mutex<mpsc::Receiver<()>>,
    gave_up: Arc<AtomicBool>,
}

impl Store<u64, Option<u64>> for GatedClear {
    fn get(&self, key: &u64) -> Option<Option<u64>> {
        self.map.get(key)
    }

    fn insert(&mut self, key: u64, value: Option<u64>) {
        self.map.insert(key, value);
    }

    fn remove(&mut self, key: &u64) {
        self.map.remove(key);
    }

    fn clear(&mut self) {
        let _ = self.clearing.send(());
        let released = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        self.gave_up.store(released.is_err(), Ordering::SeqCst);
        self.map.clear();
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

runtime_tests! {
    /// A batch that starts while a writer holds the identity map (here a
    /// store's slow `clear`) waits for the writer without blocking its
    /// thread: the writer is let go only after the batch's poll returns.
    #[cfg(not(target_arch = "wasm32"))]
    // Native only: the writer runs on a thread of its own.
    async fn a_batch_starting_during_a_slow_write_does_not_block_its_thread(rt: Rt) {
        let (clearing, cleared) = mpsc::channel();
        let (release, released) = mpsc::channel();
        let gave_up = Arc::new(AtomicBool::new(false));
        let store = GatedClear {
            map: MapStore::new(),
            clearing,
            release: Mutex::new(released),
            gave_up: gave_up.clone(),
        };
        let (builder, _probe) = builder(&rt);
        let loader = builder.store(store).max_delay(Duration::ZERO).build().unwrap();
        // The lone load of an idle loader runs its own batch, after one yield.
        let mut load = Box::pin(loader.load(1));
        assert!(futures::poll!(load.as_mut()).is_pending(), "the load yields first");
        let writer = std::thread::spawn({
            let loader = loader.clone();
            move || futures::executor::block_on(loader.clear_all())
        });
        cleared
            .recv_timeout(Duration::from_secs(10))
            .expect("clear_all to reach the store");
        // The batch starts here, while the writer holds the map.
        let polled = futures::poll!(load.as_mut());
        let _ = release.send(());
        writer.join().unwrap();
        assert!(
            !gave_up.load(Ordering::SeqCst),
            "the batch's poll blocked its thread until the writer gave up"
        );
        assert!(polled.is_pending(), "the batch waits for the writer");
        assert_eq!(load.await.unwrap(), value_of(1));
    }

    /// An `LruStore` never holds more than its capacity; evicted keys are
    /// fetched again, keys in use stay.
    async fn lru_store_bounds_the_loader(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.store(LruStore::new(100)).build().unwrap();
        assert_eq!(loader.load(0).await, Ok(0));
        for chunk in (1..1_000u64).collect::<Vec<_>>().chunks(50) {
            let values = loader.load_many(chunk).await.unwrap();
            assert_eq!(values, chunk.iter().map(|&key| value_of(key)).collect::<Vec<_>>());
            // Key 0 is in use between every chunk.
            assert_eq!(loader.load(0).await, Ok(0));
            assert!(loader.cached().await <= 100);
        }
        assert_eq!(loader.cached().await, 100);
        assert_eq!(probe.times_fetched(0), 1, "the key in use was never evicted");
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.times_fetched(1), 2, "an evicted key is fetched again");
    }

    /// Remembered absences, `prime`, `clear` and `clear_all` go through the
    /// store; dedup of keys in flight does not depend on it.
    async fn custom_store_sees_every_answer(rt: Rt) {
        let (builder, probe) = builder(&rt);
        probe.omit(4);
        let store = EvenOnly::default();
        let log = store.log.clone();
        let loader = builder.store(store).build().unwrap();
        let (a, b, c, d) = futures::join!(loader.load(2), loader.load(3), loader.load(3), loader.load(4));
        assert_eq!((a, b, c, d), (Ok(20), Ok(30), Ok(30), Err(LoadError::NotFound)));
        assert_eq!(probe.batches(), [vec![2, 3, 4]], "key 3 fetched once");
        // 2 and 4 are kept, 3 is not.
        assert_eq!(loader.load_each(&[2, 3, 4]).await, vec![Ok(20), Ok(30), Err(LoadError::NotFound)]);
        assert_eq!(probe.times_fetched(3), 2);
        assert_eq!(probe.times_fetched(4), 1);
        assert!(loader.prime(6, 66).await);
        assert!(!loader.prime(7, 77).await, "the store refused it");
        loader.clear(&2).await;
        loader.clear_all().await;
        assert_eq!(loader.cached().await, 0);
        let log = log.lock().unwrap().clone();
        for line in ["insert 2 Some(20)", "insert 4 None", "insert 6 Some(66)", "remove 2", "clear"] {
            assert!(log.iter().any(|entry| entry == line), "{line} missing from {log:?}");
        }
    }

    /// A `TtlStore` forgets an entry once its time is up.
    async fn ttl_store_expires_entries(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.store(TtlStore::new(Duration::from_millis(50))).build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        sleep(Duration::from_millis(120)).await;
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.times_fetched(1), 2, "the expired entry was fetched again");
    }

    /// Within its time and capacity, a `TtlStore` answers like the map.
    async fn ttl_store_caches_until_full(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let store = TtlStore::new(Duration::from_secs(3600)).with_capacity(10);
        let loader = builder.store(store).build().unwrap();
        loader.load_many(&(0..10).collect::<Vec<_>>()).await.unwrap();
        loader.load_many(&(0..10).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(probe.batch_count(), 1);
        loader.load_many(&(10..15).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(loader.cached().await, 10);
        assert_eq!(loader.load(0).await, Ok(0));
        assert_eq!(probe.times_fetched(0), 2, "the oldest entries made room");
    }

    /// A time to live too long to add to the clock means "never expires".
    async fn ttl_store_takes_the_longest_ttl(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.store(TtlStore::new(Duration::MAX).with_capacity(10)).build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(probe.times_fetched(1), 1);
    }

    /// `cache(false)` keeps nothing, whatever store was given.
    async fn cache_off_ignores_the_store(rt: Rt) {
        let (builder, probe) = builder(&rt);
        let loader = builder.store(LruStore::new(10)).cache(false).build().unwrap();
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.load(1).await, Ok(10));
        assert_eq!(loader.cached().await, 0);
        assert_eq!(probe.times_fetched(1), 2);
    }

    /// Each group gets its own store from `store_per_group`.
    async fn store_per_group_bounds_each_group(rt: Rt) {
        let loader = GroupedBatchFetcher::builder(PerTenant)
            .store_per_group(|tenant: &u32| LruStore::new(*tenant as usize))
            .spawner(rt.spawner())
            .build()
            .unwrap();
        for tenant in [2u32, 5] {
            let keys: Vec<u64> = (0..20).collect();
            assert_eq!(loader.load_many(&tenant, &keys).await.unwrap().len(), 20);
            assert_eq!(loader.group(&tenant).cached().await, tenant as usize);
        }
    }
}

struct PerTenant;

impl GroupFetcher for PerTenant {
    type Group = u32;
    type Key = u64;
    type Value = u64;
    type Error = TestError;

    async fn fetch(
        &self,
        _: &u32,
        keys: &[u64],
        values: &mut Values<u64, u64>,
    ) -> Result<(), TestError> {
        values.extend(keys.iter().map(|&key| (key, key)));
        Ok(())
    }
}
