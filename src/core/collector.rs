//! The collector task: watches the queue, and takes and starts each batch
//! the requests did not take themselves (one whose delay has passed, or a
//! full one when no in-flight slot was free for its last request), within
//! the in-flight limit.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use futures::future::{select, Either};

use super::backlog::{Backlog, Pending};
use super::deadline::Deadline;
use super::dispatch::Dispatch;
use super::forced::Forced;
use super::RunBatch;
use crate::unpoisoned::lock;

/// With zero delay, how long the collector leaves what queues to a request
/// gathering its batch before it takes it anyway: the default batching
/// window. A gathering request that is polled starts within a few trips
/// through its executor's queue; one that is not must not hold up the rest
/// for long. Shorter graces cut long bursts into partial batches: in a
/// scratch harness (smol, 100 bursts of 10,000 keys from one `join_all`,
/// two runs each), 100 µs gave 129–218 batches per burst, 500 µs 119–128,
/// 1 ms 107–108, and no bound 100.
#[cfg(not(test))]
const LEADER_GRACE: Duration = super::settings::DEFAULT_MAX_DELAY;
/// The unit tests below step the collector by hand and must not see the
/// grace pass on a slow machine; `tests/` checks it with the real one.
#[cfg(test)]
const LEADER_GRACE: Duration = Duration::from_secs(3600);

pub(super) struct Collector<R: RunBatch> {
    pub(super) dispatch: Arc<Dispatch<R>>,
    pub(super) queued: Intake<R::Item>,
    pub(super) stop_keeper: Sender<()>,
    pub(super) stopped: Receiver<()>,
    pub(super) forced: Arc<Forced<R::Item>>,
    pub(super) alive: Sender<()>,
    pub(super) _collector_alive: Sender<()>,
}

impl<R: RunBatch> Collector<R> {
    pub(super) async fn run(self) {
        let dispatch = &self.dispatch;
        let cap = dispatch.limits.max_batch_size;
        let mut deadline = Deadline::new();
        loop {
            // Items stay queued until a batch is taken, so a stop mid-way
            // hands every one of them back.
            let gather = self.gather(&mut deadline);
            let gathered = match select(pin!(gather), pin!(self.stopped.recv())).await {
                Either::Left((more, _)) => Some(more),
                Either::Right(_) => None,
            };
            let take = match gathered {
                Some(Some(take)) if !self.is_forced() => take,
                Some(None) => return, // closed and drained
                Some(Some(_)) | None => return self.hand_back().await,
            };
            let slot = dispatch.in_flight.acquire_arc();
            let permit = match select(pin!(slot), pin!(self.stopped.recv())).await {
                Either::Left((permit, _)) if !self.is_forced() => permit,
                _ => return self.hand_back().await,
            };
            // Items that queued while every slot was busy join this batch,
            // unless a request took the batch meanwhile: then it is back to
            // gathering, or the collector would cut the next batch short.
            let mut batch = Vec::new();
            self.queued
                .fill_if(&mut batch, cap, |now| take.holds(now, cap));
            if !batch.is_empty() {
                // The collector's thread counts its batches in a shard of
                // its own too (see `hot_counter`); a leading request's
                // thread enrolled when it missed.
                crate::hot_counter::enroll();
                let run = dispatch.batch(batch, permit, self.alive.clone());
                dispatch.spawner.spawn(run);
            }
        }
    }

