//! Writes: many `execute(value)` and `submit(value)` calls become one
//! [`Executor::execute`] per batch, on the same batch core as the fetcher.

mod builder;
mod handle;
mod reply;
mod runner;
mod source;

pub use builder::ExecutorBuilder;
pub use handle::BatchExecutor;
pub use runner::BatchFailure;
pub use source::Executor;
