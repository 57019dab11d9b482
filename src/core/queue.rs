//! The handle side of the core: the queue callers push into, the wiring that
//! starts a collector behind it, and the trait the layers implement.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender, WeakSender};
use async_lock::{Semaphore, SemaphoreGuardArc};

use super::backlog::{Backlog, Pushed};
use super::collector::{Collector, Intake};
use super::dispatch::{Dispatch, Lead};
use super::forced::{Claimant, Forced, HandBack};
use super::BatchLimits;
use crate::spawn::Spawner;
use crate::stats::Counters;
use crate::trace::BatchSpan;
use crate::MaybeSend;
use crate::MaybeSync;

/// What a batch does; implemented by the fetcher and executor layers.
///
/// `run` must answer every item's caller, or drop the item so that its drop
/// answers `Closed`: the core never looks inside items.
pub(crate) trait RunBatch: MaybeSend + MaybeSync + 'static {
    type Item: MaybeSend + 'static;

    fn run(
        self: Arc<Self>,
        batch: Vec<Self::Item>,
        span: BatchSpan,
    ) -> impl Future<Output = ()> + MaybeSend + 'static;
}

/// Splits a batch of pairs into its firsts (which a backend call takes as a
/// slice) and its seconds, collected in place: the seconds reuse the batch's
/// allocation, so a batch costs one allocation less.
pub(crate) fn split_pairs<A, B>(batch: Vec<(A, B)>) -> (Vec<A>, Vec<B>) {
    let mut firsts = Vec::with_capacity(batch.len());
    let seconds = batch
        .into_iter()
        .map(|(first, second)| {
            firsts.push(first);
            second
        })
        .collect();
    (firsts, seconds)
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
    items: Arc<Backlog<R::Item>>,
    dispatch: Arc<Dispatch<R>>,
    /// Lets a caller run a batch itself without keeping the loader alive.
    alive: WeakSender<()>,
    /// Closed by a forced shutdown, after `items`: wakes the collector.
    stop: Sender<()>,
    forced: Arc<Forced<R::Item>>,
    /// Never receives: reports "closed" once the collector has exited.
    collector_done: Receiver<()>,
    /// Never receives: reports "closed" once the collector and every batch
    /// (spawned or run by a caller) have dropped their senders, i.e. all
    /// work is done.
    finished: Receiver<()>,
}

impl<R: RunBatch> Queue<R> {
    /// Lets the caller run the next batch itself, starting with `item`, when
    /// that is the fastest answer: the delay is zero, nothing is queued, no
    /// other caller is leading and an in-flight slot is free. This skips two
    /// task hops (to the collector, then to a batch task). Hands the item
    /// back otherwise.
    ///
    /// The returned future yields `gather_yields` times (once by default),
    /// so that loads polled meanwhile (a `join_all`) queue rather than lead,
    /// then takes what is still queued into its batch and runs it. If it is
    /// dropped first, the batch is spawned instead, so every caller in it is
    /// still answered.
    // Inlined: with a non-zero delay, every request's call is one check.
    #[inline]
    pub(crate) fn try_lead(&self, item: R::Item) -> Result<Lead<R>, R::Item> {
        match self.claim_lead() {
            Some((permit, alive)) => Ok(Lead::gathering(
                &self.dispatch,
                vec![item],
                permit,
                alive,
                true,
            )),
            None => Err(item),
        }
    }

    /// [`try_lead`](Self::try_lead) for a caller about to queue many items
    /// (`load_many`, `execute_many`), called before it queues the first:
    /// the batch starts empty, the collector leaves the queue to it, and
    /// when it starts it takes what is queued, the caller's items and those
    /// of the calls polled while it yielded. Its caller's items that fill
    /// whole batches go in those batches, as usual.
    pub(crate) fn try_lead_many(&self) -> Option<Lead<R>> {
        // It leads to gather while it yields: with no yields, or batches of
        // one that each item completes, there is nothing to gather.
        let limits = &self.dispatch.limits;
        if limits.gather_yields == 0 || limits.max_batch_size == 1 {
            return None;
        }
        let (permit, alive) = self.claim_lead()?;
        Some(Lead::gathering(
            &self.dispatch,
            Vec::new(),
            permit,
            alive,
            true,
        ))
    }

    /// Raises `leading` and takes an in-flight slot, when the delay is zero,
    /// nothing is queued, no other caller leads and a slot is free.
    #[inline]
    fn claim_lead(&self) -> Option<(SemaphoreGuardArc, Sender<()>)> {
        let dispatch = &self.dispatch;
        // A caller already leading is seen without the queue's lock: in a
        // burst, the loads that join its batch then lock the queue once.
        let leading = || dispatch.leading.load(Ordering::Relaxed);
        if !dispatch.limits.max_delay.is_zero() || leading() || !self.items.is_idle() {
            return None;
        }
        if dispatch.leading.swap(true, Ordering::AcqRel) {
            return None;
        }
        let slot = dispatch.in_flight.try_acquire_arc();
        let (Some(permit), Some(alive)) = (slot, self.alive.upgrade()) else {
            dispatch.leading.store(false, Ordering::Release);
            // The collector may have seen the flag and left the queue alone.
            self.items.nudge();
            return None;
        };
        Some((permit, alive))
    }

