//! `BatchExecutor`: batching of writes, exactly-once execution, per-value
//! results, fire-and-forget submission with back-pressure, failure reports,
//! graceful and forced shutdown, on every runtime.

mod common;

// On wasm32 a plain `#[test]` is skipped without a word.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anybatch::{
    BatchExecutor, BatchFailure, BuildError, ExecuteError, Executor, ExecutorBuilder, Stats,
    SubmitError,
};
use async_lock::{RwLock, RwLockWriteGuardArc};
use common::*;

/// Doubles each value; a value in `fail`, `panic` or `short` makes its whole
/// batch fail, panic or return one output too few.
struct Doubler {
    state: Arc<Shared>,
    _alive: Arc<()>,
}

#[derive(Default)]
struct Shared {
    batches: Mutex<Vec<Vec<u64>>>,
    fail: Mutex<HashSet<u64>>,
    panic: Mutex<HashSet<u64>>,
    short: Mutex<HashSet<u64>>,
    gate: Arc<RwLock<()>>,
    started: Mutex<Option<async_channel::Sender<Vec<u64>>>>,
}

struct Probe {
    state: Arc<Shared>,
    started: async_channel::Receiver<Vec<u64>>,
    alive: Weak<()>,
}

impl Executor for Doubler {
    type Value = u64;
    type Output = u64;
    type Error = TestError;

    async fn execute(&self, values: &[u64]) -> Result<Vec<u64>, TestError> {
        let state = &self.state;
        state.batches.lock().unwrap().push(values.to_vec());
        let started = state.started.lock().unwrap().clone();
        if let Some(started) = started {
            let _ = started.try_send(values.to_vec());
        }
        drop(state.gate.read().await);
        if let Some(&key) = values
            .iter()
            .find(|v| state.panic.lock().unwrap().contains(v))
        {
            panic!("executor exploded on {key}");
        }
        if let Some(&key) = values
            .iter()
            .find(|v| state.fail.lock().unwrap().contains(v))
        {
            return Err(TestError { key });
        }
        let mut outputs: Vec<u64> = values.iter().map(|v| v * 2).collect();
        if values
            .iter()
            .any(|v| state.short.lock().unwrap().contains(v))
        {
            outputs.pop();
        }
        Ok(outputs)
    }
}

impl Probe {
    fn executed(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.state.batches.lock().unwrap().concat();
        all.sort_unstable();
        all
    }

    fn batch_sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self
            .state
            .batches
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        sizes.sort_unstable();
        sizes
    }

    async fn close_gate(&self) -> RwLockWriteGuardArc<()> {
        self.state.gate.write_arc().await
    }

    async fn started(&self) -> Vec<u64> {
        within(
            Duration::from_secs(10),
            "a batch to start",
            self.started.recv(),
        )
        .await
        .expect("executor alive")
    }
}

fn doubler(rt: &Rt) -> (ExecutorBuilder<Doubler>, Probe) {
    let state = Arc::new(Shared::default());
    let (sender, started) = async_channel::unbounded();
    *state.started.lock().unwrap() = Some(sender);
    let alive = Arc::new(());
    let probe = Probe {
        state: state.clone(),
        started,
        alive: Arc::downgrade(&alive),
    };
    let builder = BatchExecutor::builder(Doubler {
        state,
        _alive: alive,
    })
    .spawner(rt.spawner());
    (builder, probe)
}

/// An executor of batches of one, with room for `max_queued` queued values
/// and its only in-flight slot taken by value 0, held behind the closed gate
/// (returned).
async fn executor_with_its_slot_taken(
    rt: &Rt,
    max_queued: usize,
) -> (BatchExecutor<Doubler>, Probe, RwLockWriteGuardArc<()>) {
    let (builder, probe) = doubler(rt);
    let executor = builder
        .max_batch_size(1)
        .max_in_flight(1)
        .max_queued(max_queued)
        .max_delay(Duration::ZERO)
        .build()
        .unwrap();
    let gate = probe.close_gate().await;
    executor.submit(0).await.unwrap();
    assert_eq!(probe.started().await, [0]);
    (executor, probe, gate)
}