    /// Waits until a batch should be taken: the queue holds a full one, the
    /// delay since the oldest queued item has passed, or the queue is closed;
    /// says which. `None` once the queue is closed and drained. Items are only
    /// counted here, not taken, so that the request completing a batch can
    /// take it.
    async fn gather(&self, deadline: &mut Deadline) -> Option<Take> {
        let limits = &self.dispatch.limits;
        let cap = limits.max_batch_size;
        let zero_delay = limits.max_delay.is_zero();
        let leading = || self.dispatch.leading.load(Ordering::Acquire);
        loop {
            let seen = self.queued.pending();
            let take = if seen.len >= cap {
                Some(Take::Full)
            } else if seen.closed || (seen.len > 0 && zero_delay && !leading()) {
                Some(Take::Any)
            } else {
                None
            };
            if let Some(take) = take {
                deadline.finish();
                return (seen.len > 0).then_some(take);
            }
            if seen.len == 0 {
                // Empty: a request took the batch, or nothing came yet.
                deadline.finish();
                self.queued.ready(1).await;
                continue;
            }
            if zero_delay {
                // A request is gathering a batch (`gather_yields`) and takes
                // what queued when it starts: taking it first would split
                // the burst into batches of a key or two. Wait for a full
                // batch, or for the request to start (it nudges), but not
                // for ever: a leader kept without being polled (the loser of
                // a `select`) would hold up every request of the loader.
                deadline.start_at(crate::clock::since_origin(), LEADER_GRACE);
                let started = pin!(self.queued.ready_while(cap, leading));
                let graced = matches!(
                    select(started, pin!(deadline.wait())).await,
                    Either::Right(_)
                );
                if graced && self.queued.pending().len > 0 {
                    return Some(Take::Any);
                }
                continue;
            }
            // Counted from the oldest item: later items never push it back.
            deadline.start_at(seen.first_at, limits.max_delay);
            // Sleeps until a full batch is queued, not per item.
            let full = pin!(self.queued.ready(cap));
            if let Either::Right(_) = select(full, pin!(deadline.wait())).await {
                let due = Take::Due(seen.first_at);
                if due.holds(self.queued.pending(), cap) {
                    return Some(due);
                }
            }
        }
    }

    fn is_forced(&self) -> bool {
        self.forced.requested.load(Ordering::SeqCst)
    }

    /// Forced stop: everything still queued goes back to the handle.
    async fn hand_back(self) {
        // `stop` closes after the queue, so once this returns nothing more
        // can be pushed and the drain below is complete.
        drop(self.stop_keeper);
        let _ = self.stopped.recv().await;
        let mut hand_back = lock(&self.forced.handed_back);
        if hand_back.claimants == 0 {
            return; // nobody waits for them: dropping answers their callers
        }
        hand_back.items.extend(self.queued.take_all());
    }
}

/// Why the collector takes a batch.
#[derive(Clone, Copy)]
enum Take {
    /// A full batch is queued.
    Full,
    /// The window of the batch whose oldest item arrived then has passed.
    Due(Duration),
    /// Whatever is queued: the queue is closed, or the delay is zero.
    Any,
}

impl Take {
    /// Whether the reason still holds for the queue as it is `now`: a
    /// request may have taken the batch meanwhile.
    fn holds(self, now: Pending, cap: usize) -> bool {
        match self {
            Take::Full => now.len >= cap,
            Take::Due(first_at) => now.len > 0 && now.first_at == first_at,
            Take::Any => true,
        }
    }
}

/// The collector's end of the queue. If an executor drops the collector
/// mid-way, this closes the queue and drops what is still in it, so every
/// waiting caller is answered `Closed` instead of waiting forever.
pub(super) struct Intake<T>(pub(super) Arc<Backlog<T>>);

impl<T> std::ops::Deref for Intake<T> {
    type Target = Backlog<T>;

    fn deref(&self) -> &Backlog<T> {
        &self.0
    }
}

