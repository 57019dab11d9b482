//! The queue where items wait for a batch, until the collector or the request
//! completing a batch takes them, a batch at a time.
//!
//! A push is one short std mutex section and no wake-up unless the collector
//! asked for one: it says how many items it waits for (one when idle, a full
//! batch while gathering), so a burst wakes it at most once per batch
//! instead of once per item, as a channel would. A push that completes a
//! batch reports it ([`Pushed::Full`]) instead of ringing: its caller takes
//! the batch and runs it itself if it can, and rings only if it cannot.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use async_lock::Semaphore;
use futures::task::AtomicWaker;

use super::Refused;
use crate::unpoisoned::lock;

pub(crate) struct Backlog<T> {
    state: Mutex<State<T>>,
    /// The collector's waker, rung when what it waits for has arrived.
    doorbell: AtomicWaker,
    /// Free places when `max_queued` bounds the queue: a push takes one,
    /// and whoever takes items gives their places back.
    room: Option<Semaphore>,
    /// A push that brings the queue to a multiple of this reports a full
    /// batch.
    batch_size: usize,
    /// Whether the arrival of a batch's first item is timed (a non-zero
    /// `max_delay`).
    timed: bool,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// The collector sleeps until this many items are queued; 0 when it is
    /// not asleep.
    wake_at: usize,
    /// If timed, when the first item of each batch-sized block of the queue
    /// arrived (`since_origin`'s clock), oldest first: one clock read per
    /// batch. Every take with a non-zero delay is whole blocks (a full batch
    /// from the front) or the whole queue, so the front stamp is always the
    /// arrival of the oldest item left.
    stamps: VecDeque<Duration>,
}

/// What a push left behind.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The queue now holds a multiple of the batch size: the caller should
    /// take a full batch (`fill_if`) or, if it cannot run one,
    /// [`Backlog::ring`].
    Full,
}

/// The queue as the collector sees it, read under one lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) len: usize,
    pub(crate) closed: bool,
    /// When the oldest queued item arrived; zero when empty or untimed.
    pub(crate) first_at: Duration,
}

impl Pending {
    fn of<T>(state: &State<T>) -> Self {
        Self {
            len: state.items.len(),
            closed: state.closed,
            first_at: state.stamps.front().copied().unwrap_or_default(),
        }
    }
}

/// Once empty, a queue holding more than this much room gives it back, so a
/// burst leaves no memory behind.
const KEPT_CAPACITY: usize = 1024;

/// Enough places to let every waiting pusher through when the queue closes
/// (they then find it closed); far from overflowing the semaphore's count.
const EVERYONE: usize = usize::MAX >> 2;

