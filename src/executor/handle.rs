//! The cheap, cloneable handle callers execute and submit through.

use std::fmt;
use std::sync::Arc;

use super::reply::{reply, ReplyReceiver};
use super::runner::{ExecuteRunner, Job};
use super::{Executor, ExecutorBuilder};
use crate::core::{run_side_by_side, Lead, Queue, Refused};
use crate::stats::Counters;
use crate::{ExecuteError, Stats, SubmitError};

/// Batches concurrent `execute` and `submit` calls into one
/// [`Executor::execute`] call per batch.
///
/// Nothing is cached or deduplicated: every value is executed exactly once.
/// Once queued, a value runs even if its `execute` future is dropped.
///
/// ```
/// use anybatch::{BatchExecutor, Executor};
///
/// /// Inserts rows, returning their new ids.
/// struct InsertUsers;
///
/// impl Executor for InsertUsers {
///     type Value = String;
///     type Output = u64;
///     type Error = std::io::Error;
///
///     async fn execute(&self, names: &[String]) -> Result<Vec<u64>, Self::Error> {
///         // One `INSERT ... VALUES (?), (?), ... RETURNING id` would go here.
///         Ok((0..names.len() as u64).map(|i| 100 + i).collect())
///     }
/// }
///
/// # smol::block_on(async {
/// let inserts = BatchExecutor::builder(InsertUsers).build().unwrap();
/// let (ada, alan) = futures::join!(inserts.execute("Ada".into()), inserts.execute("Alan".into()));
/// assert_eq!((ada.unwrap(), alan.unwrap()), (100, 101)); // one INSERT of two rows
/// # });
/// ```
pub struct BatchExecutor<X: Executor> {
    inner: Arc<Inner<X>>,
}

struct Inner<X: Executor> {
    queue: Queue<ExecuteRunner<X>>,
    counters: Arc<Counters>,
    label: Option<Arc<str>>,
}

type Output<X> = Result<<X as Executor>::Output, ExecuteError<<X as Executor>::Error>>;

/// What [`BatchExecutor::execute`] awaits before its reply: nothing, or one
/// of its boxed slow paths.
enum Next<L, Q> {
    Wait,
    Lead(L),
    Room(Q),
}

/// Where a value stands once offered to the queue.
enum Queued<X: Executor> {
    /// Queued: a batch will answer it.
    Waiting,
    /// Queued, and it completed a batch for this caller to run (boxed: it
    /// is awaited inside `execute`, whose future must stay small).
    Run(Box<Lead<ExecuteRunner<X>>>),
    Closed,
}

impl<X: Executor> BatchExecutor<X> {
    /// Starts configuring an executor over `executor`; see [`ExecutorBuilder`]
    /// for the settings and their defaults.
    pub fn builder(executor: X) -> ExecutorBuilder<X> {
        ExecutorBuilder::new(executor)
    }