/// Submits 1, 2, ... to an executor set up by [`executor_with_its_slot_taken`]
/// until its queue is full: `room` values, each accepted at once. While the
/// only slot is busy nothing leaves the queue (the collector takes a batch
/// only once it has a slot), so the queue stays full for as long as the gate
/// stays closed. Returns the accepted values.
fn fill_queue(executor: &BatchExecutor<Doubler>, room: usize) -> Vec<u64> {
    let values: Vec<u64> = (1..=room as u64).collect();
    for &value in &values {
        if let Err(refused) = executor.try_submit(value) {
            panic!("value {value} of {room}: {refused:?}");
        }
    }
    values
}

/// An executor with room for one queued value, its only in-flight slot
/// held by a value behind the closed gate (returned), its queue full, and
/// an `execute(1_000)` waiting for room.
async fn execute_waiting_for_room(
    rt: &Rt,
) -> (
    BatchExecutor<Doubler>,
    Probe,
    RwLockWriteGuardArc<()>,
    Pin<Box<JoinHandle<Result<u64, ExecuteError<TestError>>>>>,
) {
    let (executor, probe, gate) = executor_with_its_slot_taken(rt, 1).await;
    fill_queue(&executor, 1);
    let executor2 = executor.clone();
    let mut waiting = Box::pin(rt.spawn(async move { executor2.execute(1_000).await }));
    assert_pending(
        &mut waiting,
        "execute waits for room while the queue is full",
    )
    .await;
    (executor, probe, gate, waiting)
}

/// Every failure `on_error` received.
type Failures = Arc<Mutex<Vec<BatchFailure<u64, TestError>>>>;

fn collecting_failures(builder: ExecutorBuilder<Doubler>) -> (ExecutorBuilder<Doubler>, Failures) {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let builder = builder.on_error(move |failure| sink.lock().unwrap().push(failure));
    (builder, failures)
}

/// An executor with batches of 10 and the given delay whose collector never
/// runs (it is held by a [`HeldSpawner`]): only the callers can run its
/// batches.
fn executor_without_collector(
    rt: &Rt,
    max_delay: Duration,
) -> (BatchExecutor<Doubler>, Probe, HeldSpawner) {
    let (builder, probe) = doubler(rt);
    let spawner = HeldSpawner::default();
    let executor = builder
        .spawner(spawner.clone())
        .max_batch_size(10)
        .max_delay(max_delay)
        .build()
        .unwrap();
    (executor, probe, spawner)
}

