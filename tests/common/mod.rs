//! Shared helpers for the integration tests: a harness that runs one test body
//! on smol, tokio and async-std (and on wasm32, on the JavaScript event loop),
//! and a controllable test fetcher.

// Every test file includes this module and uses a different part of it.
#![allow(dead_code, unused_macros, unused_imports)]

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;
#[cfg(target_arch = "wasm32")]
pub use wasm::*;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use anybatch::{BatchFetcher, BoxFuture, Fetcher, FetcherBuilder, MaybeSend, Spawner, Values};
use async_lock::{RwLock, RwLockWriteGuardArc};
use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::FutureExt;
use futures_timer::Delay;

pub mod quiet_panics;

/// How long a whole test body may run before it is reported as hung. A hang
/// detector, not a speed assertion.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

/// How long a negative check ("this did not happen") watches.
pub const QUIET: Duration = Duration::from_millis(100);

/// A batching window that never expires during a test.
pub const FOREVER: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// The runtime harness
// ---------------------------------------------------------------------------

/// Runs each `async fn name(rt: Rt) { .. }` as three tests, `name::smol`,
/// `name::tokio` and `name::async_std`, so a failure names its runtime; on
/// wasm32 as one, `name::wasm`, a `wasm_bindgen_test` (a plain `#[test]` is
/// skipped there without a word).
///
/// Attributes written before `async fn` go on each test and on the body, so
/// `#[cfg(not(target_arch = "wasm32"))]` (with a comment saying why) keeps a
/// body native-only; `.ci/wasm.sh` reads that attribute to know which tests
/// wasm32 is expected to skip.
macro_rules! runtime_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($rt:ident : Rt) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                $(#[$meta])*
                async fn body($rt: $crate::common::Rt) $body

                $(#[$meta])*
                #[cfg(not(target_arch = "wasm32"))]
                #[test]
                fn smol() {
                    $crate::common::run_smol(body);
                }

                $(#[$meta])*
                #[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
                #[test]
                fn tokio() {
                    $crate::common::run_tokio(body);
                }

                $(#[$meta])*
                #[cfg(all(feature = "async-std", not(target_arch = "wasm32")))]
                #[test]
                fn async_std() {
                    $crate::common::run_async_std(body);
                }

                $(#[$meta])*
                #[cfg(target_arch = "wasm32")]
                #[wasm_bindgen_test::wasm_bindgen_test]
                async fn wasm() {
                    $crate::common::run_wasm(body).await;
                }
            }
        )*
    };
}
pub(crate) use runtime_tests;

/// The runtime a test body runs on. It is the spawner handed to loaders (it
/// delegates to the crate's own adapter for that runtime) and spawns the
/// test's own tasks.
#[derive(Clone, Debug)]
pub enum Rt {
    #[cfg(not(target_arch = "wasm32"))]
    Smol(anybatch::SmolSpawner),
    #[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
    Tokio(anybatch::TokioSpawner),
    #[cfg(all(feature = "async-std", not(target_arch = "wasm32")))]
    AsyncStd(anybatch::AsyncStdSpawner),
    /// The JavaScript event loop, the one thread of wasm32.
    #[cfg(target_arch = "wasm32")]
    Wasm(anybatch::WasmSpawner),
}

impl Spawner for Rt {
    fn spawn(&self, future: BoxFuture) {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Rt::Smol(spawner) => spawner.spawn(future),
            #[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
            Rt::Tokio(spawner) => spawner.spawn(future),
            #[cfg(all(feature = "async-std", not(target_arch = "wasm32")))]
            Rt::AsyncStd(spawner) => spawner.spawn(future),
            #[cfg(target_arch = "wasm32")]
            Rt::Wasm(spawner) => spawner.spawn(future),
        }
    }
}

