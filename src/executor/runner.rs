//! What one batch of an executor does: run the values, then answer each
//! caller with its own output, or report the failure.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use super::reply::ReplySender;
use super::Executor;
use crate::clock::Stopwatch;
use crate::core::{split_pairs, RunBatch};
use crate::error::panic_message;
use crate::stats::Counters;
use crate::trace::BatchSpan;
use crate::ExecuteError;

pub(crate) type Reply<X> =
    ReplySender<Result<<X as Executor>::Output, ExecuteError<<X as Executor>::Error>>>;

/// A value on its way to a batch; `None` reply: submitted, nobody waits.
pub(crate) type Job<X> = (<X as Executor>::Value, Option<Reply<X>>);

/// Receives the failures of batches holding submitted values.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type FailureHandler<X> =
    Arc<dyn Fn(BatchFailure<<X as Executor>::Value, <X as Executor>::Error>) + Send + Sync>;
/// Receives the failures of batches holding submitted values.
#[cfg(target_arch = "wasm32")]
pub(crate) type FailureHandler<X> =
    Arc<dyn Fn(BatchFailure<<X as Executor>::Value, <X as Executor>::Error>)>;

/// A failed batch's submitted values, handed to the builder's `on_error`
/// so that no fire-and-forget value is lost silently.
#[non_exhaustive]
pub struct BatchFailure<V, E> {
    /// Why the batch failed.
    pub error: ExecuteError<E>,
    /// The values of that batch that were given to `submit`, in order.
    /// (Values given to `execute` are reported to their callers instead.)
    pub values: Vec<V>,
}

impl<V, E: fmt::Debug> fmt::Debug for BatchFailure<V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchFailure")
            .field("error", &self.error)
            .field("values", &self.values.len())
            .finish()
    }
}

pub(crate) struct ExecuteRunner<X: Executor> {
    pub(crate) executor: X,
    pub(crate) on_error: FailureHandler<X>,
    pub(crate) counters: Arc<Counters>,
}

impl<X: Executor> RunBatch for ExecuteRunner<X> {
    type Item = Job<X>;

    async fn run(self: Arc<Self>, batch: Vec<Job<X>>, span: BatchSpan) {
        // The thread that runs the batch counts its backend time in a shard
        // of its own (see `hot_counter`).
        crate::hot_counter::enroll();
        let (values, replies) = split_pairs(batch);
        let stopwatch = Stopwatch::start();
        let executed = AssertUnwindSafe(async { self.executor.execute(&values).await })
            .catch_unwind()
            .await;
        let counters = &self.counters;
        counters.record_backend_time(stopwatch.elapsed());
        let error = match executed {
            Ok(Ok(outputs)) if outputs.len() == values.len() => {
                span.outcome("ok");
                for (reply, output) in replies.into_iter().zip(outputs) {
                    if let Some(reply) = reply {
                        reply.send(Ok(output));
                    }
                }
                return;
            }
            Ok(Ok(outputs)) => {
                span.outcome("result_count");
                Counters::add(&counters.failed_batches, 1);
                ExecuteError::ResultCount {
                    expected: values.len(),
                    got: outputs.len(),
                }
            }
            Ok(Err(error)) => {
                span.outcome("error");
                Counters::add(&counters.failed_batches, 1);
                ExecuteError::Execute(Arc::new(error))
            }
            Err(panic) => {
                span.outcome("panicked");
                Counters::add(&counters.panicked_batches, 1);
                ExecuteError::Panicked(panic_message(&*panic))
            }
        };
        let mut submitted = Vec::new();
        let mut waiting = Vec::new();
        for (value, reply) in values.into_iter().zip(replies) {
            match reply {
                Some(reply) => waiting.push(reply),
                None => submitted.push(value),
            }
        }
        // Reported before callers wake, so whoever sees the error can rely
        // on the report having been made.
        if !submitted.is_empty() {
            let failure = BatchFailure {
                error: error.clone(),
                values: submitted,
            };
            // A panicking handler must not cost the waiting callers their
            // answer: their values did run.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| (self.on_error)(failure)));
        }
        for reply in waiting {
            reply.send(Err(error.clone()));
        }
    }
}
