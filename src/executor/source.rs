//! The backend side: what a user implements to run a batch of values.

use std::future::Future;

use crate::{MaybeSend, MaybeSync};

/// Runs a batch of values in one backend call: an `INSERT` of many rows, one
/// bulk API request, one flush of a log file.
///
/// `execute` returns one output per value, in the order given. Each value is
/// executed exactly once: a failed batch is not retried, and its values are
/// reported (to `execute` callers as their error, for submitted values
/// through the builder's [`on_error`](crate::ExecutorBuilder::on_error)).
///
/// ```
/// use anybatch::Executor;
///
/// /// Appends lines to a log, many per write.
/// struct LogWriter;
///
/// impl Executor for LogWriter {
///     type Value = String;
///     type Output = ();
///     type Error = std::io::Error;
///
///     async fn execute(&self, lines: &[String]) -> Result<Vec<()>, Self::Error> {
///         let chunk = lines.join("\n");
///         // One write of `chunk` would go here.
///         # let _ = chunk;
///         Ok(vec![(); lines.len()])
///     }
/// }
/// # let _ = LogWriter;
/// ```
pub trait Executor: MaybeSend + MaybeSync + 'static {
    /// What is executed, for example a row to insert.
    type Value: MaybeSend + MaybeSync + 'static;
    /// What each value's caller gets back, for example the new row's id.
    type Output: MaybeSend + 'static;
    /// Why a whole batch failed; shared by its callers through an `Arc`.
    type Error: std::error::Error + MaybeSend + MaybeSync + 'static;

    /// Executes `values` in one call, returning one output per value, in order.
    fn execute(
        &self,
        values: &[Self::Value],
    ) -> impl Future<Output = Result<Vec<Self::Output>, Self::Error>> + MaybeSend;
}
