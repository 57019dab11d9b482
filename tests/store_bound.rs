//! Untrusted keys cannot grow a bounded loader's memory: a million distinct
//! keys through a loader whose `LruStore` holds 10,000 leave the store at
//! 10,000 entries and the process's live allocations where they were.
// Native only: it counts the whole process's allocations across runtime threads, and a
// million loads would take minutes in a wasm test runner.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use anybatch::{BatchFetcher, Fetcher, LruStore, MapStore, Store, Values};
use common::*;

/// Counts the bytes every thread has allocated and not freed, and the peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this file measure the whole process, so they run one at a
/// time.
static ONE_AT_A_TIME: async_lock::Mutex<()> = async_lock::Mutex::new(());

const MIB: usize = 1 << 20;
const CHUNK: u64 = 1_000;

struct Doubles;

impl Fetcher for Doubles {
    type Key = u64;
    type Value = u64;
    type Error = TestError;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), TestError> {
        values.extend(keys.iter().map(|&key| (key, key * 2)));
        Ok(())
    }
}

/// Loads `keys` in chunks of `CHUNK` distinct keys, checking every value.
async fn load_range(loader: &BatchFetcher<Doubles>, keys: std::ops::Range<u64>) {
    let mut start = keys.start;
    while start < keys.end {
        let chunk: Vec<u64> = (start..(start + CHUNK).min(keys.end)).collect();
        let values = loader.load_many(&chunk).await.unwrap();
        assert!(chunk
            .iter()
            .zip(&values)
            .all(|(key, value)| *value == key * 2));
        start += CHUNK;
    }
}

/// Live bytes growth and peak growth (over the live bytes at the start)
/// while `keys` go through `loader`.
async fn growth(loader: &BatchFetcher<Doubles>, keys: std::ops::Range<u64>) -> (usize, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    load_range(loader, keys).await;
    let after = LIVE.load(Ordering::SeqCst);
    let peak = PEAK.load(Ordering::SeqCst);
    (after.saturating_sub(before), peak.saturating_sub(before))
}

fn loader(rt: &Rt, store: impl Store<u64, Option<u64>>) -> BatchFetcher<Doubles> {
    BatchFetcher::builder(Doubles)
        .store(store)
        .max_batch_size(CHUNK as usize)
        .spawner(rt.spawner())
        .build()
        .unwrap()
}

runtime_tests! {
    async fn a_million_keys_stay_within_the_bound(rt: Rt) {
        let _alone = ONE_AT_A_TIME.lock().await;
        let loader = loader(&rt, LruStore::new(10_000));
        // Fill the store (and every buffer on the way) first.
        load_range(&loader, 0..20_000).await;
        assert_eq!(loader.cached().await, 10_000);
        let (grown, peak) = growth(&loader, 20_000..1_000_000).await;
        assert_eq!(loader.cached().await, 10_000);
        println!("{}: 980,000 more keys: live +{grown} B, peak +{peak} B", rt.name());
        assert!(grown < MIB, "live allocations grew by {grown} bytes");
        assert!(peak < 4 * MIB, "allocations peaked {peak} bytes above the start");
    }

    /// A burst of 300,000 keys in one `load_many` leaves nothing behind once
    /// answered: the map of keys in flight gives its memory back.
    async fn a_burst_leaves_no_memory_behind(rt: Rt) {
        let _alone = ONE_AT_A_TIME.lock().await;
        let loader = loader(&rt, LruStore::new(10));
        load_range(&loader, 0..1_000).await;
        let before = LIVE.load(Ordering::SeqCst);
        let keys: Vec<u64> = (1_000..301_000).collect();
        assert_eq!(loader.load_many(&keys).await.unwrap().len(), keys.len());
        drop(keys);
        let grown = LIVE.load(Ordering::SeqCst).saturating_sub(before);
        println!("{}: 300,000 keys in one burst: live +{grown} B", rt.name());
        assert_eq!(loader.cached().await, 10);
        assert!(grown < MIB, "a burst left {grown} bytes behind");
    }

    /// The control: the same keys into the unbounded default store do grow
    /// memory, so the measurement above can see growth.
    async fn the_unbounded_store_grows(rt: Rt) {
        let _alone = ONE_AT_A_TIME.lock().await;
        let loader = loader(&rt, MapStore::new());
        load_range(&loader, 0..20_000).await;
        let (grown, _) = growth(&loader, 20_000..200_000).await;
        assert_eq!(loader.cached().await, 200_000);
        println!("{}: 180,000 keys unbounded: live +{grown} B", rt.name());
        assert!(grown > 2 * MIB, "180,000 stored keys grew live allocations by only {grown} bytes");
    }
}
