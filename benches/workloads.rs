//! The library's own cost under typical workloads, each next to a floor: the
//! bare mechanism the workload needs, hand-rolled from std and `futures`,
//! measured in the same run on the same runtime. The backend is instant and in memory
//! (`value = key * 2`), so what is measured is anybatch itself.
//!
//! Every workload runs on smol (a `smol::Executor` driven by two OS threads)
//! and on tokio (a multi-thread runtime with two workers). Each measured body
//! is one task on that runtime, so loads come from inside it; the bench
//! thread spawns the task and waits for its result without sleeping (see
//! [`OnRuntime::run`]), and floors pay the same.
//!
//! Run: `cargo bench --all-features --bench workloads`, or one group with
//! `cargo bench --all-features --bench workloads -- hit_path`. See
//! `benches/README.md` for what each bench measures.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use anybatch::{
    BatchExecutor, BatchFetcher, Executor, Fetcher, LoadError, SmolSpawner, Spawner, Stats,
    TokioSpawner, Values,
};
use divan::counter::ItemsCount;
use divan::Bencher;
use futures::channel::oneshot;
use futures::future::{join_all, FutureExt, Shared};

/// divan's profiler counts the allocations of its own thread; the wrapper
/// also counts every thread's, so the summary printed after divan's table
/// covers the runtime's workers, where the loads run.
#[global_allocator]
static ALLOCATOR: tally::Counting<divan::AllocProfiler> =
    tally::Counting(divan::AllocProfiler::system());

/// Every loader and executor in the suite dispatches as soon as its collector
/// has gathered the queued keys: no timer is ever waited on, so the figures
/// are the library's work, not its configured delay.
const DELAY: Duration = Duration::ZERO;

fn main() {
    divan::main();
    summary::print();
}

// ---------------------------------------------------------------------------
// Runtimes: built once, shared by every bench.

/// A runtime the benches run on.
trait OnRuntime: 'static {
    /// Runs `future` as a task on the runtime and waits for it from the
    /// bench thread.
    ///
    /// The bench thread never sleeps: it polls the task between
    /// `thread::yield_now()` calls. A sleeping thread takes tens of
    /// microseconds to wake on a small VM, which would swamp short bodies
    /// (and land on the subject more than on its faster floor); yielding
    /// hands the core to the runtime's workers whenever they want it.
    fn run<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
        let mut task = pin!(Self::spawn(future));
        let mut context = Context::from_waker(futures::task::noop_waker_ref());
        loop {
            if let Poll::Ready(output) = task.as_mut().poll(&mut context) {
                return output;
            }
            thread::yield_now();
        }
    }

    /// Spawns `future` on the runtime; the returned future is its result.
    fn spawn<T: Send + 'static>(
        future: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static;

    /// The anybatch spawner for this runtime.
    fn spawner() -> impl Spawner;
}

/// A `smol::Executor` run by two OS threads.
struct Smol;

static SMOL: LazyLock<Arc<smol::Executor<'static>>> = LazyLock::new(|| {
    let executor = Arc::new(smol::Executor::new());
    for index in 0..2 {
        let executor = executor.clone();
        thread::Builder::new()
            .name(format!("smol-{index}"))
            .spawn(move || smol::block_on(executor.run(std::future::pending::<()>())))
            .unwrap();
    }
    executor
});

impl OnRuntime for Smol {
    fn spawn<T: Send + 'static>(
        future: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        SMOL.spawn(future)
    }

    fn spawner() -> impl Spawner {
        SmolSpawner::on(SMOL.clone())
    }
}

/// A tokio multi-thread runtime with two workers.
struct Tokio;

static TOKIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tokio-worker")
        .build()
        .unwrap()
});

impl OnRuntime for Tokio {
    fn spawn<T: Send + 'static>(
        future: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        TOKIO.spawn(future).map(Result::unwrap)
    }

    fn spawner() -> impl Spawner {
        TokioSpawner::from_handle(TOKIO.handle().clone())
    }
}