runtime_tests! {
    /// Concurrent `execute` calls form one batch, and each caller gets the
    /// output at its own position.
    async fn concurrent_executes_share_one_batch(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_batch_size(10).max_delay(FOREVER).build().unwrap();
        let outputs = futures::future::join_all((1..=10).map(|v| executor.execute(v))).await;
        assert_eq!(outputs, (1..=10).map(|v| Ok(v * 2)).collect::<Vec<_>>());
        assert_eq!(probe.batch_sizes(), [10]);
    }

    /// The `execute` that completes a batch runs it on its own task: with a
    /// collector that never runs (held by a `HeldSpawner`), three full
    /// batches from one `join_all` still run, and no task besides the
    /// collector is spawned.
    async fn a_full_batch_is_run_by_the_execute_that_completed_it(rt: Rt) {
        let (executor, probe, spawner) = executor_without_collector(&rt, FOREVER);
        let executes = futures::future::join_all((0..30).map(|v| executor.execute(v)));
        let outputs = within(Duration::from_secs(10), "the executes", executes).await;
        assert_eq!(outputs, (0..30).map(|v| Ok(v * 2)).collect::<Vec<_>>());
        assert_eq!(probe.batch_sizes(), [10, 10, 10]);
        assert_eq!(spawner.held(), 1, "only the collector was spawned");
    }

    /// `submit` does not run the batch it completes: it returns while that
    /// batch waits at the closed gate, on a task of its own.
    async fn submit_spawns_the_batch_it_completes(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_batch_size(3).max_delay(FOREVER).build().unwrap();
        let gate = probe.close_gate().await;
        within(Duration::from_secs(10), "submit to return", async {
            for value in 0..3 {
                executor.submit(value).await.unwrap();
            }
        })
        .await;
        assert_eq!(probe.started().await, [0, 1, 2]);
        drop(gate);
        executor.close().await;
        assert_eq!(probe.executed(), [0, 1, 2]);
    }

    /// `execute_many` on a bounded queue runs the batches it completed
    /// before it waits for room: those batches hold the in-flight slots the
    /// collector needs to free room, so waiting first would hang. With zero
    /// delay the call also leads, holding the one slot, and runs its batch
    /// before it waits.
    async fn execute_many_on_a_bounded_queue_finishes(rt: Rt) {
        for max_delay in [FOREVER, Duration::ZERO] {
            let (builder, probe) = doubler(&rt);
            let executor = builder
                .max_batch_size(2)
                .max_in_flight(1)
                .max_queued(2)
                .max_delay(max_delay)
                .build()
                .unwrap();
            let outputs = within(
                Duration::from_secs(10),
                "execute_many",
                executor.execute_many((0..10).collect()),
            )
            .await;
            assert_eq!(outputs, (0..10).map(|v| Ok(v * 2)).collect::<Vec<_>>());
            assert_eq!(probe.executed(), (0..10).collect::<Vec<_>>());
        }
    }

    /// With zero delay, the first `execute_many` on an idle executor leads:
    /// the calls polled while it yields queue behind it, the calls that
    /// complete whole batches run them, and the leader runs what is left,
    /// with no help from the collector (held here, it never runs).
    async fn zero_delay_execute_many_calls_share_batches_the_first_one_leads(rt: Rt) {
        let (executor, probe, spawner) = executor_without_collector(&rt, Duration::ZERO);
        let calls = (0..7u64).map(|call| executor.execute_many((call * 5..call * 5 + 5).collect()));
        let all = futures::future::join_all(calls);
        let outputs = within(Duration::from_secs(10), "execute_many calls", all).await;
        let expected: Vec<_> = (0..7u64)
            .map(|call| (call * 5..call * 5 + 5).map(|v| Ok(v * 2)).collect::<Vec<_>>())
            .collect();
        assert_eq!(outputs, expected);
        assert_eq!(probe.batch_sizes(), [5, 10, 10, 10], "sorted");
        assert_eq!(spawner.held(), 1, "only the collector was spawned");
    }

    /// The cap splits a burst and every value runs exactly once.
    async fn hard_cap_and_exactly_once(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_batch_size(100).max_delay(FOREVER).build().unwrap();
        let many = executor.clone();
        let outputs = rt.spawn_polled(async move { many.execute_many((0..250).collect()).await }).await;
        executor.close().await; // flushes the last, partial batch
        let outputs = within(Duration::from_secs(10), "execute_many", outputs).await;
        assert_eq!(outputs, (0..250).map(|v| Ok(v * 2)).collect::<Vec<_>>());
        assert_eq!(probe.batch_sizes(), [50, 100, 100]);
        assert_eq!(probe.executed(), (0..250).collect::<Vec<_>>());
    }

    /// With a zero delay and `gather_yields(0)`, a lone value on an idle
    /// executor runs in the caller's first poll.
    async fn no_gather_yields_runs_a_lone_value_at_once(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_delay(Duration::ZERO).gather_yields(0).build().unwrap();
        let mut execute = std::pin::pin!(executor.execute(21));
        assert_eq!(futures::poll!(execute.as_mut()), std::task::Poll::Ready(Ok(42)));
        assert_eq!(probe.executed(), [21]);
    }

    /// An `execute` leading a zero-delay batch and then kept without being
    /// polled holds up nobody else: another value runs after a short grace.
    async fn a_kept_unpolled_leader_does_not_hold_up_other_values(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_delay(Duration::ZERO).build().unwrap();
        let mut kept = Box::pin(executor.execute(1));
        assert!(futures::poll!(kept.as_mut()).is_pending(), "it leads, and yields");
        let other = within(Duration::from_secs(10), "a value behind a kept leader", executor.execute(2));
        assert_eq!(other.await, Ok(4));
        assert_eq!(kept.await, Ok(2));
        assert_eq!(probe.batch_sizes(), [1, 1], "2 ran without waiting for 1");
    }

    /// Nothing is deduplicated: equal values run once each.
    async fn equal_values_each_run(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_delay(Duration::ZERO).build().unwrap();
        let outputs = executor.execute_many(vec![7, 7, 7]).await;
        assert_eq!(outputs, vec![Ok(14), Ok(14), Ok(14)]);
        assert_eq!(probe.executed(), [7, 7, 7]);
    }

    /// A reply of the wrong length fails every caller of the batch with both
    /// counts, and the executor keeps serving.
    async fn wrong_result_count_is_a_typed_error(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        probe.state.short.lock().unwrap().insert(3);
        let executor = builder.max_batch_size(4).max_delay(FOREVER).build().unwrap();
        let outputs = executor.execute_many(vec![1, 2, 3, 4]).await;
        let expected = ExecuteError::ResultCount { expected: 4, got: 3 };
        assert_eq!(outputs, vec![Err(expected.clone()), Err(expected.clone()), Err(expected.clone()), Err(expected)]);
        assert_eq!(
            ExecuteError::<TestError>::ResultCount { expected: 4, got: 3 }.to_string(),
            "executor returned 3 results for a batch of 4 values"
        );
        let later = executor.clone();
        let later = rt.spawn_polled(async move { later.execute(5).await }).await;
        executor.close().await;
        assert_eq!(within(Duration::from_secs(10), "a later batch", later).await, Ok(10));
        assert_eq!(executor.stats().failed_batches, 1);
    }

    /// A failed batch gives every caller the same shared error, with its
    /// source; values are not retried.
    async fn batch_error_is_shared(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        probe.state.fail.lock().unwrap().insert(2);
        let executor = builder.max_batch_size(2).max_delay(FOREVER).build().unwrap();
        let (one, two) = futures::join!(executor.execute(1), executor.execute(2));
        let (Err(ExecuteError::Execute(a)), Err(ExecuteError::Execute(b))) = (one, two) else {
            panic!("both callers get the batch error");
        };
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.key, 2);
        let error: &dyn std::error::Error = &ExecuteError::Execute(a);
        assert!(error.source().is_some());
        assert_eq!(probe.executed(), [1, 2], "not retried");
    }

    /// A panicking executor fails its batch only.
    #[cfg(not(target_arch = "wasm32"))] // wasm32 aborts on a panic: nothing to catch
    async fn panic_is_isolated(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        probe.state.panic.lock().unwrap().insert(9);
        let executor = builder.max_delay(Duration::ZERO).build().unwrap();
        match executor.execute(9).await {
            Err(ExecuteError::Panicked(message)) => assert!(message.contains("exploded on 9")),
            other => panic!("expected Panicked, got {other:?}"),
        }
        assert_eq!(executor.execute(4).await, Ok(8));
        assert_eq!(executor.stats().panicked_batches, 1);
    }

    /// Submitted values run without anyone waiting; `close` drains them.
    async fn submit_then_close_runs_everything(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_batch_size(30).max_delay(FOREVER).build().unwrap();
        for v in 0..100 {
            executor.submit(v).await.unwrap();
        }
        within(Duration::from_secs(10), "close drains", executor.close()).await;
        assert_eq!(probe.executed(), (0..100).collect::<Vec<_>>());
        assert_eq!(probe.batch_sizes(), [10, 30, 30, 30]);
        assert_eq!(executor.submit(100).await, Err(SubmitError::Closed(100)));
        assert_eq!(executor.try_submit(101), Err(SubmitError::Closed(101)));
        assert_eq!(executor.execute(102).await, Err(ExecuteError::Closed));
        assert!(executor.is_closed());
        let stats = executor.stats();
        assert_eq!((stats.queued, stats.batches, stats.largest_batch), (100, 4, 30));
        assert_eq!(stats.requests, 103);
        assert_eq!(stats.closed, 1);
    }

    /// A full queue: `try_submit` refuses at once and hands the value back,
    /// `submit` waits for room.
    async fn bounded_queue_pushes_back(rt: Rt) {
        let (executor, probe, gate) = executor_with_its_slot_taken(&rt, 2).await;
        let filled = fill_queue(&executor, 2);
        // 0 running, 1 and 2 queued: full.
        assert_eq!(filled, [1, 2]);
        let refused = executor.try_submit(99).unwrap_err();
        assert!(matches!(refused, SubmitError::Full(99)), "{refused:?}");
        let executor2 = executor.clone();
        let mut waiting = Box::pin(rt.spawn(async move { executor2.submit(1_000).await }));
        assert_pending(&mut waiting, "submit waits for room while the queue is full").await;
        drop(gate);
        assert_eq!(within(Duration::from_secs(10), "room frees up", waiting).await, Ok(()));
        executor.close().await;
        assert_eq!(probe.executed(), [0, 1, 2, 1_000], "99 was refused, never run");
    }

    /// `execute` on a full queue waits for room, then runs and answers.
    async fn execute_waits_for_room(rt: Rt) {
        let (executor, probe, gate, waiting) = execute_waiting_for_room(&rt).await;
        drop(gate);
        let answer = within(Duration::from_secs(10), "room frees up", waiting).await;
        assert_eq!(answer, Ok(2_000));
        executor.close().await;
        assert!(probe.executed().contains(&1_000));
    }

    /// An `execute` still waiting for room when the executor stops is
    /// answered `Closed`, counted once as refused and once as closed, and
    /// its value never runs.
    async fn execute_waiting_for_room_is_closed_by_a_stop(rt: Rt) {
        let (executor, probe, gate, waiting) = execute_waiting_for_room(&rt).await;
        let refused = |stats: Stats| stats.requests - stats.queued;
        let refused_before = refused(executor.stats());
        executor.shutdown_now().await;
        let answer = within(Duration::from_secs(10), "the stop to answer", waiting).await;
        assert_eq!(answer, Err(ExecuteError::Closed));
        let stats = executor.stats();
        assert_eq!(stats.closed, 1, "only the waiting execute was closed");
        assert_eq!(refused(stats), refused_before + 1, "refused once");
        drop(gate);
        assert!(!probe.executed().contains(&1_000));
    }

    /// Failed batches of submitted values reach `on_error` with the values;
    /// callers of `execute` in the same batch get the error themselves.
    async fn failures_of_submitted_values_are_reported(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        probe.state.fail.lock().unwrap().insert(3);
        let (builder, failures) = collecting_failures(builder);
        let executor = builder.max_batch_size(4).max_delay(FOREVER).build().unwrap();
        executor.submit(1).await.unwrap();
        executor.submit(2).await.unwrap();
        let (three, four) = futures::join!(executor.execute(3), executor.execute(4));
        assert!(matches!(three, Err(ExecuteError::Execute(_))));
        assert!(matches!(four, Err(ExecuteError::Execute(_))));
        let failures = failures.lock().unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].values, [1, 2]);
        assert!(matches!(failures[0].error, ExecuteError::Execute(ref e) if e.key == 3));
    }

    /// `shutdown_now` stops at once: queued values come back, their waiters
    /// get `Closed`, nothing more runs; a batch already running finishes.
    async fn shutdown_now_hands_back_queued_values(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_batch_size(2).max_in_flight(1).max_delay(FOREVER).build().unwrap();
        let gate = probe.close_gate().await;
        let running = executor.clone();
        let running = rt.spawn(async move { running.execute_many(vec![1, 2]).await });
        assert_eq!(probe.started().await, [1, 2]);
        for v in 3..=5 {
            executor.submit(v).await.unwrap();
        }
        let waiter = executor.clone();
        let waiter = rt.spawn_polled(async move { waiter.execute(6).await }).await;
        let mut handed_back = within(Duration::from_secs(10), "shutdown_now", executor.shutdown_now()).await;
        handed_back.sort_unstable();
        assert_eq!(handed_back, [3, 4, 5, 6]);
        assert_eq!(within(Duration::from_secs(10), "the waiter", waiter).await, Err(ExecuteError::Closed));
        assert_eq!(executor.submit(7).await, Err(SubmitError::Closed(7)));
        drop(gate);
        assert_eq!(within(Duration::from_secs(10), "the running batch", running).await, vec![Ok(2), Ok(4)]);
        executor.close().await;
        assert_eq!(probe.executed(), [1, 2]);
    }

    /// A dropped `execute` future neither cancels its value (queued values
    /// run exactly once) nor disturbs the other callers of its batch.
    async fn dropped_execute_still_runs_once(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_batch_size(2).max_delay(FOREVER).build().unwrap();
        let mut dropped = Box::pin(executor.execute(1));
        assert!(futures::poll!(dropped.as_mut()).is_pending());
        drop(dropped);
        assert_eq!(executor.execute(2).await, Ok(4));
        assert_eq!(probe.executed(), [1, 2]);
    }

    /// Dropping every handle drains what is queued and drops the executor.
    async fn dropping_every_handle_drains_and_drops_the_executor(rt: Rt) {
        let (builder, probe) = doubler(&rt);
        let executor = builder.max_delay(FOREVER).build().unwrap();
        let clone = executor.clone();
        executor.submit(1).await.unwrap();
        clone.submit(2).await.unwrap();
        drop((executor, clone));
        eventually(Duration::from_secs(10), "the executor to be dropped", || probe.alive.upgrade().is_none()).await;
        assert_eq!(probe.executed(), [1, 2]);
    }
}

