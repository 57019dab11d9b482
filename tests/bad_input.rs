//! Bad input: settings out of range or at their extremes, keys whose `Hash`
//! and `Eq` disagree or whose `Hash` panics, values whose `Clone` panics.
//! None may poison the loader: afterwards it keeps serving other keys, no
//! caller hangs, and it still closes and drops its fetcher.
// The native suite; wasm32 runs tests/wasm.rs.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anybatch::{BatchExecutor, BatchFetcher, BuildError, Executor, Fetcher, LoadError, Values};
use common::quiet_panics::{silence_scripted_panics, SCRIPTED};
use common::*;
use futures::FutureExt;

/// A generous bound for one step: a hang detector, not a speed check.
const STEP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

struct Echo;

impl Executor for Echo {
    type Value = u64;
    type Output = u64;
    type Error = std::io::Error;

    async fn execute(&self, values: &[u64]) -> Result<Vec<u64>, Self::Error> {
        Ok(values.to_vec())
    }
}

fn setting_of(error: BuildError) -> &'static str {
    match error {
        BuildError::InvalidSetting { setting, .. } => {
            let message = error.to_string();
            assert!(
                message.contains(setting),
                "{message:?} does not name {setting}"
            );
            setting
        }
        other => panic!("expected an invalid setting, got {other:?}"),
    }
}

/// The executor's builder validates every shared setting as the fetcher's
/// does (tests/errors.rs covers the fetcher's), and each error names the
/// setting in its message too.
#[test]
fn every_executor_setting_out_of_range_is_named() {
    let build =
        |configure: fn(anybatch::ExecutorBuilder<Echo>) -> anybatch::ExecutorBuilder<Echo>| {
            configure(BatchExecutor::builder(Echo).spawner(|_| {}))
                .build()
                .map(drop)
        };
    let rejected = [
        (build(|b| b.max_batch_size(0)), "max_batch_size"),
        (build(|b| b.max_in_flight(0)), "max_in_flight"),
        (
            build(|b| b.max_delay(Duration::from_secs(3601))),
            "max_delay",
        ),
        (build(|b| b.gather_yields(1001)), "gather_yields"),
        (build(|b| b.max_queued(0)), "max_queued"),
        // Above the limit (1,048,576): refused, not a growing queue.
        (build(|b| b.max_queued(usize::MAX)), "max_queued"),
        (build(|b| b.max_queued(1 << 40)), "max_queued"),
    ];
    for (result, setting) in rejected {
        assert_eq!(setting_of(result.unwrap_err()), setting);
    }
    let fetcher_error = BatchFetcher::builder(KeyedFetcher::new().0)
        .spawner(|_| {})
        .max_in_flight(0)
        .build()
        .unwrap_err();
    assert_eq!(setting_of(fetcher_error), "max_in_flight");
}

/// The largest value of each setting builds a loader that works: no
/// overflow (`max_queued`'s largest, 1,048,576, included), and a lead that
/// yields 1,000 times still answers.
#[test]
fn extreme_settings_build_working_loaders() {
    common::run_smol(|rt| async move {
        let (fetcher, _probe) = TestFetcher::new();
        let loader = BatchFetcher::builder(fetcher)
            .max_batch_size(usize::MAX)
            .max_in_flight(usize::MAX)
            .max_delay(Duration::ZERO)
            .gather_yields(1000)
            .spawner(rt.spawner())
            .build()
            .unwrap();
        let values = within(
            STEP,
            "loads with extreme settings",
            loader.load_many(&[1, 2, 3]),
        )
        .await;
        assert_eq!(values, Ok(vec![10, 20, 30]));
        let executor = BatchExecutor::builder(Echo)
            .max_batch_size(usize::MAX)
            .max_in_flight(usize::MAX)
            .max_delay(Duration::from_secs(3600))
            .gather_yields(1000)
            .max_queued(1 << 20)
            .spawner(rt.spawner())
            .build()
            .unwrap();
        executor.submit(5).await.unwrap();
        within(STEP, "close drains with a one-hour delay", executor.close()).await;
        assert_eq!(executor.stats().batches, 1);
    });
}

// ---------------------------------------------------------------------------
// Keys that break the `Hash`/`Eq` contract
// ---------------------------------------------------------------------------

