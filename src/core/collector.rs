//! The collector task: takes items from the queue, forms batches by size and
//! delay, and starts each one within the in-flight limit.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;

use async_channel::{Receiver, Sender, TryRecvError};
use async_lock::Semaphore;
use futures::future::{select, Either};
use futures::FutureExt;
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
    // Wrapped before the future exists, so even an unpolled collector that
    // an executor drops answers what is queued.
    let collector = collect(runner, Intake(queued), limits, spawner.clone(), alive);
    spawner.spawn(Box::pin(collector));
    Queue { items, finished }
}

async fn collect<R: RunBatch>(
    runner: Arc<R>,
    queued: Intake<R::Item>,
    limits: BatchLimits,
    spawner: Arc<dyn Spawner>,
    alive: Sender<()>,
) {
    let queued = &queued.0;
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    while let Some(mut batch) = next_batch(queued, &limits).await {
        let permit = in_flight.acquire_arc().await;
        // Keys that queued while every slot was busy join this batch.
        fill(&mut batch, queued, limits.max_batch_size);
        let run = runner.clone().run(batch);
        let alive = alive.clone();
        spawner.spawn(Box::pin(async move {
            // A panic the layer did not catch (a value's `Clone`, say) stays
            // in this task; the items it dropped answer their callers.
            let _ = AssertUnwindSafe(run).catch_unwind().await;
            drop((permit, alive));
        }));
    }
}

/// The collector's end of the queue. If an executor drops the collector
/// mid-way, this closes the queue and drops what is still in it, so every
/// waiting caller is answered `Closed` instead of waiting forever.
struct Intake<T>(Receiver<T>);

impl<T> Drop for Intake<T> {
    fn drop(&mut self) {
        self.0.close();
        while self.0.try_recv().is_ok() {}
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

#[cfg(test)]
mod tests {
    //! The collector driven step by step on a single-threaded pool, so every
    //! batching decision is observed deterministically.

    use std::sync::{mpsc, Mutex};
    use std::time::Duration;

    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

    use super::*;
    use crate::spawn::BoxFuture;

    /// Records every batch; each waits for one release before finishing.
    struct Recorder {
        batches: Mutex<Vec<Vec<u32>>>,
        release: Receiver<()>,
    }

    impl RunBatch for Recorder {
        type Item = u32;

        fn run(self: Arc<Self>, batch: Vec<u32>) -> impl Future<Output = ()> + Send + 'static {
            self.batches.lock().unwrap().push(batch);
            async move {
                let _ = self.release.recv().await;
            }
        }
    }

    struct Harness {
        pool: LocalPool,
        spawned: mpsc::Receiver<BoxFuture>,
        recorder: Arc<Recorder>,
        release: Sender<()>,
        queue: Queue<u32>,
    }

    impl Harness {
        fn new(max_batch_size: usize, max_in_flight: usize) -> Self {
            let (to_pool, spawned) = mpsc::channel::<BoxFuture>();
            let spawner = move |task: BoxFuture| to_pool.send(task).unwrap();
            let (release, released) = async_channel::unbounded();
            let recorder = Arc::new(Recorder {
                batches: Mutex::default(),
                release: released,
            });
            let limits = BatchLimits {
                max_batch_size,
                max_delay: Duration::ZERO,
                max_in_flight,
            };
            let queue = start(recorder.clone(), limits, Arc::new(spawner));
            Self {
                pool: LocalPool::new(),
                spawned,
                recorder,
                release,
                queue,
            }
        }

        /// Runs every task, including newly spawned ones, until all wait.
        fn settle(&mut self) {
            loop {
                let mut spawned_any = false;
                while let Ok(task) = self.spawned.try_recv() {
                    self.pool.spawner().spawn_local(task).unwrap();
                    spawned_any = true;
                }
                self.pool.run_until_stalled();
                if !spawned_any {
                    break;
                }
            }
        }

        fn push(&self, items: impl IntoIterator<Item = u32>) {
            for item in items {
                self.queue.push(item).unwrap();
            }
        }

        fn sizes(&self) -> Vec<usize> {
            self.recorder
                .batches
                .lock()
                .unwrap()
                .iter()
                .map(Vec::len)
                .collect()
        }

        fn finish_one(&mut self) {
            self.release.try_send(()).unwrap();
            self.settle();
        }
    }

    #[test]
    fn hard_cap_splits_a_burst() {
        let mut harness = Harness::new(100, 10);
        harness.push(0..250);
        harness.settle();
        assert_eq!(harness.sizes(), [100, 100, 50]);
        let all: Vec<u32> = harness.recorder.batches.lock().unwrap().concat();
        assert_eq!(all, (0..250).collect::<Vec<_>>());
    }

    #[test]
    fn zero_delay_dispatches_a_lone_item() {
        let mut harness = Harness::new(100, 10);
        harness.push([7]);
        harness.settle();
        assert_eq!(harness.sizes(), [1]);
    }

    #[test]
    fn in_flight_limit_holds_batches_and_they_keep_filling() {
        let mut harness = Harness::new(10, 2);
        harness.push(0..20);
        harness.settle();
        assert_eq!(harness.sizes(), [10, 10]);
        // Both slots busy: a lone item waits, and later items join its batch.
        harness.push([100]);
        harness.settle();
        harness.push(101..105);
        harness.settle();
        assert_eq!(harness.sizes(), [10, 10]);
        harness.finish_one();
        assert_eq!(harness.sizes(), [10, 10, 5]);
    }

    #[test]
    fn close_waits_for_every_batch_then_finishes() {
        let mut harness = Harness::new(10, 1);
        harness.push(0..15);
        let queue = std::mem::replace(&mut harness.queue, start_idle());
        let mut close = Box::pin(async move { queue.close().await });
        let mut context = std::task::Context::from_waker(futures::task::noop_waker_ref());
        assert!(close.as_mut().poll(&mut context).is_pending());
        harness.settle();
        assert_eq!(harness.sizes(), [10]);
        harness.finish_one();
        assert_eq!(harness.sizes(), [10, 5]);
        assert!(close.as_mut().poll(&mut context).is_pending());
        harness.finish_one();
        assert!(close.as_mut().poll(&mut context).is_ready());
    }

    #[test]
    fn dropping_the_queue_dispatches_what_is_left() {
        let mut harness = Harness::new(10, 10);
        harness.push(0..3);
        drop(std::mem::replace(&mut harness.queue, start_idle()));
        harness.settle();
        assert_eq!(harness.sizes(), [3]);
    }

    /// A queue whose collector never runs, to stand in for a moved one.
    fn start_idle() -> Queue<u32> {
        let (items, _) = async_channel::unbounded();
        let (_, finished) = async_channel::bounded(1);
        Queue { items, finished }
    }
}