#[test]
fn zero_max_queued_is_rejected() {
    let error = BatchExecutor::builder(Doubler {
        state: Arc::default(),
        _alive: Arc::default(),
    })
    .max_queued(0)
    .build()
    .unwrap_err();
    assert!(matches!(
        error,
        BuildError::InvalidSetting {
            setting: "max_queued",
            ..
        }
    ));
}

/// `join_all` and spawned tasks move every `execute` future, so it stays
/// small: running a lone batch and waiting for room are boxed. (88 bytes for
/// a `u64` value and output with rustc 1.95; it was 264 before they were.)
// Native only: the size bound is for 64-bit targets.
#[cfg(not(target_arch = "wasm32"))]
#[cfg(feature = "smol")]
#[test]
fn the_execute_future_stays_small() {
    let executor = BatchExecutor::builder(Doubler {
        state: Arc::default(),
        _alive: Arc::default(),
    })
    .build()
    .unwrap();
    let execute = executor.execute(1);
    let size = std::mem::size_of_val(&execute);
    assert!(size <= 128, "the execute future takes {size} bytes");
}

mod review_fixes {
    use super::*;

    runtime_tests! {
        /// A `shutdown_now` dropped before it finished must not strand the
        /// callers of the values it would have handed back.
        async fn dropped_shutdown_now_answers_waiters(rt: Rt) {
            let (builder, _probe) = doubler(&rt);
            let executor = builder.max_delay(FOREVER).build().unwrap();
            let waiter = executor.clone();
            let waiter = rt.spawn_polled(async move { waiter.execute(1).await }).await;
            let mut shutdown = Box::pin(executor.shutdown_now());
            let _ = futures::poll!(shutdown.as_mut());
            drop(shutdown);
            let answer = within(Duration::from_secs(10), "the stranded caller", waiter).await;
            assert_eq!(answer, Err(ExecuteError::Closed));
        }

        /// A panicking `on_error` handler does not take the answers of the
        /// callers whose values ran.
        #[cfg(not(target_arch = "wasm32"))] // wasm32 aborts on a panic: nothing to catch
        async fn panicking_failure_handler_keeps_answers(rt: Rt) {
            let (builder, probe) = doubler(&rt);
            probe.state.fail.lock().unwrap().insert(1);
            let executor = builder
                .max_batch_size(2)
                .max_delay(FOREVER)
                .on_error(|_| panic!("handler exploded"))
                .build()
                .unwrap();
            executor.submit(1).await.unwrap();
            let answer = executor.execute(2).await;
            assert!(matches!(answer, Err(ExecuteError::Execute(ref e)) if e.key == 1), "{answer:?}");
        }

        /// `try_submit` refused for lack of room counts as a request refused.
        async fn full_queue_refusals_are_counted(rt: Rt) {
            let (executor, _probe, gate) = executor_with_its_slot_taken(&rt, 1).await;
            fill_queue(&executor, 1);
            assert!(executor.try_submit(99).is_err());
            let stats = executor.stats();
            assert_eq!(stats.requests, stats.queued + 1);
            drop(gate);
            executor.close().await;
        }
    }
}
