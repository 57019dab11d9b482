//! The in-flight slots batches hold: how many batches of a loader (or of
//! every group of a grouped loader) may run at once.
//!
//! Unlike a semaphore built on event-listener, which takes a lock on every
//! release to notify waiters even when nobody waits, a release here looks
//! at a count of waiters first: while slots are free, which is the usual
//! case, taking one is a compare-and-swap and giving it back one atomic
//! addition. Only the collectors ever wait, so waking every waiter on a
//! release costs little and needs no bookkeeping for waiters that left.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::unpoisoned::lock;

pub(crate) struct Slots {
    free: AtomicUsize,
    /// How many wakers `waiters` holds; a release locks it only when some.
    waiting: AtomicUsize,
    waiters: Mutex<Vec<Waker>>,
}

/// One slot, given back when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
}

impl Slots {
    pub(crate) fn new(count: usize) -> Arc<Self> {
        Arc::new(Self {
            free: AtomicUsize::new(count),
            waiting: AtomicUsize::new(0),
            waiters: Mutex::new(Vec::new()),
        })
    }

    /// A free slot, if there is one now.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut free = self.free.load(Ordering::Acquire);
        loop {
            if free == 0 {
                return None;
            }
            match self.free.compare_exchange_weak(
                free,
                free - 1,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Slot {
                        slots: self.clone(),
                    })
                }
                Err(now) => free = now,
            }
        }
    }

    /// Waits for a free slot; the future owns a handle to the slots, so it
    /// borrows nothing. Dropped while waiting, it leaves a stale waker that
    /// the next release wakes once, harmlessly.
    pub(crate) fn take(self: &Arc<Self>) -> impl Future<Output = Slot> + 'static {
        let slots = self.clone();
        poll_fn(move |cx| {
            if let Some(slot) = slots.try_take() {
                return Poll::Ready(slot);
            }
            {
                // A task polled again while still registered is not
                // registered twice, so the list stays as long as the
                // number of tasks waiting.
                let mut waiters = lock(&slots.waiters);
                if !waiters.iter().any(|waiter| waiter.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                    slots.waiting.fetch_add(1, Ordering::SeqCst);
                }
            }
            // Announced, then looked again: a release either comes after
            // the announcement and sees it, or came before and left its
            // slot for this look (both sides are `SeqCst`).
            if slots.free.load(Ordering::SeqCst) > 0 {
                if let Some(slot) = slots.try_take() {
                    return Poll::Ready(slot);
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = &self.slots;
        slots.free.fetch_add(1, Ordering::SeqCst);
        if slots.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let waiters = {
            let mut waiters = lock(&slots.waiters);
            slots.waiting.store(0, Ordering::SeqCst);
            std::mem::take(&mut *waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_counter::WakeCounter;
    use futures::FutureExt;
    use std::task::Context;

    #[test]
    fn slots_are_taken_until_none_is_free_and_come_back_when_dropped() {
        let slots = Slots::new(2);
        let first = slots.try_take().expect("two free");
        let second = slots.try_take().expect("one free");
        assert!(slots.try_take().is_none());
        drop(first);
        let third = slots.try_take().expect("one given back");
        assert!(slots.try_take().is_none());
        drop((second, third));
        assert_eq!(slots.free.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_waiter_is_registered_once_however_often_polled_and_woken_by_the_release() {
        let slots = Slots::new(1);
        let held = slots.try_take().unwrap();
        let (wakes, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        let mut waiting = Box::pin(slots.take());
        for _ in 0..100 {
            assert!(waiting.poll_unpin(&mut cx).is_pending());
        }
        assert_eq!(lock(&slots.waiters).len(), 1);
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 1);
        assert_eq!(wakes.wakes(), 0);
        drop(held);
        assert_eq!(wakes.wakes(), 1);
        assert!(waiting.poll_unpin(&mut cx).is_ready());
    }

    #[test]
    fn a_waiter_that_left_does_not_keep_others_waiting() {
        let slots = Slots::new(1);
        let held = slots.try_take().unwrap();
        let (left_wakes, left_waker) = WakeCounter::new();
        let mut left = Box::pin(slots.take());
        assert!(left
            .poll_unpin(&mut Context::from_waker(&left_waker))
            .is_pending());
        drop(left);
        let (wakes, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        let mut waiting = Box::pin(slots.take());
        assert!(waiting.poll_unpin(&mut cx).is_pending());
        drop(held);
        assert_eq!((left_wakes.wakes(), wakes.wakes()), (1, 1));
        assert!(waiting.poll_unpin(&mut cx).is_ready());
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
        assert!(lock(&slots.waiters).is_empty(), "stale wakers cleared");
    }

    // Native only: real threads.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn threads_taking_and_waiting_never_hold_more_than_the_slots() {
        const SLOTS: usize = 2;
        const THREADS: usize = 6;
        const ROUNDS: usize = 20_000;
        let slots = Slots::new(SLOTS);
        let held = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (slots, held) = (slots.clone(), held.clone());
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        // Half the takes wait, half only try.
                        let slot = match (thread + round) % 2 {
                            0 => futures::executor::block_on(slots.take()),
                            _ => match slots.try_take() {
                                Some(slot) => slot,
                                None => continue,
                            },
                        };
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= SLOTS, "{now} slots held at once");
                        held.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(slots.free.load(Ordering::SeqCst), SLOTS);
    }
}
