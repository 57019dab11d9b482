//! Configures and starts a [`BatchExecutor`].

use std::fmt;
use std::sync::Arc;

use super::runner::{ExecuteRunner, FailureHandler};
use super::{BatchExecutor, BatchFailure, Executor};
use crate::core::{self, shared_settings, Settings};
use crate::stats::Counters;
use crate::{BuildError, MaybeSend, MaybeSync};

/// Settings for a [`BatchExecutor`], from [`BatchExecutor::builder`].
///
/// ```
/// use std::time::Duration;
/// # use anybatch::{BatchExecutor, Executor};
/// # struct Events;
/// # impl Executor for Events {
/// #     type Value = String; type Output = (); type Error = std::io::Error;
/// #     async fn execute(&self, values: &[String]) -> Result<Vec<()>, Self::Error> { Ok(vec![(); values.len()]) }
/// # }
///
/// let events = BatchExecutor::builder(Events)
///     .max_batch_size(1_000)                 // flush by size...
///     .max_delay(Duration::from_millis(200)) // ...or by interval
///     .max_in_flight(1)                      // one write at a time, in order
///     .max_queued(50_000)                    // back-pressure beyond this
///     .on_error(|failure| eprintln!("lost {} events: {}", failure.values.len(), failure.error))
///     .build()
///     .unwrap();
/// # let _ = events;
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ExecutorBuilder<X: Executor> {
    executor: X,
    settings: Settings,
    on_error: Option<FailureHandler<X>>,
}

impl<X: Executor> ExecutorBuilder<X> {
    pub(crate) fn new(executor: X) -> Self {
        Self {
            executor,
            settings: Settings::default(),
            on_error: None,
        }
    }

    shared_settings!("value", "execute call", "execute calls");

    /// The most values waiting for a batch (default: unbounded; when set, at
    /// least 1 and at most 1,048,576; the queue grows as values arrive).
    /// Beyond it `execute` and `submit` wait
    /// for room and `try_submit` returns
    /// [`SubmitError::Full`](crate::SubmitError::Full).
    pub fn max_queued(mut self, values: usize) -> Self {
        self.settings.max_queued = Some(values);
        self
    }

    /// Called with every failed batch that held submitted values, with those
    /// values, so fire-and-forget work is never lost silently. Without it, a
    /// failure is written to standard error. Runs on the batch's task: keep
    /// it short (send the failure to a channel for slow handling). Work the
    /// runtime itself drops (shut down with batches pending) never reaches
    /// a handler: call `close` or `shutdown_now` before stopping the runtime.
    pub fn on_error(
        mut self,
        handler: impl Fn(BatchFailure<X::Value, X::Error>) + MaybeSend + MaybeSync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(handler));
        self
    }

    /// Validates the settings and starts the executor's collector.
    ///
    /// # Errors
    /// [`BuildError::InvalidSetting`] naming the first setting out of range,
    /// or [`BuildError::NoSpawner`].
    pub fn build(self) -> Result<BatchExecutor<X>, BuildError> {
        let (limits, spawner) = self.settings.validate()?;
        let label = self.settings.label;
        let on_error = self
            .on_error
            .unwrap_or_else(|| report_to_stderr::<X>(label.clone()));
        let counters = Arc::new(Counters::default());
        let runner = Arc::new(ExecuteRunner {
            executor: self.executor,
            on_error,
            counters: counters.clone(),
        });
        let queue = core::start(
            runner,
            limits,
            spawner,
            core::in_flight_slots(&limits),
            counters.clone(),
            label.clone(),
        );
        Ok(BatchExecutor::from_parts(queue, counters, label))
    }
}

fn report_to_stderr<X: Executor>(label: Option<Arc<str>>) -> FailureHandler<X> {
    Arc::new(move |failure: BatchFailure<X::Value, X::Error>| {
        let label = label.as_deref().unwrap_or("executor");
        let cause = match &failure.error {
            crate::ExecuteError::Execute(error) => format!(": {error}"),
            _ => String::new(),
        };
        eprintln!(
            "anybatch: {label}: a batch with {} submitted values failed: {}{cause}",
            failure.values.len(),
            failure.error
        );
    })
}

impl<X: Executor> fmt::Debug for ExecutorBuilder<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBuilder")
            .field("settings", &self.settings)
            .field("on_error", &self.on_error.is_some())
            .finish_non_exhaustive()
    }
}
