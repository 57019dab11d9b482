//! The one batch core: a queue feeding a collector task that forms batches
//! and starts them. The fetcher and the executor are thin layers that
//! say what a batch *does* ([`RunBatch`]); when and how big are decided here.

mod backlog;
mod collector;
mod deadline;
mod dispatch;
mod forced;
mod queue;
mod settings;

pub(crate) use dispatch::Lead;
pub(crate) use queue::{in_flight_slots, split_pairs, start, Queue, Refused, RunBatch};
pub(crate) use settings::{shared_settings, BatchLimits, Settings};