static NOISE: AtomicU64 = AtomicU64::new(0);

/// `Good` keys behave; the others break the contract the identity map
/// relies on.
#[derive(Clone, Debug)]
enum Key {
    Good(u64),
    /// Hashes differently every time it is hashed.
    Shifty(u64),
    /// Never equal to anything, itself included (like `NaN`).
    Lonely(u64),
    /// Panics when hashed.
    Explosive(u64),
}

impl Key {
    fn id(&self) -> u64 {
        match *self {
            Key::Good(id) | Key::Shifty(id) | Key::Lonely(id) | Key::Explosive(id) => id,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Key::Lonely(_), _) | (_, Key::Lonely(_)) => false,
            (Key::Good(a), Key::Good(b)) | (Key::Shifty(a), Key::Shifty(b)) => a == b,
            (Key::Explosive(a), Key::Explosive(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Good(id) | Key::Lonely(id) => id.hash(state),
            Key::Shifty(id) => (id, NOISE.fetch_add(1, Ordering::Relaxed)).hash(state),
            Key::Explosive(id) => panic!("{SCRIPTED}: hashing key {id}"),
        }
    }
}

/// Delivers `id * 10` for every key, and counts the keys it was given.
struct KeyedFetcher {
    fetched: Arc<AtomicU64>,
    _alive: Arc<()>,
}

impl KeyedFetcher {
    fn new() -> (Self, Arc<AtomicU64>, Weak<()>) {
        let fetched = Arc::new(AtomicU64::new(0));
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        let fetcher = Self {
            fetched: fetched.clone(),
            _alive: alive,
        };
        (fetcher, fetched, weak)
    }
}

impl Fetcher for KeyedFetcher {
    type Key = Key;
    type Value = u64;
    type Error = std::io::Error;

    async fn fetch(&self, keys: &[Key], values: &mut Values<Key, u64>) -> Result<(), Self::Error> {
        self.fetched.fetch_add(keys.len() as u64, Ordering::Relaxed);
        values.extend(keys.iter().map(|key| (key.clone(), key.id() * 10)));
        Ok(())
    }
}

/// Loads good keys (each must be exactly `id * 10`) and checks that they
/// are remembered: the health check after each kind of bad key.
async fn good_keys_still_served(loader: &BatchFetcher<KeyedFetcher>, fetched: &AtomicU64) {
    let keys: Vec<Key> = (1000..1010).map(Key::Good).collect();
    let values = within(STEP, "good keys after bad ones", loader.load_many(&keys)).await;
    assert_eq!(
        values,
        Ok((1000..1010).map(|id| id * 10).collect::<Vec<_>>())
    );
    let before = fetched.load(Ordering::Relaxed);
    assert_eq!(loader.load(Key::Good(1003)).await, Ok(10030));
    assert_eq!(
        fetched.load(Ordering::Relaxed),
        before,
        "a good key is remembered"
    );
    loader.clear(&Key::Good(1003)).await;
    assert_eq!(loader.load(Key::Good(1003)).await, Ok(10030));
    assert_eq!(
        fetched.load(Ordering::Relaxed),
        before + 1,
        "clear still works"
    );
}

/// Runs `load` in its own task and returns its answer, or `None` if the
/// task panicked; fails if it hangs.
async fn answer_or_panic<T: Send + 'static>(
    rt: &Rt,
    what: &str,
    load: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let task = rt.spawn(AssertUnwindSafe(load).catch_unwind());
    within(STEP, what, task).await.ok()
}