/// Declares a workload's benches once per runtime, as `smol::NAME` and
/// `tokio::NAME`, so a subject and its floors sit together in the output.
/// Each calls the generic function named after `=>` with the bencher and the
/// bench's path (and divan's argument, if it takes one).
macro_rules! on_both_runtimes {
    ($(
        #[bench($($option:tt)*)]
        fn $name:ident $(($arg:ident: $arg_ty:ty))? => $target:ident;
    )+) => {
        mod smol {
            $(
                #[divan::bench($($option)*)]
                fn $name(bencher: divan::Bencher<'_, '_> $(, $arg: $arg_ty)?) {
                    let name = concat!(module_path!(), "::", stringify!($name));
                    super::$target::<crate::Smol>(bencher, name $(, $arg)?)
                }
            )+
        }

        mod tokio {
            $(
                #[divan::bench($($option)*)]
                fn $name(bencher: divan::Bencher<'_, '_> $(, $arg: $arg_ty)?) {
                    let name = concat!(module_path!(), "::", stringify!($name));
                    super::$target::<crate::Tokio>(bencher, name $(, $arg)?)
                }
            )+
        }
    };
}

// ---------------------------------------------------------------------------
// The backends: instant, in memory.

/// `value = key * 2`, counting the keys it was asked for.
struct Doubles {
    fetched: Arc<AtomicU64>,
}

impl Fetcher for Doubles {
    type Key = u64;
    type Value = u64;
    type Error = Infallible;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
        self.fetched.fetch_add(keys.len() as u64, Ordering::Relaxed);
        values.extend(keys.iter().map(|&key| (key, key * 2)));
        Ok(())
    }
}

/// `output = value * 2`.
struct Doubler;

impl Executor for Doubler {
    type Value = u64;
    type Output = u64;
    type Error = Infallible;

    async fn execute(&self, values: &[u64]) -> Result<Vec<u64>, Self::Error> {
        Ok(values.iter().map(|value| value * 2).collect())
    }
}

type Loaded = Result<u64, LoadError<Infallible>>;

/// A loader and the count of keys its fetcher was asked for.
struct Fresh {
    loader: BatchFetcher<Doubles>,
    fetched: Arc<AtomicU64>,
}

impl Fresh {
    /// A loader with `max_delay` [`DELAY`].
    fn new<R: OnRuntime>() -> Self {
        Self::with_delay::<R>(Some(DELAY))
    }

    /// A loader with the default settings (`max_delay` 1 ms).
    fn with_default_delay<R: OnRuntime>() -> Self {
        Self::with_delay::<R>(None)
    }

    fn with_delay<R: OnRuntime>(delay: Option<Duration>) -> Self {
        let fetched = Arc::new(AtomicU64::new(0));
        let builder = BatchFetcher::builder(Doubles {
            fetched: fetched.clone(),
        });
        let builder = match delay {
            Some(delay) => builder.max_delay(delay),
            None => builder,
        };
        let loader = builder.spawner(R::spawner()).build().unwrap();
        Self { loader, fetched }
    }

    fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

fn fresh_executor<R: OnRuntime>() -> BatchExecutor<Doubler> {
    BatchExecutor::builder(Doubler)
        .max_delay(DELAY)
        .spawner(R::spawner())
        .build()
        .unwrap()
}

fn batches(stats: &Stats) -> String {
    format!(
        "{} batches, mean {:.1}, largest {}",
        stats.batches, stats.mean_batch_size, stats.largest_batch
    )
}

fn assert_doubled(keys: impl IntoIterator<Item = u64>, values: &[Loaded]) {
    let mut count = 0;
    for (key, value) in keys.into_iter().zip(values) {
        assert_eq!(*value, Ok(key * 2), "key {key}");
        count += 1;
    }
    assert_eq!(count, values.len());
}

// ---------------------------------------------------------------------------
// Shared floors.

/// `join_all` of `n` futures, each ready at once, each delivering its value
/// through its own oneshot channel.
async fn ready_oneshots(n: u64) -> Vec<u64> {
    join_all((0..n).map(|key| async move {
        let (sender, receiver) = oneshot::channel();
        sender.send(key * 2).unwrap();
        receiver.await.unwrap()
    }))
    .await
}

/// Measures [`ready_oneshots`] of `count` values as `name`: the floor of
/// every burst of one future per request.
fn measure_ready_oneshots<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str, count: u64) {
    measure(
        bencher,
        name,
        count,
        || (),
        |()| R::run(ready_oneshots(count)),
        |values| {
            assert_eq!(values.len() as u64, count);
            String::new()
        },
    );
}

/// What deduplication needs at the least: for every requested key, a map
/// lookup that finds or makes the one shared oneshot of that key; then one
/// send per distinct key, and every request awaits its clone.
struct SharedOneshots {
    waiting: HashMap<u64, Shared<oneshot::Receiver<u64>>>,
    senders: Vec<(u64, oneshot::Sender<u64>)>,
}

impl SharedOneshots {
    fn new() -> Self {
        Self {
            waiting: HashMap::new(),
            senders: Vec::new(),
        }
    }

    fn request(&mut self, key: u64) -> Shared<oneshot::Receiver<u64>> {
        let senders = &mut self.senders;
        self.waiting
            .entry(key)
            .or_insert_with(|| {
                let (sender, receiver) = oneshot::channel();
                senders.push((key, sender));
                receiver.shared()
            })
            .clone()
    }

    fn answer(self) -> usize {
        let distinct = self.senders.len();
        for (key, sender) in self.senders {
            sender.send(key * 2).unwrap();
        }
        distinct
    }
}

// ---------------------------------------------------------------------------
// The measuring loop.

/// How many untimed runs each bench makes first: they check the results and
/// count allocations on every thread (the fewest of them is reported).
const CHECK_RUNS: usize = 3;

/// Runs `body` [`CHECK_RUNS`] times untimed (checking each output with
/// `verify`, which may return a note for the summary), then has divan time
/// it, one input per iteration, counting `items` per iteration.
fn measure<I, O>(
    bencher: Bencher<'_, '_>,
    name: &str,
    items: u64,
    input: impl Fn() -> I + Sync,
    body: impl Fn(I) -> O + Sync,
    verify: impl Fn(&O) -> String,
) {
    let mut fewest: Option<tally::Totals> = None;
    let mut note = String::new();
    for _ in 0..CHECK_RUNS {
        let input = input();
        let before = tally::totals();
        let output = body(input);
        let used = tally::totals().since(before);
        note = verify(&output);
        drop(output);
        if fewest.is_none_or(|fewest| used.allocs < fewest.allocs) {
            fewest = Some(used);
        }
    }
    summary::record(name, fewest.unwrap_or_default(), note);
    bencher
        .counter(ItemsCount::new(items))
        .with_inputs(input)
        .bench_values(body);
}

// ---------------------------------------------------------------------------
// Workloads.

/// Sequential loads of known keys, against a hand-rolled cache.
mod hit_path {
    use super::*;

