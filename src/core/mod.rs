//! The one batch core: a queue feeding a collector task that forms batches
//! and starts them. The fetcher and, later, the executor are thin layers that
//! say what a batch *does* ([`RunBatch`]); when and how big are decided here.

mod collector;
mod settings;

pub(crate) use collector::{start, Lead, Queue, Refused, RunBatch};
pub(crate) use settings::{shared_settings, BatchLimits, Settings};