    pub(crate) fn from_parts(
        queue: Queue<ExecuteRunner<X>>,
        counters: Arc<Counters>,
        label: Option<Arc<str>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                queue,
                counters,
                label,
            }),
        }
    }

    /// Executes `value` in the next batch and returns its output. Waits for
    /// room when the queue holds `max_queued` values. A call whose value
    /// completes a batch runs that batch while it is polled; dropped, it
    /// leaves the batch to a task of its own. Kept without being polled, it
    /// holds that batch and its in-flight slot, so other batches may wait
    /// for the slot: awaiting another `execute` while keeping such a future
    /// (say, the loser of a `select`) can wait forever.
    ///
    /// # Errors
    /// [`ExecuteError::Execute`], [`ExecuteError::ResultCount`] or
    /// [`ExecuteError::Panicked`] when its batch failed,
    /// [`ExecuteError::Closed`] when the executor closed first.
    pub async fn execute(&self, value: X::Value) -> Output<X> {
        let (reply, answer) = reply();
        // Everything up to the wait is decided before the first await, and
        // the slow paths (running a lone batch here, waiting for room) are
        // boxed: across the await the future keeps little more than the
        // reply, so a burst of `execute` futures stays small to move.
        let next = match self.inner.queue.try_lead((value, Some(reply))) {
            // On an idle executor with no delay, run the value on this task.
            Ok(lead) => {
                self.count_queued();
                Next::Lead(Box::new(lead))
            }
            Err(job) => match self.try_enqueue(job) {
                Ok(Queued::Waiting) => Next::Wait,
                // This value completed a batch: run it here.
                Ok(Queued::Run(lead)) => Next::Lead(lead),
                Ok(Queued::Closed) => return Err(ExecuteError::Closed),
                Err(job) => Next::Room(Box::pin(self.wait_for_room(job))),
            },
        };
        match next {
            Next::Wait => {}
            Next::Lead(lead) => lead.await,
            Next::Room(queued) => match queued.await {
                Queued::Waiting => {}
                Queued::Run(lead) => lead.await,
                Queued::Closed => return Err(ExecuteError::Closed),
            },
        }
        self.answer(answer).await
    }

    /// Executes every value and returns one result per value, in order. The
    /// values are queued back to back, so they share batches as far as
    /// `max_batch_size` allows; with `max_delay(ZERO)` on an idle executor
    /// the call leads like a lone [`execute`](Self::execute): it yields,
    /// then runs what is left of its values, with those of calls polled
    /// meanwhile, once whole batches have gone (see `gather_yields` on the
    /// builder). Like `execute`, it runs the batches it completes or leads
    /// while polled; kept without being polled, it holds them and their
    /// in-flight slots, so awaiting another `execute` while keeping it can
    /// wait forever.
    ///
    /// ```
    /// # use anybatch::{BatchExecutor, Executor};
    /// # struct Double;
    /// # impl Executor for Double {
    /// #     type Value = u32; type Output = u32; type Error = std::io::Error;
    /// #     async fn execute(&self, values: &[u32]) -> Result<Vec<u32>, Self::Error> {
    /// #         Ok(values.iter().map(|v| v * 2).collect())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let doubler = BatchExecutor::builder(Double).build().unwrap();
    /// let results = doubler.execute_many(vec![1, 2, 3]).await;
    /// assert_eq!(results, vec![Ok(2), Ok(4), Ok(6)]);
    /// # });
    /// ```
    pub async fn execute_many(&self, values: Vec<X::Value>) -> Vec<Output<X>> {
        // Queue everything first so the values share batches, then run side
        // by side the batches these values completed.
        let mut replies = Vec::with_capacity(values.len());
        let mut leads = Vec::new();
        // With zero delay on an idle executor, this call leads the batch
        // its values (and those of calls polled meanwhile) gather in.
        let mut many_lead = if values.is_empty() {
            None
        } else {
            self.inner.queue.try_lead_many()
        };
        for value in values {
            let (reply, answer) = reply();
            let queued = match self.try_enqueue((value, Some(reply))) {
                Ok(queued) => queued,
                Err(job) => {
                    // Room frees up only as the collector takes batches, and
                    // the batches held here hold the slots it needs (and
                    // the lead holds the queue): run them before waiting.
                    leads.extend(many_lead.take());
                    run_side_by_side(std::mem::take(&mut leads)).await;
                    self.wait_for_room(job).await
                }
            };
            replies.push(match queued {
                Queued::Waiting => Some(answer),
                Queued::Run(lead) => {
                    leads.push(*lead);
                    Some(answer)
                }
                Queued::Closed => None,
            });
        }
        leads.extend(many_lead);
        run_side_by_side(leads).await;
        let mut results = Vec::with_capacity(replies.len());
        for reply in replies {
            results.push(match reply {
                Some(reply) => self.answer(reply).await,
                None => Err(ExecuteError::Closed),
            });
        }
        results
    }

    /// Queues `value` without waiting for its output (events, metrics,
    /// audit rows), waiting for room when the queue holds `max_queued`
    /// values. A batch that fails is reported to the builder's
    /// [`on_error`](ExecutorBuilder::on_error) with its submitted values.
    ///
    /// # Errors
    /// [`SubmitError::Closed`], with the value, once the executor is closed.
    pub async fn submit(&self, value: X::Value) -> Result<(), SubmitError<X::Value>> {
        match self.inner.queue.push_waiting((value, None)).await {
            // A batch this value completed is not run here: dropped, it is
            // spawned, and `submit` returns at once.
            Ok(_) => {
                self.count_queued();
                Ok(())
            }
            Err((value, _)) => Err(self.refused(SubmitError::Closed(value))),
        }
    }

    /// Queues `value` like [`submit`](Self::submit) if there is room now.
    ///
    /// # Errors
    /// [`SubmitError::Full`] at once when `max_queued` values are queued,
    /// [`SubmitError::Closed`] once the executor is closed; both hand the
    /// value back.
    ///
    /// ```
    /// # use anybatch::{BatchExecutor, Executor, SubmitError};
    /// # struct Discard;
    /// # impl Executor for Discard {
    /// #     type Value = u32; type Output = (); type Error = std::io::Error;
    /// #     async fn execute(&self, values: &[u32]) -> Result<Vec<()>, Self::Error> { Ok(vec![(); values.len()]) }
    /// # }
    /// # smol::block_on(async {
    /// let events = BatchExecutor::builder(Discard).max_queued(10_000).build().unwrap();
    /// match events.try_submit(7) {
    ///     Ok(()) => {}
    ///     Err(SubmitError::Full(event)) => println!("dropping event {event}: queue full"),
    ///     Err(SubmitError::Closed(event)) => println!("dropping event {event}: shut down"),
    /// }
    /// events.close().await;
    /// # });
    /// ```
    pub fn try_submit(&self, value: X::Value) -> Result<(), SubmitError<X::Value>> {
        match self.inner.queue.push((value, None)) {
            // As in `submit`, a completed batch is spawned when dropped.
            Ok(_) => {
                self.count_queued();
                Ok(())
            }
            Err(Refused::Full((value, _))) => Err(self.refused(SubmitError::Full(value))),
            Err(Refused::Closed((value, _))) => Err(self.refused(SubmitError::Closed(value))),
        }
    }

    /// Stops taking values, runs everything already queued, waits for every
    /// batch in flight, and returns. Closing twice is harmless.
    pub async fn close(&self) {
        self.inner.queue.close().await
    }

    /// Stops at once: takes no more values, dispatches no more batches, and
    /// hands back every value still queued (callers of `execute` waiting on
    /// them get [`ExecuteError::Closed`]). Batches already taken from the
    /// queue finish: those running, and those a caller completed and is about
    /// to run (an `execute_many` still queueing its values runs its batches
    /// when it is done queueing, possibly after this returns).
    ///
    /// ```
    /// # use anybatch::{BatchExecutor, Executor};
    /// # use std::time::Duration;
    /// # struct Discard;
    /// # impl Executor for Discard {
    /// #     type Value = u32; type Output = (); type Error = std::io::Error;
    /// #     async fn execute(&self, values: &[u32]) -> Result<Vec<()>, Self::Error> { Ok(vec![(); values.len()]) }
    /// # }
    /// # smol::block_on(async {
    /// let events = BatchExecutor::builder(Discard)
    ///     .max_delay(Duration::from_secs(60)) // nothing is due for a minute
    ///     .build()
    ///     .unwrap();
    /// events.submit(1).await.unwrap();
    /// events.submit(2).await.unwrap();
    /// let mut unsent = events.shutdown_now().await;
    /// unsent.sort();
    /// assert_eq!(unsent, vec![1, 2]); // not lost: yours to store or retry
    /// # });
    /// ```
    pub async fn shutdown_now(&self) -> Vec<X::Value> {
        let jobs = self.inner.queue.shutdown_now().await;
        let waited_on = jobs.iter().filter(|(_, reply)| reply.is_some()).count();
        Counters::add(&self.inner.counters.closed, waited_on as u64);
        jobs.into_iter().map(|(value, _)| value).collect()
    }

    /// True once [`close`](Self::close) or
    /// [`shutdown_now`](Self::shutdown_now) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.queue.is_closed()
    }

    /// What this executor has done so far; see [`Stats`].
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The label given to the builder, if any.
    pub fn label(&self) -> Option<&str> {
        self.inner.label.as_deref()
    }

    /// Queues `job` once there is room.
    async fn wait_for_room(&self, job: Job<X>) -> Queued<X> {
        match self.inner.queue.push_waiting(job).await {
            Ok(lead) => self.queued(lead),
            Err(_) => self.refused_closed(),
        }
    }

    /// Queues `job` if there is room now; hands it back otherwise.
    fn try_enqueue(&self, job: Job<X>) -> Result<Queued<X>, Job<X>> {
        match self.inner.queue.push(job) {
            Ok(lead) => Ok(self.queued(lead)),
            Err(Refused::Full(job)) => Err(job),
            Err(Refused::Closed(_)) => Ok(self.refused_closed()),
        }
    }

    fn queued(&self, lead: Option<Lead<ExecuteRunner<X>>>) -> Queued<X> {
        self.count_queued();
        match lead {
            Some(lead) => Queued::Run(Box::new(lead)),
            None => Queued::Waiting,
        }
    }

    /// Counts a value refused because the executor is closed.
    fn refused_closed(&self) -> Queued<X> {
        let counters = &self.inner.counters;
        Counters::add(&counters.rejected, 1);
        Counters::add(&counters.closed, 1);
        Queued::Closed
    }

    async fn answer(&self, reply: ReplyReceiver<Output<X>>) -> Output<X> {
        // A dropped reply: the batch was dropped unanswered or handed back.
        reply.await.unwrap_or(Err(ExecuteError::Closed))
    }

    fn count_queued(&self) {
        // Off any hit path: enrolling here gives this thread its own shard
        // of the counter (see `hot_counter`).
        crate::hot_counter::enroll();
        self.inner.counters.queued();
    }

    fn refused(&self, error: SubmitError<X::Value>) -> SubmitError<X::Value> {
        Counters::add(&self.inner.counters.rejected, 1);
        error
    }
}

impl<X: Executor> Clone for BatchExecutor<X> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<X: Executor> fmt::Debug for BatchExecutor<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchExecutor")
            .field("label", &self.inner.label)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