    const KEYS: u64 = 10_000;
    const SUM: u64 = KEYS * (KEYS - 1);

    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        let Fresh { loader, fetched } = Fresh::new::<R>();
        let warm = loader.clone();
        R::run(async move { warm.load_many(&(0..KEYS).collect::<Vec<_>>()).await }).unwrap();
        assert_eq!(fetched.load(Ordering::Relaxed), KEYS);
        measure(
            bencher,
            name,
            KEYS,
            || (),
            |()| {
                let loader = loader.clone();
                R::run(async move {
                    let mut sum = 0;
                    for key in 0..KEYS {
                        sum += loader.load(black_box(key)).await.unwrap();
                    }
                    sum
                })
            },
            |&sum| {
                assert_eq!(sum, SUM);
                assert_eq!(fetched.load(Ordering::Relaxed), KEYS, "a hit fetched");
                String::new()
            },
        );
    }

    fn floor_std_rwlock<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        let map: HashMap<u64, u64> = (0..KEYS).map(|key| (key, key * 2)).collect();
        let map = Arc::new(std::sync::RwLock::new(map));
        measure(
            bencher,
            name,
            KEYS,
            || (),
            |()| {
                let map = map.clone();
                R::run(async move {
                    let mut sum = 0;
                    for key in 0..KEYS {
                        sum += map.read().unwrap().get(&black_box(key)).copied().unwrap();
                    }
                    sum
                })
            },
            |&sum| {
                assert_eq!(sum, SUM);
                String::new()
            },
        );
    }

    fn floor_async_rwlock<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        let map: HashMap<u64, u64> = (0..KEYS).map(|key| (key, key * 2)).collect();
        let map = Arc::new(async_lock::RwLock::new(map));
        measure(
            bencher,
            name,
            KEYS,
            || (),
            |()| {
                let map = map.clone();
                R::run(async move {
                    let mut sum = 0;
                    for key in 0..KEYS {
                        sum += map.read().await.get(&black_box(key)).copied().unwrap();
                    }
                    sum
                })
            },
            |&sum| {
                assert_eq!(sum, SUM);
                String::new()
            },
        );
    }

    on_both_runtimes! {
        #[bench(sample_count = 500, sample_size = 1)]
        fn anybatch => anybatch;
        #[bench(sample_count = 500, sample_size = 1)]
        fn floor_async_rwlock => floor_async_rwlock;
        #[bench(sample_count = 500, sample_size = 1)]
        fn floor_std_rwlock => floor_std_rwlock;
    }
}

/// The body of a burst of distinct keys, all loaded from one task through
/// `join_all`; returns the loader so it is dropped outside the timed part.
fn burst_join_all<R: OnRuntime>(fresh: Fresh, keys: u64) -> (Fresh, Vec<Loaded>) {
    R::run(async move {
        let values = join_all((0..keys).map(|key| fresh.loader.load(key))).await;
        (fresh, values)
    })
}

fn verify_burst((fresh, values): &(Fresh, Vec<Loaded>)) -> String {
    assert_doubled(0.., values);
    assert_eq!(fresh.fetched(), values.len() as u64);
    batches(&fresh.loader.stats())
}

/// 10,000 distinct keys loaded at once from one task (`join_all`).
mod burst_join_all {
    use super::*;

    const KEYS: u64 = 10_000;

    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        measure(
            bencher,
            name,
            KEYS,
            Fresh::new::<R>,
            |fresh| burst_join_all::<R>(fresh, KEYS),
            verify_burst,
        );
    }

    fn floor_oneshots<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        measure_ready_oneshots::<R>(bencher, name, KEYS);
    }

    on_both_runtimes! {
        #[bench(sample_count = 200, sample_size = 1)]
        fn anybatch => anybatch;
        #[bench(sample_count = 200, sample_size = 1)]
        fn floor_oneshots => floor_oneshots;
    }
}

/// 10,000 distinct keys, one spawned task per load.
mod burst_spawned {
    use super::*;

    const KEYS: u64 = 10_000;