runtime_tests! {
    /// Keys whose hash changes every time: the map cannot find them again,
    /// but every load is answered (the value or `NotFound`), and good keys
    /// are served as before.
    async fn shifty_hashes_do_not_poison_the_loader(rt: Rt) {
        silence_scripted_panics();
        let (fetcher, fetched, alive) = KeyedFetcher::new();
        let loader = BatchFetcher::builder(fetcher).spawner(rt.spawner()).build().unwrap();
        let keys: Vec<Key> = (0..50).map(Key::Shifty).collect();
        let loads = futures::future::join_all(keys.iter().map(|key| loader.load(key.clone())));
        for (key, answer) in keys.iter().zip(within(STEP, "shifty loads", loads).await) {
            match answer {
                Ok(value) => assert_eq!(value, key.id() * 10),
                Err(LoadError::NotFound) => {}
                other => panic!("{key:?}: {other:?}"),
            }
        }
        let each = within(STEP, "shifty load_each", loader.load_each(&keys[..5])).await;
        assert_eq!(each.len(), 5);
        within(STEP, "clear_all", loader.clear_all()).await;
        good_keys_still_served(&loader, &fetched).await;
        within(STEP, "close", loader.close()).await;
        drop(loader);
        eventually(STEP, "fetcher dropped", || alive.strong_count() == 0).await;
    }

    /// Keys never equal to themselves: each load claims a fresh entry and
    /// its own fetch; answers are `NotFound` (the delivered value cannot
    /// be matched to the key) or the value, never a hang.
    async fn keys_unequal_to_themselves_do_not_poison_the_loader(rt: Rt) {
        let (fetcher, fetched, alive) = KeyedFetcher::new();
        let loader = BatchFetcher::builder(fetcher).spawner(rt.spawner()).build().unwrap();
        for round in 0..3 {
            let keys: Vec<Key> = (0..20).map(Key::Lonely).collect();
            let answers = within(STEP, "lonely keys", loader.load_each(&keys)).await;
            for (key, answer) in keys.iter().zip(answers) {
                assert!(
                    matches!(answer, Err(LoadError::NotFound)) || answer == Ok(key.id() * 10),
                    "round {round}, {key:?}: {answer:?}"
                );
            }
        }
        within(STEP, "prime", loader.prime(Key::Lonely(1), 1)).await;
        within(STEP, "clear", loader.clear(&Key::Lonely(1))).await;
        good_keys_still_served(&loader, &fetched).await;
        within(STEP, "close", loader.close()).await;
        drop(loader);
        eventually(STEP, "fetcher dropped", || alive.strong_count() == 0).await;
    }

    /// A key whose `Hash` panics fails only the caller that used it (its
    /// task panics); the map's lock is released, nothing is queued, and
    /// every other caller is served.
    async fn panicking_hash_fails_only_its_caller(rt: Rt) {
        silence_scripted_panics();
        let (fetcher, fetched, alive) = KeyedFetcher::new();
        let loader = BatchFetcher::builder(fetcher).spawner(rt.spawner()).build().unwrap();
        for op in 0..4 {
            let loader = loader.clone();
            let key = Key::Explosive(op);
            let outcome = answer_or_panic(&rt, "a load of an explosive key", async move {
                match op {
                    0 => drop(loader.load(key).await),
                    1 => drop(loader.load_many(&[Key::Good(1), key]).await),
                    2 => drop(loader.prime(key, 1).await),
                    _ => loader.clear(&key).await,
                }
            })
            .await;
            assert!(outcome.is_none(), "hashing key {op} did not panic");
        }
        good_keys_still_served(&loader, &fetched).await;
        assert_eq!(loader.stats().panicked_batches, 0, "no batch was touched");
        within(STEP, "close", loader.close()).await;
        drop(loader);
        eventually(STEP, "fetcher dropped", || alive.strong_count() == 0).await;
    }
}

// ---------------------------------------------------------------------------
// Values whose `Clone` panics
// ---------------------------------------------------------------------------

/// A value whose `Clone` panics when `fragile`.
#[derive(Debug, PartialEq, Eq)]
struct Fragile {
    id: u64,
    fragile: bool,
}

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if self.fragile {
            panic!("{SCRIPTED}: cloning value {}", self.id);
        }
        Fragile {
            id: self.id,
            fragile: false,
        }
    }
}

/// The key `FRAGILE` is delivered as a value that panics when cloned.
const FRAGILE: u64 = 13;

struct FragileFetcher {
    fetched: Arc<AtomicU64>,
    _alive: Arc<()>,
}

impl Fetcher for FragileFetcher {
    type Key = u64;
    type Value = Fragile;
    type Error = std::io::Error;

    async fn fetch(
        &self,
        keys: &[u64],
        values: &mut Values<u64, Fragile>,
    ) -> Result<(), Self::Error> {
        self.fetched.fetch_add(keys.len() as u64, Ordering::Relaxed);
        let fragile = |id| Fragile {
            id,
            fragile: id == FRAGILE,
        };
        values.extend(keys.iter().map(|&id| (id, fragile(id))));
        Ok(())
    }
}

