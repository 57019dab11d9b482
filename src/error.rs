//! Typed errors: what a caller gets back, and why a loader could not be built.

use std::sync::Arc;

/// Why a load did not produce a value.
///
/// Cloning is cheap: a fetch error is shared by every caller of the failed
/// batch through an [`Arc`], so `E` need not be `Clone`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    /// The batch holding this key failed; every key of that batch gets the
    /// same error. Not cached: the next load fetches again.
    #[error("batch fetch failed")]
    Fetch(#[source] Arc<E>),
    /// The fetcher answered the batch but delivered no value for this key.
    /// Remembered like a value (when caching is on) until cleared.
    #[error("key not found")]
    NotFound,
    /// The fetcher panicked while fetching this key's batch. The loader
    /// survives; the next load fetches again.
    #[error("fetcher panicked: {0}")]
    Panicked(Arc<str>),
    /// The loader was closed, or its executor dropped the work, before this
    /// key was answered.
    #[error("loader is closed")]
    Closed,
}

impl<E> Clone for LoadError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Fetch(error) => Self::Fetch(error.clone()),
            Self::NotFound => Self::NotFound,
            Self::Panicked(message) => Self::Panicked(message.clone()),
            Self::Closed => Self::Closed,
        }
    }
}

impl<E> PartialEq for LoadError<E> {
    /// Two fetch errors are equal when they are the same shared error.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Fetch(a), Self::Fetch(b)) => Arc::ptr_eq(a, b),
            (Self::Panicked(a), Self::Panicked(b)) => a == b,
            (Self::NotFound, Self::NotFound) | (Self::Closed, Self::Closed) => true,
            _ => false,
        }
    }
}

/// Why a builder refused to build a loader.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A setting is out of range; `setting` names the builder method.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The builder method, for example `"max_batch_size"`.
        setting: &'static str,
        /// What the setting must be.
        reason: &'static str,
    },
    /// No spawner was given and no default exists (the `smol` feature is off,
    /// or the target is wasm32).
    #[error("no spawner: call `.spawner(..)` or enable the `smol` feature")]
    NoSpawner,
}

/// Why a spawner could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpawnerError {
    /// The spawner needs to be created inside a running runtime.
    #[error("not inside a {runtime} runtime")]
    NoRuntime {
        /// The runtime that was looked for, for example `"tokio"`.
        runtime: &'static str,
    },
}

/// Extracts the message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(message) = payload.downcast_ref::<&str>() {
        Arc::from(*message)
    } else if let Some(message) = payload.downcast_ref::<String>() {
        Arc::from(message.as_str())
    } else {
        Arc::from("non-string panic payload")
    }
}

/// Why an executed value did not produce an output.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The batch holding this value failed; every value of that batch gets
    /// the same error. The value is not retried.
    #[error("batch execution failed")]
    Execute(#[source] Arc<E>),
    /// The executor returned a different number of outputs than it was given
    /// values, so none can be matched to its caller.
    #[error("executor returned {got} results for a batch of {expected} values")]
    ResultCount {
        /// Values in the batch.
        expected: usize,
        /// Outputs returned.
        got: usize,
    },
    /// The executor panicked while running this value's batch.
    #[error("executor panicked: {0}")]
    Panicked(Arc<str>),
    /// The executor was closed or shut down before running this value.
    #[error("executor is closed")]
    Closed,
}

impl<E> Clone for ExecuteError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Execute(error) => Self::Execute(error.clone()),
            Self::ResultCount { expected, got } => Self::ResultCount {
                expected: *expected,
                got: *got,
            },
            Self::Panicked(message) => Self::Panicked(message.clone()),
            Self::Closed => Self::Closed,
        }
    }
}

impl<E> PartialEq for ExecuteError<E> {
    /// Two execution errors are equal when they are the same shared error.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Execute(a), Self::Execute(b)) => Arc::ptr_eq(a, b),
            (
                Self::ResultCount { expected, got },
                Self::ResultCount {
                    expected: other_expected,
                    got: other_got,
                },
            ) => expected == other_expected && got == other_got,
            (Self::Panicked(a), Self::Panicked(b)) => a == b,
            (Self::Closed, Self::Closed) => true,
            _ => false,
        }
    }
}

/// Why `submit` did not queue a value; the value comes back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError<V> {
    /// The queue holds `max_queued` values already (`try_submit` only).
    #[error("executor queue is full")]
    Full(V),
    /// The executor was closed.
    #[error("executor is closed")]
    Closed(V),
}

impl<V> SubmitError<V> {
    /// The value that was not queued.
    pub fn into_value(self) -> V {
        match self {
            Self::Full(value) | Self::Closed(value) => value,
        }
    }
}
