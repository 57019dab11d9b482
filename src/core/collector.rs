//! The collector task: takes items from the queue, forms batches by size and
//! delay, and starts each one within the in-flight limit.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use async_channel::{Receiver, Sender, TryRecvError, TrySendError, WeakReceiver, WeakSender};
use async_lock::{Semaphore, SemaphoreGuardArc};
use futures::future::{select, Either};
use futures::FutureExt;
use futures_timer::Delay;

use super::BatchLimits;
use crate::spawn::{BoxFuture, Spawner};
use crate::stats::Counters;
use crate::trace::BatchSpan;

/// What a batch does; implemented by the fetcher and executor layers.
///
/// `run` must answer every item's caller, or drop the item so that its drop
/// answers `Closed`: the core never looks inside items.
pub(crate) trait RunBatch: Send + Sync + 'static {
    type Item: Send + 'static;

    fn run(
        self: Arc<Self>,
        batch: Vec<Self::Item>,
        span: BatchSpan,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Why an item was not queued; the item comes back.
#[derive(Debug)]
pub(crate) enum Refused<T> {
    Full(T),
    Closed(T),
}

/// The handle side of the core: push items, close, wait for the drain, or
/// stop at once.
pub(crate) struct Queue<R: RunBatch> {
    items: Sender<R::Item>,
    dispatch: Arc<Dispatch<R>>,
    /// Lets a caller run a batch itself without keeping the loader alive.
    alive: WeakSender<()>,
    /// Closed by a forced shutdown, after `items`: wakes the collector.
    stop: Sender<()>,
    forced: Arc<Forced<R::Item>>,
    /// Never receives: reports "closed" once the collector has exited.
    collector_done: Receiver<()>,
    /// Never receives: reports "closed" once the collector and every batch
    /// task it started have dropped their senders, i.e. all work is done.
    finished: Receiver<()>,
}

impl<R: RunBatch> Queue<R> {
    /// Lets the caller run the next batch itself, starting with `item`, when
    /// that is the fastest answer: the delay is zero, nothing is queued, no
    /// other caller is leading and an in-flight slot is free. This skips two
    /// task hops (to the collector, then to a batch task). Hands the item
    /// back otherwise.
    ///
    /// The returned future yields once, so that loads polled alongside this
    /// one (a `join_all`) queue up and join the batch, then runs it. If it is
    /// dropped first, the batch is spawned instead, so every caller in it is
    /// still answered.
    pub(crate) fn try_lead(&self, item: R::Item) -> Result<Lead<R>, R::Item> {
        let dispatch = &self.dispatch;
        if !dispatch.limits.max_delay.is_zero() || !self.items.is_empty() || self.items.is_closed()
        {
            return Err(item);
        }
        if dispatch.leading.swap(true, Ordering::AcqRel) {
            return Err(item);
        }
        let slot = dispatch.in_flight.try_acquire_arc();
        let (alive, queued) = (self.alive.upgrade(), dispatch.queued.upgrade());
        let (Some(permit), Some(alive), Some(queued)) = (slot, alive, queued) else {
            dispatch.leading.store(false, Ordering::Release);
            return Err(item);
        };
        Ok(Lead {
            dispatch: dispatch.clone(),
            state: LeadState::Gathering {
                batch: vec![item],
                permit,
                alive,
                queued,
                yielded: false,
            },
        })
    }

    /// Queues `item` if there is room, or hands it back.
    pub(crate) fn push(&self, item: R::Item) -> Result<(), Refused<R::Item>> {
        self.items.try_send(item).map_err(|error| match error {
            TrySendError::Full(item) => Refused::Full(item),
            TrySendError::Closed(item) => Refused::Closed(item),
        })
    }

    /// Queues `item`, waiting for room; hands it back if the queue closes.
    pub(crate) async fn push_waiting(&self, item: R::Item) -> Result<(), R::Item> {
        self.items
            .send(item)
            .await
            .map_err(|error| error.into_inner())
    }

    /// Stops taking items, then waits until everything queued has been
    /// dispatched and every batch has finished.
    pub(crate) async fn close(&self) {
        self.items.close();
        let _ = self.finished.recv().await;
    }

    /// Stops taking items and stops the collector at once. Returns what was
    /// queued and not yet dispatched; batches already running finish on
    /// their own.
    pub(crate) async fn shutdown_now(&self) -> Vec<R::Item> {
        // Registered before the collector can hand anything back.
        let claim = Claimant::new(&self.forced.handed_back);
        // Flag next, so a collector woken by the closing queue sees it.
        self.forced.requested.store(true, Ordering::SeqCst);
        self.items.close();
        self.stop.close();
        let _ = self.collector_done.recv().await;
        claim.take()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.items.is_closed()
    }
}

/// What a forced stop hands back, and how many `shutdown_now` calls are
/// waiting to take it. With none waiting (the calls were dropped), the items
/// are dropped instead of kept, so their callers are answered `Closed`.
struct HandBack<T> {
    items: Vec<T>,
    claimants: usize,
}

/// One waiting `shutdown_now` call.
struct Claimant<'a, T>(&'a Mutex<HandBack<T>>);