impl Rt {
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Rt::Smol(_) => "smol",
            #[cfg(all(feature = "tokio", not(target_arch = "wasm32")))]
            Rt::Tokio(_) => "tokio",
            #[cfg(all(feature = "async-std", not(target_arch = "wasm32")))]
            Rt::AsyncStd(_) => "async-std",
            #[cfg(target_arch = "wasm32")]
            Rt::Wasm(_) => "wasm",
        }
    }

    /// Whether `thread` (a thread's name) is one of this runtime's workers:
    /// smol's are the harness's own executor threads, tokio's and
    /// async-std's carry those runtimes' default names.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn is_worker(&self, thread: &str) -> bool {
        match self {
            Rt::Smol(_) => thread.starts_with("smol-test-"),
            #[cfg(feature = "tokio")]
            Rt::Tokio(_) => thread == "tokio-rt-worker",
            #[cfg(feature = "async-std")]
            Rt::AsyncStd(_) => {
                let name = std::env::var("ASYNC_STD_THREAD_NAME");
                thread == name.as_deref().unwrap_or("async-std/runtime")
            }
        }
    }

    /// The spawner to give a loader's builder.
    pub fn spawner(&self) -> Rt {
        self.clone()
    }

    /// Spawns `future` as a task of this runtime (through the crate's spawner
    /// adapter); the handle yields its output or resumes its panic. (`Send`
    /// on native targets only: wasm32 has one thread and `!Send` loaders.)
    pub fn spawn<T, Fut>(&self, future: Fut) -> JoinHandle<T>
    where
        T: MaybeSend + 'static,
        Fut: Future<Output = T> + MaybeSend + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        Spawner::spawn(
            self,
            Box::pin(async move {
                let outcome = AssertUnwindSafe(future).catch_unwind().await;
                let _ = sender.send(outcome);
            }),
        );
        JoinHandle { receiver }
    }

    /// Spawns `future` and returns once the task has polled it once: for a
    /// load, by then the key is looked up and joined or queued (as long as no
    /// other task holds the loader's map lock at that moment, which each test
    /// using this arranges).
    pub async fn spawn_polled<T, Fut>(&self, future: Fut) -> JoinHandle<T>
    where
        T: MaybeSend + 'static,
        Fut: Future<Output = T> + MaybeSend + 'static,
    {
        let (polled, was_polled) = oneshot::channel();
        let handle = self.spawn(async move {
            let mut future = pin!(future);
            let first = futures::poll!(future.as_mut());
            let _ = polled.send(());
            match first {
                Poll::Ready(output) => output,
                Poll::Pending => future.await,
            }
        });
        was_polled.await.expect("spawned task was dropped");
        handle
    }
}

/// The output of a task spawned with [`Rt::spawn`].
#[must_use]
pub struct JoinHandle<T> {
    receiver: oneshot::Receiver<std::thread::Result<T>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.receiver.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(output))) => Poll::Ready(output),
            Poll::Ready(Ok(Err(panic))) => std::panic::resume_unwind(panic),
            Poll::Ready(Err(oneshot::Canceled)) => panic!("a spawned test task was dropped"),
        }
    }
}

/// Awaits every handle, in order.
pub async fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    futures::future::join_all(handles).await
}

/// Counts a loader's tasks that are still alive: wrap each task its
/// spawner is given with [`track`](Self::track).
#[derive(Clone, Debug, Default)]
pub struct LiveTasks(Arc<AtomicUsize>);

/// Counts its task as alive until the runtime drops it.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LiveTasks {
    /// `task`, counted as alive from now until it is dropped (finished or
    /// not).
    pub fn track(&self, task: BoxFuture) -> BoxFuture {
        self.0.fetch_add(1, Ordering::SeqCst);
        let alive = Alive(self.0.clone());
        Box::pin(async move {
            let _alive = alive;
            task.await
        })
    }

    /// How many tracked tasks are alive.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A spawner that keeps every task it is given and never runs one: a loader
/// built on it has a collector that never runs, so only the requests
/// themselves can run its batches.
#[derive(Clone, Default)]
pub struct HeldSpawner(Arc<Mutex<Vec<BoxFuture>>>);

impl HeldSpawner {
    /// How many tasks it was given so far.
    pub fn held(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Spawner for HeldSpawner {
    fn spawn(&self, future: BoxFuture) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(future);
    }
}

// ---------------------------------------------------------------------------
// Waiting helpers
// ---------------------------------------------------------------------------

/// Awaits `future`, failing with `what` if it does not finish within `limit`
/// (a hang detector for one step: pass a generous limit).
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match select(pin!(future), Delay::new(limit)).await {
        Either::Left((output, _)) => output,
        Either::Right(_) => panic!("hung: {what} (no end after {limit:?})"),
    }
}