    fn spawned<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str, fresh: fn() -> Fresh) {
        measure(
            bencher,
            name,
            KEYS,
            fresh,
            |fresh| {
                R::run(async move {
                    let tasks: Vec<_> = (0..KEYS)
                        .map(|key| {
                            let loader = fresh.loader.clone();
                            R::spawn(async move { loader.load(key).await })
                        })
                        .collect();
                    let mut values = Vec::with_capacity(tasks.len());
                    for task in tasks {
                        values.push(task.await);
                    }
                    (fresh, values)
                })
            },
            verify_burst,
        );
    }

    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        spawned::<R>(bencher, name, Fresh::new::<R>)
    }

    /// The same with the default `max_delay` (1 ms): keys arriving from
    /// many tasks wait to fill a batch, and the last batch waits up to 1 ms.
    fn anybatch_delay_1ms<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        spawned::<R>(bencher, name, Fresh::with_default_delay::<R>)
    }

    fn floor_tasks<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        measure(
            bencher,
            name,
            KEYS,
            || (),
            |()| {
                R::run(async move {
                    let tasks: Vec<_> = (0..KEYS)
                        .map(|key| R::spawn(async move { key * 2 }))
                        .collect();
                    let mut values = Vec::with_capacity(tasks.len());
                    for task in tasks {
                        values.push(task.await);
                    }
                    values
                })
            },
            |values| {
                assert_eq!(values.len() as u64, KEYS);
                String::new()
            },
        );
    }

    on_both_runtimes! {
        #[bench(sample_count = 200, sample_size = 1)]
        fn anybatch => anybatch;
        #[bench(sample_count = 200, sample_size = 1)]
        fn anybatch_delay_1ms => anybatch_delay_1ms;
        #[bench(sample_count = 200, sample_size = 1)]
        fn floor_tasks => floor_tasks;
    }
}

/// 10,000 concurrent loads (`join_all`) over 100 distinct keys.
mod duplicates {
    use super::*;

    const LOADS: u64 = 10_000;
    const DISTINCT: u64 = 100;

    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        measure(
            bencher,
            name,
            LOADS,
            Fresh::new::<R>,
            |fresh| {
                R::run(async move {
                    let loads = (0..LOADS).map(|i| fresh.loader.load(i % DISTINCT));
                    let values = join_all(loads).await;
                    (fresh, values)
                })
            },
            |(fresh, values)| {
                assert_doubled((0..LOADS).map(|i| i % DISTINCT), values);
                assert_eq!(fresh.fetched(), DISTINCT, "each key fetched exactly once");
                batches(&fresh.loader.stats())
            },
        );
    }

    fn floor_shared_oneshots<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        measure(
            bencher,
            name,
            LOADS,
            || (),
            |()| {
                R::run(async move {
                    let mut shared = SharedOneshots::new();
                    let waits: Vec<_> = (0..LOADS).map(|i| shared.request(i % DISTINCT)).collect();
                    let distinct = shared.answer();
                    (distinct, join_all(waits).await)
                })
            },
            |(distinct, values)| {
                assert_eq!(*distinct as u64, DISTINCT);
                assert_eq!(values.len() as u64, LOADS);
                String::new()
            },
        );
    }

    on_both_runtimes! {
        #[bench(sample_count = 200, sample_size = 1)]
        fn anybatch => anybatch;
        #[bench(sample_count = 200, sample_size = 1)]
        fn floor_shared_oneshots => floor_shared_oneshots;
    }
}

/// 1,000 concurrent `load_many` calls of 50 keys each, drawn from 0..10,000.
mod load_many {
    use super::*;

    const CALLS: usize = 1_000;
    const KEYS_PER_CALL: usize = 50;
    const KEY_SPACE: u64 = 10_000;