impl<'a, T> Claimant<'a, T> {
    fn new(hand_back: &'a Mutex<HandBack<T>>) -> Self {
        lock(hand_back).claimants += 1;
        Self(hand_back)
    }

    fn take(self) -> Vec<T> {
        std::mem::take(&mut lock(self.0).items)
    }
}

impl<T> Drop for Claimant<'_, T> {
    fn drop(&mut self) {
        let mut hand_back = lock(self.0);
        hand_back.claimants -= 1;
        if hand_back.claimants == 0 {
            drop(std::mem::take(&mut hand_back.items));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A forced shutdown's state, shared by the handle and the collector.
struct Forced<T> {
    requested: AtomicBool,
    /// Items the collector held or found queued when it stopped.
    handed_back: Mutex<HandBack<T>>,
}

/// Starts the collector for `runner` on `spawner`.
pub(crate) fn start<R: RunBatch>(
    runner: Arc<R>,
    limits: BatchLimits,
    spawner: Arc<dyn Spawner>,
    counters: Arc<Counters>,
    label: Option<Arc<str>>,
) -> Queue<R> {
    let (items, queued) = match limits.max_queued {
        Some(capacity) => async_channel::bounded(capacity),
        None => async_channel::unbounded(),
    };
    let (stop, stopped) = async_channel::bounded(1);
    let (collector_alive, collector_done) = async_channel::bounded(1);
    let (alive, finished) = async_channel::bounded(1);
    let forced = Arc::new(Forced {
        requested: AtomicBool::new(false),
        handed_back: Mutex::new(HandBack {
            items: Vec::new(),
            claimants: 0,
        }),
    });
    let dispatch = Arc::new(Dispatch {
        runner,
        limits,
        spawner: spawner.clone(),
        counters,
        label,
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        leading: AtomicBool::new(false),
        queued: queued.downgrade(),
    });
    let weak_alive = alive.downgrade();
    let collector = Collector {
        dispatch: dispatch.clone(),
        // Wrapped before the future exists, so even an unpolled collector
        // that an executor drops answers what is queued.
        queued: Intake(queued),
        // Kept so that only an explicit stop closes the channel, not the
        // last handle going away (which drains gracefully instead).
        stop_keeper: stop.clone(),
        stopped,
        forced: forced.clone(),
        alive,
        _collector_alive: collector_alive,
    };
    spawner.spawn(Box::pin(collector.run()));
    Queue {
        items,
        dispatch,
        alive: weak_alive,
        stop,
        forced,
        collector_done,
        finished,
    }
}

/// What starting a batch takes, shared by the collector and by callers
/// that run a batch themselves.
struct Dispatch<R: RunBatch> {
    runner: Arc<R>,
    limits: BatchLimits,
    spawner: Arc<dyn Spawner>,
    counters: Arc<Counters>,
    label: Option<Arc<str>>,
    in_flight: Arc<Semaphore>,
    /// Set while a caller gathers a batch it will run itself.
    leading: AtomicBool,
    /// The queue, for a leading caller to gather from while the collector
    /// lives (weak, so that it never keeps a dead collector's queue open).
    queued: WeakReceiver<R::Item>,
}

impl<R: RunBatch> Dispatch<R> {
    /// The future of one batch: counted, traced, holding its in-flight slot
    /// and the loader's liveness until it ends. A panic the layer did not
    /// catch (a value's `Clone`, say) stays inside; the items it dropped
    /// answer their callers.
    fn batch(
        &self,
        batch: Vec<R::Item>,
        permit: SemaphoreGuardArc,
        alive: Sender<()>,
    ) -> BoxFuture {
        self.counters.record_batch(batch.len());
        let span = BatchSpan::new(self.label.as_deref(), batch.len());
        let run = span.instrument(self.runner.clone().run(batch, span.clone()));
        Box::pin(async move {
            let _ = AssertUnwindSafe(run).catch_unwind().await;
            drop((permit, alive));
        })
    }
}

/// A batch run on the caller's task (see [`Queue::try_lead`]).
pub(crate) struct Lead<R: RunBatch> {
    dispatch: Arc<Dispatch<R>>,
    state: LeadState<R::Item>,
}

enum LeadState<T> {
    Gathering {
        batch: Vec<T>,
        permit: SemaphoreGuardArc,
        alive: Sender<()>,
        queued: Receiver<T>,
        yielded: bool,
    },
    Running(BoxFuture),
    Done,
}

impl<R: RunBatch> Lead<R> {
    /// Takes what queued meanwhile into the batch and starts it.
    fn start(&mut self) -> Option<BoxFuture> {
        let LeadState::Gathering {
            mut batch,
            permit,
            alive,
            queued,
            ..
        } = std::mem::replace(&mut self.state, LeadState::Done)
        else {
            return None;
        };
        let dispatch = &self.dispatch;
        fill(&mut batch, &queued, dispatch.limits.max_batch_size);
        dispatch.leading.store(false, Ordering::Release);
        Some(dispatch.batch(batch, permit, alive))
    }
}

// Nothing in a `Lead` relies on being pinned: the batch future is boxed.
impl<R: RunBatch> Unpin for Lead<R> {}

impl<R: RunBatch> Future for Lead<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let LeadState::Gathering { yielded, .. } = &mut this.state {
            if !*yielded {
                *yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let run = this.start().expect("gathering");
            this.state = LeadState::Running(run);
        }
        let LeadState::Running(run) = &mut this.state else {
            return Poll::Ready(());
        };
        ready!(run.as_mut().poll(cx));
        this.state = LeadState::Done;
        Poll::Ready(())
    }
}

impl<R: RunBatch> Drop for Lead<R> {
    fn drop(&mut self) {
        // The caller gave up: the batch still answers everyone in it.
        let run = match std::mem::replace(&mut self.state, LeadState::Done) {
            LeadState::Running(run) => Some(run),
            gathering @ LeadState::Gathering { .. } => {
                self.state = gathering;
                self.start()
            }
            LeadState::Done => None,
        };
        if let Some(run) = run {
            self.dispatch.spawner.spawn(run);
        }
    }
}

struct Collector<R: RunBatch> {
    dispatch: Arc<Dispatch<R>>,
    queued: Intake<R::Item>,
    stop_keeper: Sender<()>,
    stopped: Receiver<()>,
    forced: Arc<Forced<R::Item>>,
    alive: Sender<()>,
    _collector_alive: Sender<()>,
}

impl<R: RunBatch> Collector<R> {
    async fn run(self) {
        let dispatch = &self.dispatch;
        let mut batch = Vec::new();
        loop {
            // The batch lives out here, so a stop mid-gathering loses nothing.
            let gathered =
                match select(pin!(self.gather(&mut batch)), pin!(self.stopped.recv())).await {
                    Either::Left((more, _)) => Some(more),
                    Either::Right(_) => None,
                };
            match gathered {
                Some(true) if !self.is_forced() => {}
                Some(false) => return, // closed and drained
                Some(true) | None => return self.hand_back(batch).await,
            }
            let slot = dispatch.in_flight.acquire_arc();
            let permit = match select(pin!(slot), pin!(self.stopped.recv())).await {
                Either::Left((permit, _)) if !self.is_forced() => permit,
                _ => return self.hand_back(batch).await,
            };
            // Items that queued while every slot was busy join this batch.
            fill(&mut batch, &self.queued, dispatch.limits.max_batch_size);
            let run = dispatch.batch(std::mem::take(&mut batch), permit, self.alive.clone());
            dispatch.spawner.spawn(run);
        }
    }

    /// Waits for a first item (unless the batch already holds some), then
    /// gathers until the batch is full, the delay since that first item has
    /// passed, or the queue is closed and empty. `false` once the queue is
    /// closed and drained with nothing gathered.
    async fn gather(&self, batch: &mut Vec<R::Item>) -> bool {
        if batch.is_empty() {
            match self.queued.recv().await {
                Ok(item) => batch.push(item),
                Err(_) => return false,
            }
        }
        // Started once, at the first item: later items never push it back.
        let mut deadline: Option<Delay> = None;
        loop {
            let limits = &self.dispatch.limits;
            fill(batch, &self.queued, limits.max_batch_size);
            if batch.len() >= limits.max_batch_size || limits.max_delay.is_zero() {
                return true;
            }
            let timer = deadline.get_or_insert_with(|| Delay::new(limits.max_delay));
            match select(pin!(self.queued.recv()), timer).await {
                Either::Left((Ok(item), _)) => batch.push(item),
                // Closed and empty, or the delay is up: dispatch what we hold.
                Either::Left((Err(_), _)) | Either::Right(_) => return true,
            }
        }
    }

    fn is_forced(&self) -> bool {
        self.forced.requested.load(Ordering::SeqCst)
    }

    /// Forced stop: everything held or still queued goes back to the handle.
    async fn hand_back(self, batch: Vec<R::Item>) {
        // `stop` closes after the queue, so once this returns nothing more
        // can be pushed and the drain below is complete.
        drop(self.stop_keeper);
        let _ = self.stopped.recv().await;
        let mut hand_back = lock(&self.forced.handed_back);
        if hand_back.claimants == 0 {
            return; // nobody waits for them: dropping answers their callers
        }
        hand_back.items.extend(batch);
        while let Ok(item) = self.queued.try_recv() {
            hand_back.items.push(item);
        }
    }
}

/// The collector's end of the queue. If an executor drops the collector
/// mid-way, this closes the queue and drops what is still in it, so every
/// waiting caller is answered `Closed` instead of waiting forever.
struct Intake<T>(Receiver<T>);

impl<T> std::ops::Deref for Intake<T> {
    type Target = Receiver<T>;

    fn deref(&self) -> &Receiver<T> {
        &self.0
    }
}

impl<T> Drop for Intake<T> {
    fn drop(&mut self) {
        self.0.close();
        while self.0.try_recv().is_ok() {}
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

        fn run(
            self: Arc<Self>,
            batch: Vec<u32>,
            _: BatchSpan,
        ) -> impl Future<Output = ()> + Send + 'static {
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
        queue: Queue<Recorder>,
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
                max_queued: None,
            };
            let queue = start(
                recorder.clone(),
                limits,
                Arc::new(spawner),
                Arc::default(),
                None,
            );
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
                assert!(self.queue.push(item).is_ok());
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

    #[test]
    fn shutdown_now_hands_back_what_was_not_dispatched() {
        let mut harness = Harness::new(10, 1);
        harness.push(0..25);
        harness.settle();
        assert_eq!(harness.sizes(), [10]);
        let queue = std::mem::replace(&mut harness.queue, start_idle());
        let mut shutdown = Box::pin(async move { queue.shutdown_now().await });
        let mut context = std::task::Context::from_waker(futures::task::noop_waker_ref());
        assert!(shutdown.as_mut().poll(&mut context).is_pending());
        harness.settle();
        let std::task::Poll::Ready(mut handed_back) = shutdown.as_mut().poll(&mut context) else {
            panic!("the collector stopped, so shutdown_now is done");
        };
        handed_back.sort_unstable();
        assert_eq!(handed_back, (10..25).collect::<Vec<_>>());
        assert_eq!(harness.sizes(), [10], "nothing more was dispatched");
    }

    /// A queue whose collector never runs, to stand in for a moved one.
    fn start_idle() -> Queue<Recorder> {
        let limits = BatchLimits {
            max_batch_size: 1,
            max_delay: Duration::ZERO,
            max_in_flight: 1,
            max_queued: None,
        };
        let recorder = Arc::new(Recorder {
            batches: Mutex::default(),
            release: async_channel::unbounded().1,
        });
        start(recorder, limits, Arc::new(|_| {}), Arc::default(), None)
    }
}