/// Polls `future` for [`QUIET`] and fails with `what` if it finishes: for
/// things a correct loader can never do at this point.
pub async fn assert_pending<F: Future + Unpin>(future: &mut F, what: &str) {
    if let Either::Left(_) = select(future, Delay::new(QUIET)).await {
        panic!("{what}");
    }
}

/// Sleeps for `duration` on a timer that works on every runtime.
pub async fn sleep(duration: Duration) {
    Delay::new(duration).await;
}

/// Waits until `condition` holds, checking every 10 ms, failing with `what`
/// after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    within(limit, what, async {
        while !condition() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// The test fetcher
// ---------------------------------------------------------------------------

/// Why a test fetch failed a whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestError {
    /// The key configured to fail its batch.
    pub key: u64,
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend refused the batch holding key {}", self.key)
    }
}

impl std::error::Error for TestError {}

/// The value the test fetcher delivers for `key`.
pub fn value_of(key: u64) -> u64 {
    key * 10
}

/// What the test fetcher does with one key.
#[derive(Debug, Default, Clone)]
struct Behaviour {
    /// Never delivered: the key is not found.
    omit: bool,
    /// Fails the whole batch this many more times.
    fail: usize,
    /// Panics in this many more batches.
    panic: usize,
    /// Delivered twice: first `key * 10`, then `key * 10 + 1`.
    twice: bool,
    /// Also delivers these keys, which were not asked for.
    extra: Vec<u64>,
}

#[derive(Default)]
struct Record {
    /// Keys of every batch, in the order the batches started.
    batches: Vec<Vec<u64>>,
    /// The thread each batch started on, in the same order (native targets:
    /// wasm32 has one thread).
    threads: Vec<String>,
    behaviours: HashMap<u64, Behaviour>,
}

struct State {
    record: Mutex<Record>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Held for writing by the test while the gate is closed.
    gate: Arc<RwLock<()>>,
    started: async_channel::Sender<Vec<u64>>,
}