fn fragile_loader(
    rt: &Rt,
    cache: bool,
) -> (BatchFetcher<FragileFetcher>, Arc<AtomicU64>, Weak<()>) {
    let fetched = Arc::new(AtomicU64::new(0));
    let alive = Arc::new(());
    let weak = Arc::downgrade(&alive);
    let loader = BatchFetcher::builder(FragileFetcher {
        fetched: fetched.clone(),
        _alive: alive,
    })
    .max_batch_size(3)
    .max_delay(FOREVER)
    .cache(cache)
    .spawner(rt.spawner())
    .build()
    .unwrap();
    (loader, fetched, weak)
}

fn plain(id: u64) -> Fragile {
    Fragile { id, fragile: false }
}

/// Checks that a loader that met a fragile value still serves: other keys
/// load (and are remembered when caching is on), it closes, and it drops
/// its fetcher.
async fn fragile_loader_still_serves(
    loader: BatchFetcher<FragileFetcher>,
    fetched: &AtomicU64,
    alive: Weak<()>,
    cache: bool,
) {
    let values = within(
        STEP,
        "loads after a fragile value",
        loader.load_many(&[20, 21, 22]),
    )
    .await;
    assert_eq!(values, Ok(vec![plain(20), plain(21), plain(22)]));
    let before = fetched.load(Ordering::Relaxed);
    assert_eq!(
        within(STEP, "a remembered key", loader.load_many(&[20, 21, 22])).await,
        Ok(vec![plain(20), plain(21), plain(22)])
    );
    let refetched = fetched.load(Ordering::Relaxed) - before;
    assert_eq!(refetched, if cache { 0 } else { 3 });
    within(STEP, "close", loader.close()).await;
    drop(loader);
    eventually(STEP, "fetcher dropped", || alive.strong_count() == 0).await;
}

runtime_tests! {
    /// A fragile value in a batch: its neighbours' callers and its own are
    /// all answered (a value, or a typed error), none hangs, and the
    /// loader keeps serving.
    async fn panicking_clone_in_a_batch_does_not_poison_the_loader(rt: Rt) {
        silence_scripted_panics();
        for cache in [true, false] {
            let (loader, fetched, alive) = fragile_loader(&rt, cache);
            let batch = loader.clone();
            let answers = answer_or_panic(&rt, "a batch holding a fragile value", async move {
                batch.load_each(&[1, FRAGILE, 2]).await
            })
            .await;
            if let Some(answers) = answers {
                for (key, answer) in [1, FRAGILE, 2].into_iter().zip(answers) {
                    match answer {
                        Ok(value) => assert_eq!(value, plain(key)),
                        // The loader is open: a panicking clone is a
                        // panic of this batch, not `Closed`.
                        Err(LoadError::Panicked(message)) => assert!(message.starts_with(SCRIPTED)),
                        other => panic!("key {key} (cache {cache}): {other:?}"),
                    }
                }
            }
            // A second try of the fragile key: answered, or the caller's
            // own task panics; never a hang.
            let again = loader.clone();
            let _ = answer_or_panic(&rt, "the fragile key again", async move {
                again.load_each(&[FRAGILE, 30, 31]).await
            })
            .await;
            fragile_loader_still_serves(loader, &fetched, alive, cache).await;
        }
    }

    /// A fragile value primed into the map: a hit on it panics in the
    /// caller's task only; the map's lock is released and other keys are
    /// served.
    async fn panicking_clone_on_a_hit_fails_only_its_caller(rt: Rt) {
        silence_scripted_panics();
        let (loader, fetched, alive) = fragile_loader(&rt, true);
        assert!(loader.prime(7, Fragile { id: 7, fragile: true }).await);
        for _ in 0..3 {
            let hit = loader.clone();
            let outcome = answer_or_panic(&rt, "a hit on a fragile value", async move {
                hit.load_many(&[7]).await
            })
            .await;
            assert!(outcome.is_none(), "cloning the primed value did not panic");
        }
        loader.clear(&7).await;
        fragile_loader_still_serves(loader, &fetched, alive, true).await;
    }
}