impl<T> Backlog<T> {
    /// A queue holding at most `max_queued` items, if given, that reports
    /// every `batch_size`-th item and, if `timed`, stamps each batch's first.
    pub(crate) fn new(max_queued: Option<usize>, batch_size: usize, timed: bool) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                wake_at: 0,
                stamps: VecDeque::new(),
            }),
            doorbell: AtomicWaker::new(),
            room: max_queued.map(Semaphore::new),
            batch_size: batch_size.max(1),
            timed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }

    /// Queues `item` if the queue is open and has room.
    pub(crate) fn push(&self, item: T) -> Result<Pushed, Refused<T>> {
        if let Some(room) = &self.room {
            match room.try_acquire() {
                Some(place) => place.forget(),
                None if self.is_closed() => return Err(Refused::Closed(item)),
                None => return Err(Refused::Full(item)),
            }
        }
        self.enqueue(item).map_err(Refused::Closed)
    }

    /// Queues `item`, waiting for room; hands it back if the queue closes.
    pub(crate) async fn push_waiting(&self, item: T) -> Result<Pushed, T> {
        if let Some(room) = &self.room {
            room.acquire().await.forget();
        }
        self.enqueue(item)
    }

    /// Adds `item` (its place already taken) and rings the collector if it
    /// now has what it waits for, unless the item completes a batch: that
    /// is left to the caller (see [`Pushed::Full`]).
    fn enqueue(&self, item: T) -> Result<Pushed, T> {
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        // The item's place in its batch-sized block.
        let place = state.items.len() % self.batch_size;
        if self.timed && place == 0 {
            state.stamps.push_back(crate::clock::since_origin());
        }
        state.items.push_back(item);
        if place + 1 == self.batch_size {
            return Ok(Pushed::Full);
        }
        self.ring_if_awaited(state);
        Ok(Pushed::Queued)
    }

    /// Rings the collector if it waits for what is queued now: after a
    /// [`Pushed::Full`] whose batch the caller could not take.
    pub(crate) fn ring(&self) {
        self.ring_if_awaited(self.lock());
    }

    /// Rings the collector, after releasing the lock, if what it waits for
    /// has arrived (or the queue closed).
    fn ring_if_awaited(&self, state: MutexGuard<'_, State<T>>) {
        if state.wake_at != 0 && (state.items.len() >= state.wake_at || state.closed) {
            self.wake_collector(state);
        }
    }

    /// Wakes the collector, after releasing the lock, if it waits at all.
    fn wake_collector(&self, mut state: MutexGuard<'_, State<T>>) {
        let waiting = std::mem::take(&mut state.wake_at) != 0;
        drop(state);
        if waiting {
            self.doorbell.wake();
        }
    }

    /// How many items are queued, whether the queue is closed, and when the
    /// oldest arrived.
    pub(crate) fn pending(&self) -> Pending {
        Pending::of(&self.lock())
    }

    /// Waits until at least `wanted` items are queued or the queue is closed.
    pub(crate) async fn ready(&self, wanted: usize) {
        self.ready_while(wanted, || true).await
    }

    /// [`ready`](Self::ready) while `held` holds, then as soon as anything
    /// is queued. `held` is read under the queue's lock, and whoever ends it
    /// calls [`nudge`](Self::nudge) afterwards, so no wake-up is lost.
    pub(crate) async fn ready_while(&self, wanted: usize, held: impl Fn() -> bool) {
        poll_fn(|cx| {
            let mut state = self.lock();
            let wanted = if held() { wanted.max(1) } else { 1 };
            if state.items.len() >= wanted || state.closed {
                state.wake_at = 0;
                return Poll::Ready(());
            }
            // Registered under the lock, so a push after this sees `wake_at`.
            self.doorbell.register(cx.waker());
            state.wake_at = wanted;
            Poll::Pending
        })
        .await
    }

    /// Wakes the collector if it waits, whatever it waits for: after
    /// something a [`ready_while`](Self::ready_while) condition reads
    /// changed.
    pub(crate) fn nudge(&self) {
        self.wake_collector(self.lock());
    }

    /// Moves queued items into `batch`, oldest first, until it holds `cap`.
    pub(crate) fn fill(&self, batch: &mut Vec<T>, cap: usize) {
        self.fill_if(batch, cap, |_| true);
    }

    /// [`fill`](Self::fill), then `release` (what ends a
    /// [`ready_while`](Self::ready_while) condition) and a
    /// [`nudge`](Self::nudge), under one hold of the lock.
    pub(crate) fn fill_and_release(&self, batch: &mut Vec<T>, cap: usize, release: impl FnOnce()) {
        let mut state = self.lock();
        let taken = self.take_into(&mut state, batch, cap);
        release();
        self.wake_collector(state);
        self.give_room(taken);
    }

    /// [`fill`](Self::fill), if `ready` holds of the queue as seen under the
    /// same lock: a decision made on an earlier look may no longer hold.
    pub(crate) fn fill_if(
        &self,
        batch: &mut Vec<T>,
        cap: usize,
        ready: impl FnOnce(Pending) -> bool,
    ) {
        let mut state = self.lock();
        if !ready(Pending::of(&state)) {
            return;
        }
        let taken = self.take_into(&mut state, batch, cap);
        drop(state);
        self.give_room(taken);
    }

    /// Moves items into `batch` under the lock; returns how many.
    fn take_into(&self, state: &mut State<T>, batch: &mut Vec<T>, cap: usize) -> usize {
        let taken = cap.saturating_sub(batch.len()).min(state.items.len());
        batch.extend(state.items.drain(..taken));
        if state.items.is_empty() {
            state.stamps.clear();
        } else {
            let blocks = taken.div_ceil(self.batch_size).min(state.stamps.len());
            state.stamps.drain(..blocks);
        }
        if state.items.is_empty() && state.items.capacity() > KEPT_CAPACITY {
            state.items = VecDeque::new();
        }
        taken
    }

    /// Gives back the places of `taken` items, once out of the lock.
    fn give_room(&self, taken: usize) {
        if let Some(room) = &self.room {
            room.add_permits(taken);
        }
    }

    /// Takes everything still queued.
    pub(crate) fn take_all(&self) -> Vec<T> {
        let mut all = Vec::new();
        self.fill(&mut all, usize::MAX);
        all
    }

    /// Stops taking items; what is queued stays for the collector. Wakes
    /// the collector and every pusher waiting for room.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if std::mem::replace(&mut state.closed, true) {
            return;
        }
        state.wake_at = 0;
        drop(state);
        self.doorbell.wake();
        if let Some(room) = &self.room {
            room.add_permits(EVERYONE);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Open with nothing queued.
    pub(crate) fn is_idle(&self) -> bool {
        let state = self.lock();
        !state.closed && state.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::Context;

    use super::*;
    use crate::wake_counter::WakeCounter;

    #[test]
    fn a_burst_wakes_the_collector_once_per_wanted_amount() {
        let backlog = Backlog::new(None, 100, false);
        let (wakes, waker) = WakeCounter::new();
        let mut context = Context::from_waker(&waker);
        let mut ready = Box::pin(backlog.ready(10));
        assert!(ready.as_mut().poll(&mut context).is_pending());
        for item in 0..9 {
            backlog.push(item).unwrap();
        }
        assert_eq!(wakes.wakes(), 0, "not enough yet");
        backlog.push(9).unwrap();
        backlog.push(10).unwrap();
        assert_eq!(wakes.wakes(), 1, "one ring for the batch");
        assert!(ready.as_mut().poll(&mut context).is_ready());
        let mut batch = Vec::new();
        backlog.fill(&mut batch, 4);
        assert_eq!(batch, [0, 1, 2, 3]);
        assert_eq!(backlog.take_all(), (4..11).collect::<Vec<_>>());
    }

    #[test]
    fn bounded_queue_refuses_when_full_and_frees_room_when_taken() {
        let backlog = Backlog::new(Some(2), 100, false);
        backlog.push(1).unwrap();
        backlog.push(2).unwrap();
        assert!(matches!(backlog.push(3), Err(Refused::Full(3))));
        let mut batch = Vec::new();
        backlog.fill(&mut batch, 1);
        backlog.push(3).unwrap();
        assert!(matches!(backlog.push(4), Err(Refused::Full(4))));
        backlog.close();
        assert!(matches!(backlog.push(4), Err(Refused::Closed(4))));
        assert_eq!(backlog.take_all(), [2, 3], "closing keeps what is queued");
    }

    #[test]
    fn closing_releases_pushers_waiting_for_room() {
        let backlog = Backlog::new(Some(1), 100, false);
        backlog.push(1).unwrap();
        let mut context = Context::from_waker(futures::task::noop_waker_ref());
        let mut waiting = pin!(backlog.push_waiting(2));
        assert!(waiting.as_mut().poll(&mut context).is_pending());
        backlog.close();
        assert_eq!(waiting.as_mut().poll(&mut context), Poll::Ready(Err(2)));
    }

    #[test]
    fn the_oldest_stamp_left_is_the_oldest_item_left() {
        let backlog = Backlog::new(None, 2, true);
        backlog.push(1).unwrap();
        let first = backlog.pending().first_at;
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(backlog.push(2).unwrap(), Pushed::Full);
        assert_eq!(backlog.pending().first_at, first, "2 joined 1's block");
        backlog.push(3).unwrap();
        let mut batch = Vec::new();
        backlog.fill(&mut batch, 2);
        assert_eq!(batch, [1, 2]);
        // 3 arrived after the sleep: its window must not be 1's.
        assert!(backlog.pending().first_at > first);
        backlog.fill(&mut batch, 3);
        assert_eq!(backlog.pending().first_at, Duration::ZERO, "empty");
    }

    #[test]
    fn an_emptied_queue_gives_its_memory_back() {
        let backlog = Backlog::new(None, 100, false);
        for item in 0..100_000 {
            backlog.push(item).unwrap();
        }
        assert_eq!(backlog.take_all().len(), 100_000);
        assert!(backlog.lock().items.capacity() <= KEPT_CAPACITY);
        assert!(backlog.is_idle());
    }
}