    /// The same pseudo-random key lists every run (splitmix64).
    static KEYS: LazyLock<Arc<Vec<Vec<u64>>>> = LazyLock::new(|| {
        let mut state: u64 = 0x5eed;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % KEY_SPACE
        };
        let lists = (0..CALLS)
            .map(|_| (0..KEYS_PER_CALL).map(|_| next()).collect())
            .collect();
        Arc::new(lists)
    });

    fn distinct() -> u64 {
        let mut seen: Vec<u64> = KEYS.iter().flatten().copied().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64
    }

    const ITEMS: u64 = (CALLS * KEYS_PER_CALL) as u64;

    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        let distinct = distinct();
        measure(
            bencher,
            name,
            ITEMS,
            Fresh::new::<R>,
            |fresh| {
                let keys = KEYS.clone();
                R::run(async move {
                    let calls = keys.iter().map(|keys| fresh.loader.load_many(keys));
                    let values = join_all(calls).await;
                    (fresh, values)
                })
            },
            |(fresh, values)| {
                for (keys, values) in KEYS.iter().zip(values) {
                    let doubled: Vec<u64> = keys.iter().map(|key| key * 2).collect();
                    assert_eq!(values.as_ref(), Ok(&doubled));
                }
                assert_eq!(fresh.fetched(), distinct, "each distinct key fetched once");
                format!(
                    "{distinct} distinct keys; {}",
                    batches(&fresh.loader.stats())
                )
            },
        );
    }

    fn floor_shared_oneshots<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        let distinct = distinct();
        measure(
            bencher,
            name,
            ITEMS,
            || (),
            |()| {
                let keys = KEYS.clone();
                R::run(async move {
                    let mut shared = SharedOneshots::new();
                    let calls: Vec<Vec<_>> = keys
                        .iter()
                        .map(|keys| keys.iter().map(|&key| shared.request(key)).collect())
                        .collect();
                    let distinct = shared.answer();
                    let calls = calls.into_iter().map(|waits| async move {
                        let mut values = Vec::with_capacity(waits.len());
                        for wait in waits {
                            values.push(wait.await.unwrap());
                        }
                        values
                    });
                    (distinct, join_all(calls).await)
                })
            },
            |(found, values)| {
                assert_eq!(*found as u64, distinct);
                assert_eq!(values.len(), CALLS);
                String::new()
            },
        );
    }

    on_both_runtimes! {
        #[bench(sample_count = 200, sample_size = 1)]
        fn anybatch => anybatch;
        #[bench(sample_count = 200, sample_size = 1)]
        fn floor_shared_oneshots => floor_shared_oneshots;
    }
}

/// One load of a new key on an idle loader (`max_delay` zero): the time from
/// `load` to its answer when nothing else is going on.
mod latency {
    use super::*;

    const SEQUENTIAL: u64 = 100;

    /// Loads `count` new keys one after another per iteration.
    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str, count: u64) {
        let Fresh { loader, fetched } = Fresh::new::<R>();
        let next = AtomicU64::new(0);
        measure(
            bencher,
            name,
            count,
            || next.fetch_add(count, Ordering::Relaxed),
            |first| {
                let loader = loader.clone();
                R::run(async move {
                    let mut sum = 0;
                    for key in first..first + count {
                        sum += loader.load(key).await.unwrap();
                    }
                    sum
                })
            },
            |_| {
                assert_eq!(
                    fetched.load(Ordering::Relaxed),
                    next.load(Ordering::Relaxed)
                );
                batches(&loader.stats())
            },
        );
    }

    /// Floor: a round trip through a freshly spawned task per value.
    fn floor_spawn<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str, count: u64) {
        let next = AtomicU64::new(0);
        measure(
            bencher,
            name,
            count,
            || next.fetch_add(count, Ordering::Relaxed),
            |first| {
                R::run(async move {
                    let mut sum = 0;
                    for key in first..first + count {
                        sum += R::spawn(async move { key * 2 }).await;
                    }
                    sum
                })
            },
            |_| String::new(),
        );
    }

    fn anybatch_1<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        anybatch::<R>(bencher, name, 1)
    }

    fn anybatch_100<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        anybatch::<R>(bencher, name, SEQUENTIAL)
    }

    fn floor_spawn_1<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        floor_spawn::<R>(bencher, name, 1)
    }

    fn floor_spawn_100<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        floor_spawn::<R>(bencher, name, SEQUENTIAL)
    }

    /// The harness alone: the bench thread spawning a task that returns at
    /// once, and waiting for it. Every `_1` figure includes this.
    fn harness_1<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        let next = AtomicU64::new(0);
        measure(
            bencher,
            name,
            1,
            || next.fetch_add(1, Ordering::Relaxed),
            |key| R::run(async move { key * 2 }),
            |_| String::new(),
        );
    }

    on_both_runtimes! {
        #[bench(sample_count = 5000, sample_size = 1)]
        fn anybatch_1 => anybatch_1;
        #[bench(sample_count = 500, sample_size = 1)]
        fn anybatch_100 => anybatch_100;
        #[bench(sample_count = 5000, sample_size = 1)]
        fn floor_spawn_1 => floor_spawn_1;
        #[bench(sample_count = 500, sample_size = 1)]
        fn floor_spawn_100 => floor_spawn_100;
        #[bench(sample_count = 5000, sample_size = 1)]
        fn harness_1 => harness_1;
    }
}

