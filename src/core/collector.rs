//! The collector task: takes items from the queue, forms batches by size and
//! delay, and starts each one within the in-flight limit.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use async_channel::{Receiver, Sender, TryRecvError};
use async_lock::Semaphore;
use futures::future::{select, Either};
use futures_timer::Delay;

use super::BatchLimits;
use crate::spawn::Spawner;

/// What a batch does; implemented by the fetcher and executor layers.
///
/// `run` must answer every item's caller, or drop the item so that its drop
/// answers `Closed`: the core never looks inside items.
pub(crate) trait RunBatch: Send + Sync + 'static {
    type Item: Send + 'static;

    fn run(self: Arc<Self>, batch: Vec<Self::Item>) -> impl Future<Output = ()> + Send + 'static;
}

/// The handle side of the core: push items, close, wait for the drain.
pub(crate) struct Queue<T> {
    items: Sender<T>,
    /// Never receives: it reports "closed" once the collector and every batch
    /// task it started have dropped their senders, i.e. all work is done.
    finished: Receiver<()>,
}

impl<T> Queue<T> {
    /// Queues `item`, or hands it back when the loader is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        self.items
            .try_send(item)
            .map_err(|error| error.into_inner())
    }

    /// Stops taking items, then waits until everything queued has been
    /// dispatched and every batch has finished.
    pub(crate) async fn close(&self) {
        self.items.close();
        let _ = self.finished.recv().await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.items.is_closed()
    }
}

/// Starts the collector for `runner` on `spawner`.
pub(crate) fn start<R: RunBatch>(
    runner: Arc<R>,
    limits: BatchLimits,
    spawner: Arc<dyn Spawner>,
) -> Queue<R::Item> {
    let (items, queued) = async_channel::unbounded();
    let (alive, finished) = async_channel::bounded(1);
    let collector = collect(runner, queued, limits, spawner.clone(), alive);
    spawner.spawn(Box::pin(collector));
    Queue { items, finished }
}

async fn collect<R: RunBatch>(
    runner: Arc<R>,
    queued: Receiver<R::Item>,
    limits: BatchLimits,
    spawner: Arc<dyn Spawner>,
    alive: Sender<()>,
) {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    while let Some(mut batch) = next_batch(&queued, &limits).await {
        let permit = in_flight.acquire_arc().await;
        // Keys that queued while every slot was busy join this batch.
        fill(&mut batch, &queued, limits.max_batch_size);
        let run = runner.clone().run(batch);
        let alive = alive.clone();
        spawner.spawn(Box::pin(async move {
            run.await;
            drop((permit, alive));
        }));
    }
}

/// Waits for a first item, then gathers until the batch is full, the delay
/// since that first item has passed, or the queue is closed and empty.
/// `None` once the queue is closed and drained.
async fn next_batch<T>(queued: &Receiver<T>, limits: &BatchLimits) -> Option<Vec<T>> {
    let first = queued.recv().await.ok()?;
    let mut batch = Vec::with_capacity(limits.max_batch_size.min(1024));
    batch.push(first);
    // Started once, at the first item: later items never push it back.
    let mut deadline: Option<Delay> = None;
    loop {
        fill(&mut batch, queued, limits.max_batch_size);
        if batch.len() >= limits.max_batch_size || limits.max_delay.is_zero() {
            return Some(batch);
        }
        let timer = deadline.get_or_insert_with(|| Delay::new(limits.max_delay));
        match select(pin!(queued.recv()), timer).await {
            Either::Left((Ok(item), _)) => batch.push(item),
            // Closed and empty, or the delay is up: dispatch what we hold.
            Either::Left((Err(_), _)) | Either::Right(_) => return Some(batch),
        }
    }
}

/// Moves already-queued items into `batch` without waiting, up to `cap`.
fn fill<T>(batch: &mut Vec<T>, queued: &Receiver<T>, cap: usize) {
    while batch.len() < cap {
        match queued.try_recv() {
            Ok(item) => batch.push(item),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
}
