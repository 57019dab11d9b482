//! The one batch core: a queue feeding a collector task that forms batches
//! and starts them, unless the request completing a batch (or, with no
//! delay, the lone request of an idle loader) takes it to run on its own
//! task ([`Lead`]). The fetcher and the executor are thin layers that say
//! what a batch *does* ([`RunBatch`]); when and how big are decided here.

mod backlog;
mod collector;
mod deadline;
mod dispatch;
mod forced;
mod queue;
mod settings;

pub(crate) use dispatch::{run_side_by_side, Lead};
pub(crate) use queue::{in_flight_slots, split_pairs, start, Queue, Refused, RunBatch};
pub(crate) use settings::{shared_settings, BatchLimits, Settings};