/// 10,000 concurrent `execute(v)` calls from one task (`join_all`).
mod executor {
    use super::*;

    const VALUES: u64 = 10_000;

    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        measure(
            bencher,
            name,
            VALUES,
            fresh_executor::<R>,
            |executor| {
                R::run(async move {
                    let outputs = join_all((0..VALUES).map(|value| executor.execute(value))).await;
                    (executor, outputs)
                })
            },
            |(executor, outputs)| {
                for (value, output) in (0..VALUES).zip(outputs) {
                    assert_eq!(*output, Ok(value * 2));
                }
                batches(&executor.stats())
            },
        );
    }

    fn floor_oneshots<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str) {
        measure_ready_oneshots::<R>(bencher, name, VALUES);
    }

    on_both_runtimes! {
        #[bench(sample_count = 200, sample_size = 1)]
        fn anybatch => anybatch;
        #[bench(sample_count = 200, sample_size = 1)]
        fn floor_oneshots => floor_oneshots;
    }
}

/// The `join_all` burst of distinct keys at 1k, 10k and 100k keys.
mod scaling {
    use super::*;

    fn anybatch<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str, keys: u64) {
        burst_of::<R>(bencher, name, keys, Fresh::new::<R>);
    }

    /// The same with the default `max_delay` (1 ms): batches fill, and the
    /// load completing each one fetches it.
    fn anybatch_delay_1ms<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str, keys: u64) {
        burst_of::<R>(bencher, name, keys, Fresh::with_default_delay::<R>);
    }

    fn burst_of<R: OnRuntime>(
        bencher: Bencher<'_, '_>,
        name: &str,
        keys: u64,
        fresh: impl Fn() -> Fresh + Sync,
    ) {
        measure(
            bencher,
            &format!("{name}::{keys}"),
            keys,
            fresh,
            |fresh| burst_join_all::<R>(fresh, keys),
            verify_burst,
        );
    }

    fn floor_oneshots<R: OnRuntime>(bencher: Bencher<'_, '_>, name: &str, keys: u64) {
        measure_ready_oneshots::<R>(bencher, &format!("{name}::{keys}"), keys);
    }

    on_both_runtimes! {
        #[bench(args = [1_000, 10_000, 100_000], sample_count = 30, sample_size = 1)]
        fn anybatch(keys: u64) => anybatch;
        #[bench(args = [1_000, 10_000, 100_000], sample_count = 30, sample_size = 1)]
        fn anybatch_delay_1ms(keys: u64) => anybatch_delay_1ms;
        #[bench(args = [1_000, 10_000, 100_000], sample_count = 30, sample_size = 1)]
        fn floor_oneshots(keys: u64) => floor_oneshots;
    }
}

// ---------------------------------------------------------------------------
// Allocation counting on every thread.

mod tally {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

    /// Wraps an allocator, counting allocations per thread in padded slots
    /// (no contention between threads) that [`totals`] adds up.
    pub(crate) struct Counting<A>(pub(crate) A);