impl<T> Drop for Intake<T> {
    fn drop(&mut self) {
        self.0.close();
        drop(self.0.take_all());
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
    use futures::FutureExt;

    use std::future::Future;

    use super::*;
    use crate::core::{in_flight_slots, start, BatchLimits, Queue};
    use crate::spawn::BoxFuture;
    use crate::trace::BatchSpan;

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
        ) -> impl Future<Output = ()> + crate::MaybeSend + 'static {
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
            Self::with_yields(max_batch_size, max_in_flight, 1)
        }

        fn with_yields(max_batch_size: usize, max_in_flight: usize, gather_yields: usize) -> Self {
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
                gather_yields,
                max_in_flight,
                max_queued: None,
            };
            let queue = start(
                recorder.clone(),
                limits,
                Arc::new(spawner),
                in_flight_slots(&limits),
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
    fn a_leading_caller_gathers_what_queues_during_its_yields() {
        let mut context = std::task::Context::from_waker(futures::task::noop_waker_ref());
        for yields in 0..4 {
            let harness = Harness::with_yields(100, 10, yields);
            let Ok(mut lead) = harness.queue.try_lead(1) else {
                panic!("an idle loader lets the caller lead");
            };
            // One more item queues after each poll. The collector never runs
            // in this harness; on a live executor it leaves them to the
            // leader too (see the next test).
            for next in 2..=yields as u32 + 2 {
                assert!(lead.poll_unpin(&mut context).is_pending());
                harness.push([next]);
            }
            let batches = harness.recorder.batches.lock().unwrap().clone();
            let gathered: Vec<u32> = (1..=yields as u32 + 1).collect();
            assert_eq!(batches, [gathered], "gather_yields({yields})");
        }
    }

    #[test]
    fn the_collector_leaves_what_queues_to_a_gathering_leader_then_takes_the_rest() {
        let mut context = std::task::Context::from_waker(futures::task::noop_waker_ref());
        let mut harness = Harness::new(4, 10);
        let Ok(mut lead) = harness.queue.try_lead(1) else {
            panic!("an idle loader lets the caller lead");
        };
        assert!(lead.poll_unpin(&mut context).is_pending(), "its one yield");
        harness.push([2, 3]);
        harness.settle();
        assert!(harness.sizes().is_empty(), "left to the leader");
        assert!(lead.poll_unpin(&mut context).is_pending(), "its batch runs");
        // Once the leader started, what queues is the collector's, whether
        // it comes before or after the collector looks again.
        harness.push([4]);
        harness.settle();
        harness.push([5]);
        harness.settle();
        let batches = harness.recorder.batches.lock().unwrap().clone();
        assert_eq!(batches, [vec![1, 2, 3], vec![4], vec![5]]);
    }

    #[test]
    fn a_caller_queueing_many_leads_what_is_left_once_whole_batches_have_gone() {
        let mut context = std::task::Context::from_waker(futures::task::noop_waker_ref());
        let mut harness = Harness::new(4, 10);
        let mut lead = harness.queue.try_lead_many().expect("an idle loader");
        assert!(harness.queue.try_lead_many().is_none(), "one leader");
        // Its own items, then those of calls polled while it yields: the
        // collector leaves them to it, and whole batches go as usual.
        harness.push([1, 2, 3]);
        assert!(lead.poll_unpin(&mut context).is_pending(), "its one yield");
        harness.push([4, 5, 6]);
        harness.settle();
        assert_eq!(harness.sizes(), [4], "the whole batch, nothing more");
        assert!(lead.poll_unpin(&mut context).is_pending(), "its batch runs");
        // Once it started, what queues is the collector's.
        harness.push([7]);
        harness.settle();
        let batches = harness.recorder.batches.lock().unwrap().clone();
        assert_eq!(batches, [vec![1, 2, 3, 4], vec![5, 6], vec![7]]);
    }

    #[test]
    fn a_caller_queueing_many_does_not_lead_when_nothing_would_be_gathered() {
        let no_yields = Harness::with_yields(4, 10, 0);
        assert!(no_yields.queue.try_lead_many().is_none());
        let batches_of_one = Harness::new(1, 10);
        assert!(batches_of_one.queue.try_lead_many().is_none());
    }

    #[test]
    fn a_lead_of_many_left_with_nothing_runs_nothing_and_gives_back_its_slot() {
        let mut context = std::task::Context::from_waker(futures::task::noop_waker_ref());
        let mut harness = Harness::new(4, 2);
        let mut lead = harness.queue.try_lead_many().expect("an idle loader");
        harness.push(1..=4);
        harness.settle();
        assert!(lead.poll_unpin(&mut context).is_pending(), "its one yield");
        assert!(lead.poll_unpin(&mut context).is_ready(), "nothing to run");
        assert_eq!(harness.sizes(), [4]);
        // One slot is the running batch's; the lead's is free again.
        assert!(harness.queue.try_lead(9).is_ok());
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
            gather_yields: 1,
            max_in_flight: 1,
            max_queued: None,
        };
        let recorder = Arc::new(Recorder {
            batches: Mutex::default(),
            release: async_channel::unbounded().1,
        });
        start(
            recorder,
            limits,
            Arc::new(|_| {}),
            in_flight_slots(&limits),
            Arc::default(),
            None,
        )
    }
}