impl State {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Fetcher`] of `u64 -> u64` (`key * 10`) whose every move the test can
/// watch and steer through its [`Probe`].
pub struct TestFetcher {
    state: Arc<State>,
    /// Lets the probe see when the fetcher has been dropped.
    _alive: Arc<()>,
}

/// The test's side of a [`TestFetcher`].
pub struct Probe {
    state: Arc<State>,
    alive: Weak<()>,
    started: async_channel::Receiver<Vec<u64>>,
}

/// Closes the gate while held: every fetch waits at its start.
pub type ClosedGate = RwLockWriteGuardArc<()>;

/// Counts a fetch as running while alive, even through a panic.
struct Running<'a>(&'a State);

impl<'a> Running<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.running.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_running.fetch_max(now, Ordering::SeqCst);
        Running(state)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TestFetcher {
    pub fn new() -> (TestFetcher, Probe) {
        let (started, started_rx) = async_channel::unbounded();
        let state = Arc::new(State {
            record: Mutex::default(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            gate: Arc::new(RwLock::new(())),
            started,
        });
        let alive = Arc::new(());
        let probe = Probe {
            state: state.clone(),
            alive: Arc::downgrade(&alive),
            started: started_rx,
        };
        (
            TestFetcher {
                state,
                _alive: alive,
            },
            probe,
        )
    }
}

impl Fetcher for TestFetcher {
    type Key = u64;
    type Value = u64;
    type Error = TestError;

    async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), TestError> {
        let state = &*self.state;
        let _running = Running::enter(state);
        {
            let mut record = state.record();
            record.batches.push(keys.to_vec());
            #[cfg(not(target_arch = "wasm32"))]
            record.threads.push(
                std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_owned(),
            );
        }
        let _ = state.started.try_send(keys.to_vec());
        drop(state.gate.read().await);

        // Decide under the lock, act after releasing it.
        let mut panic_on = None;
        let mut fail_on = None;
        let mut delivered = Vec::new();
        {
            let mut record = state.record();
            for &key in keys {
                let behaviour = record.behaviours.entry(key).or_default();
                if behaviour.panic > 0 && panic_on.is_none() {
                    behaviour.panic -= 1;
                    panic_on = Some(key);
                } else if behaviour.fail > 0 && fail_on.is_none() && panic_on.is_none() {
                    behaviour.fail -= 1;
                    fail_on = Some(key);
                }
                if behaviour.omit {
                    continue;
                }
                delivered.push((key, value_of(key)));
                if behaviour.twice {
                    delivered.push((key, value_of(key) + 1));
                }
                delivered.extend(
                    behaviour
                        .extra
                        .iter()
                        .map(|&extra| (extra, value_of(extra))),
                );
            }
        }
        if let Some(key) = panic_on {
            panic!("test fetcher panicked on key {key}");
        }
        if let Some(key) = fail_on {
            return Err(TestError { key });
        }
        values.extend(delivered);
        Ok(())
    }
}

impl Probe {
    fn behaviour(&self, key: u64, change: impl FnOnce(&mut Behaviour)) {
        change(self.state.record().behaviours.entry(key).or_default());
    }

    /// `key` is never delivered (the loader answers `NotFound`).
    pub fn omit(&self, key: u64) {
        self.behaviour(key, |b| b.omit = true);
    }

    /// The next `times` batches holding `key` fail as a whole.
    pub fn fail(&self, key: u64, times: usize) {
        self.behaviour(key, |b| b.fail = times);
    }

    /// The next `times` batches holding `key` panic.
    pub fn panic(&self, key: u64, times: usize) {
        self.behaviour(key, |b| b.panic = times);
    }

    /// `key` is delivered twice: `key * 10`, then `key * 10 + 1`.
    pub fn deliver_twice(&self, key: u64) {
        self.behaviour(key, |b| b.twice = true);
    }

    /// A batch holding `key` also delivers `extra`, unasked.
    pub fn deliver_extra(&self, key: u64, extra: u64) {
        self.behaviour(key, |b| b.extra.push(extra));
    }

    /// Closes the gate until the returned guard is dropped. Waits for fetches
    /// already past the gate.
    pub async fn close_gate(&self) -> ClosedGate {
        self.state.gate.write_arc().await
    }

    /// The keys of every batch so far, in start order.
    pub fn batches(&self) -> Vec<Vec<u64>> {
        self.state.record().batches.clone()
    }

    /// The name of the thread each batch started on, in start order.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn threads(&self) -> Vec<String> {
        self.state.record().threads.clone()
    }

    pub fn batch_count(&self) -> usize {
        self.state.record().batches.len()
    }

    /// How many batches held `key`.
    pub fn times_fetched(&self, key: u64) -> usize {
        self.state
            .record()
            .batches
            .iter()
            .map(|batch| batch.iter().filter(|&&k| k == key).count())
            .sum()
    }

    /// The most fetches that ran at once.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_running.load(Ordering::SeqCst)
    }

    /// Waits for the next batch to start (in start order) and returns its keys.
    pub async fn started(&self) -> Vec<u64> {
        within(
            Duration::from_secs(10),
            "waiting for a batch to start",
            async {
                self.started
                    .recv()
                    .await
                    .expect("the fetcher's notifications are open while the probe lives")
            },
        )
        .await
    }

    /// Drops the notifications of batches that already started, so that
    /// [`started`](Self::started) waits for the next batch to start.
    pub fn forget_started(&self) {
        while self.started.try_recv().is_ok() {}
    }

    /// Fails if another batch starts within [`QUIET`].
    pub async fn assert_no_start(&self, what: &str) {
        let mut next = pin!(self.started.recv());
        assert_pending(&mut next, what).await;
    }

    /// True while the fetcher has not been dropped.
    pub fn fetcher_alive(&self) -> bool {
        self.alive.strong_count() > 0
    }

    /// Waits (up to 10 s) until the fetcher has been dropped.
    pub async fn wait_fetcher_dropped(&self, what: &str) {
        eventually(Duration::from_secs(10), what, || !self.fetcher_alive()).await
    }
}

/// A builder over a fresh [`TestFetcher`], on `rt`'s spawner.
pub fn builder(rt: &Rt) -> (FetcherBuilder<TestFetcher>, Probe) {
    let (fetcher, probe) = TestFetcher::new();
    (BatchFetcher::builder(fetcher).spawner(rt.spawner()), probe)
}

/// The loader type every test uses.
pub type Loader = BatchFetcher<TestFetcher>;

/// The error type every test sees.
pub type Error = anybatch::LoadError<TestError>;