    #[repr(align(128))]
    struct Slot {
        allocs: AtomicU64,
        reallocs: AtomicU64,
        bytes: AtomicU64,
    }

    const SLOTS: usize = 32;

    static SLOT_TALLIES: [Slot; SLOTS] = [const {
        Slot {
            allocs: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }; SLOTS];

    static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    fn slot() -> &'static Slot {
        let index = MY_SLOT
            .try_with(|mine| {
                if mine.get() == usize::MAX {
                    mine.set(NEXT_SLOT.fetch_add(1, Relaxed) % SLOTS);
                }
                mine.get()
            })
            .unwrap_or(0);
        &SLOT_TALLIES[index]
    }

    fn count_alloc(size: usize) {
        let slot = slot();
        slot.allocs.fetch_add(1, Relaxed);
        slot.bytes.fetch_add(size as u64, Relaxed);
    }

    // SAFETY: every call is forwarded unchanged to the wrapped allocator;
    // counting allocates nothing.
    unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count_alloc(layout.size());
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
            unsafe { self.0.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count_alloc(layout.size());
            // SAFETY: as for `alloc`.
            unsafe { self.0.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let slot = slot();
            slot.reallocs.fetch_add(1, Relaxed);
            let grown = new_size.saturating_sub(layout.size());
            slot.bytes.fetch_add(grown as u64, Relaxed);
            // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
            unsafe { self.0.dealloc(ptr, layout) }
        }
    }

    /// Allocation calls and bytes requested (realloc: bytes grown), summed
    /// over every thread.
    #[derive(Clone, Copy, Debug, Default)]
    pub(crate) struct Totals {
        pub(crate) allocs: u64,
        pub(crate) reallocs: u64,
        pub(crate) bytes: u64,
    }

    impl Totals {
        pub(crate) fn since(self, earlier: Self) -> Self {
            Self {
                allocs: self.allocs.wrapping_sub(earlier.allocs),
                reallocs: self.reallocs.wrapping_sub(earlier.reallocs),
                bytes: self.bytes.wrapping_sub(earlier.bytes),
            }
        }
    }

    pub(crate) fn totals() -> Totals {
        let mut totals = Totals::default();
        for slot in &SLOT_TALLIES {
            totals.allocs = totals.allocs.wrapping_add(slot.allocs.load(Relaxed));
            totals.reallocs = totals.reallocs.wrapping_add(slot.reallocs.load(Relaxed));
            totals.bytes = totals.bytes.wrapping_add(slot.bytes.load(Relaxed));
        }
        totals
    }
}

// ---------------------------------------------------------------------------
// The summary printed after divan's table.

mod summary {
    use super::*;

    struct Line {
        used: tally::Totals,
        note: String,
    }

    static LINES: Mutex<BTreeMap<String, Line>> = Mutex::new(BTreeMap::new());

    pub(crate) fn record(name: &str, used: tally::Totals, note: String) {
        let name = name.split_once("::").map_or(name, |(_, rest)| rest);
        LINES
            .lock()
            .unwrap()
            .insert(name.to_owned(), Line { used, note });
    }

    pub(crate) fn print() {
        let lines = LINES.lock().unwrap();
        if lines.is_empty() {
            return;
        }
        let width = lines.keys().map(String::len).max().unwrap_or(0);
        println!();
        println!("Per iteration on every thread (divan's alloc rows count only its own");
        println!("thread), fewest of {CHECK_RUNS} untimed runs; batches formed in the last:");
        println!(
            "{:width$}  {:>9}  {:>8}  {:>11}  notes",
            "bench", "allocs", "reallocs", "bytes"
        );
        for (name, Line { used, note }) in lines.iter() {
            println!(
                "{name:width$}  {:>9}  {:>8}  {:>11}  {note}",
                used.allocs, used.reallocs, used.bytes
            );
        }
    }
}