    /// Queues `item` if there is room, or hands it back. If the item
    /// completes a batch and an in-flight slot is free, the caller gets that
    /// batch (the oldest queued items, usually its own among them) to run on
    /// its own task: the requests of a burst then fetch where they were
    /// made, with no hop to the collector or to a batch task. Dropping the
    /// batch unpolled spawns it.
    pub(crate) fn push(&self, item: R::Item) -> Result<Option<Lead<R>>, Refused<R::Item>> {
        self.push_then(item, || {})
    }

    /// [`push`](Self::push), calling `then` once `item` is queued and
    /// before the batch it may have completed is taken: a caller can let go
    /// of locks of its own there, once the item is in the queue, rather
    /// than hold them while a batch is taken. Not called if the item is
    /// refused.
    pub(crate) fn push_then(
        &self,
        item: R::Item,
        then: impl FnOnce(),
    ) -> Result<Option<Lead<R>>, Refused<R::Item>> {
        let pushed = self.items.push(item)?;
        then();
        Ok(self.take_full(pushed))
    }

    /// Queues `item`, waiting for room; hands it back if the queue closes.
    /// Like [`push`](Self::push), may hand the caller a full batch to run.
    pub(crate) async fn push_waiting(&self, item: R::Item) -> Result<Option<Lead<R>>, R::Item> {
        Ok(self.take_full(self.items.push_waiting(item).await?))
    }

    /// After a push: the full batch it completed, if this caller can run
    /// it; otherwise the collector is rung to take it.
    fn take_full(&self, pushed: Pushed) -> Option<Lead<R>> {
        if pushed == Pushed::Queued {
            return None;
        }
        let dispatch = &self.dispatch;
        let lead = (|| {
            let permit = dispatch.in_flight.try_acquire_arc()?;
            let alive = self.alive.upgrade()?;
            let cap = dispatch.limits.max_batch_size;
            let mut batch = Vec::new();
            self.items.fill_if(&mut batch, cap, |now| now.len >= cap);
            // Empty: the collector took the batch first.
            (!batch.is_empty()).then(|| Lead::gathering(dispatch, batch, permit, alive, false))
        })();
        if lead.is_none() {
            self.items.ring();
        }
        lead
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

    /// Reports "closed" once the collector and every batch, spawned or run
    /// by a caller, are done (it never receives anything).
    pub(crate) fn finished(&self) -> Receiver<()> {
        self.finished.clone()
    }

    /// Stops taking items, without waiting for the drain.
    pub(crate) fn stop_taking(&self) {
        self.items.close();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.items.is_closed()
    }
}

impl<R: RunBatch> Drop for Queue<R> {
    /// The last handle is gone: the collector dispatches what is queued and
    /// exits.
    fn drop(&mut self) {
        self.items.close();
    }
}

/// Starts the collector for `runner` on `spawner`. Its batches take their
/// slots from `in_flight`, which loaders may share (the groups of a grouped
/// loader do); see [`in_flight_slots`].
pub(crate) fn start<R: RunBatch>(
    runner: Arc<R>,
    limits: BatchLimits,
    spawner: Arc<dyn Spawner>,
    in_flight: Arc<Semaphore>,
    counters: Arc<Counters>,
    label: Option<Arc<str>>,
) -> Queue<R> {
    let items = Arc::new(Backlog::new(
        limits.max_queued,
        limits.max_batch_size,
        !limits.max_delay.is_zero(),
    ));
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
        in_flight,
        leading: AtomicBool::new(false),
        queued: items.clone(),
    });
    let weak_alive = alive.downgrade();
    let collector = Collector {
        dispatch: dispatch.clone(),
        // Wrapped before the future exists, so even an unpolled collector
        // that an executor drops answers what is queued.
        queued: Intake(items.clone()),
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

/// The in-flight slots of one loader, `limits.max_in_flight` of them.
pub(crate) fn in_flight_slots(limits: &BatchLimits) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(limits.max_in_flight))
}

#[cfg(test)]
mod tests {
    use super::split_pairs;

    #[test]
    fn split_pairs_keeps_order_and_reuses_the_batch() {
        // Pairs twice the size of their second half, so the reuse needs no
        // shrinking of the allocation, whatever the allocator.
        let batch: Vec<(u64, u64)> = (0..100).map(|i| (i, i * 2)).collect();
        let allocation = batch.as_ptr() as usize;
        let (firsts, seconds) = split_pairs(batch);
        assert_eq!(firsts, (0..100).collect::<Vec<u64>>());
        assert_eq!(seconds, (0..100).map(|i| i * 2).collect::<Vec<u64>>());
        assert_eq!(seconds.as_ptr() as usize, allocation, "collected in place");
    }
}
