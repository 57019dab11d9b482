//! The answer to one `execute` call: written once by its batch, read once by
//! its caller.
//!
//! A `futures` oneshot serves many shapes of use (cancellation both ways,
//! polling the sender), and pays for it in atomic operations on both sides.
//! Here the batch only writes and the caller only reads, so one small mutex
//! over the slot is enough: sending locks it once, and a caller that waits
//! locks it once to park and once to take the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::unpoisoned::lock;

enum Slot<T> {
    /// No answer yet; the caller's waker once it has waited.
    Empty(Option<Waker>),
    Answered(T),
    /// Answer taken, or the sender dropped without one.
    Gone,
}

/// The writing side, carried with the value into its batch. Dropping it
/// without sending ends the wait with `None`.
pub(crate) struct ReplySender<T> {
    /// Taken by `send`, so that its drop need not lock again.
    slot: Option<Arc<Mutex<Slot<T>>>>,
}

/// The reading side: resolves to the answer, or `None` if none will come.
pub(crate) struct ReplyReceiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

pub(crate) fn reply<T>() -> (ReplySender<T>, ReplyReceiver<T>) {
    let slot = Arc::new(Mutex::new(Slot::Empty(None)));
    let sender = ReplySender {
        slot: Some(slot.clone()),
    };
    (sender, ReplyReceiver { slot })
}

impl<T> ReplySender<T> {
    /// Delivers `answer` and wakes the caller if it waits. An answer nobody
    /// waits for any more is dropped with the slot.
    pub(crate) fn send(mut self, answer: T) {
        self.settle(Slot::Answered(answer));
    }

    fn settle(&mut self, settled: Slot<T>) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        // Only this sender moves the slot out of `Empty`, once; the lock is
        // released at the end of the statement, before the wake.
        let before = std::mem::replace(&mut *lock(&slot), settled);
        if let Slot::Empty(Some(waiter)) = before {
            waiter.wake();
        }
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        // Unsent: the caller must not wait for ever.
        self.settle(Slot::Gone);
    }
}

impl<T> Drop for ReplyReceiver<T> {
    fn drop(&mut self) {
        // A caller that gave up must not keep its task's waker alive (nor
        // be woken) until the batch answers. With the sender gone, as after
        // every answer read, nobody can wake it and the lock is skipped.
        if Arc::strong_count(&self.slot) == 1 {
            return;
        }
        let waiter = match &mut *lock(&self.slot) {
            Slot::Empty(waiter) => waiter.take(),
            _ => None,
        };
        drop(waiter);
    }
}

impl<T> Future for ReplyReceiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = lock(&self.slot);
        if let Slot::Empty(waiter) = &mut *slot {
            if !waiter.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waiter = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(match std::mem::replace(&mut *slot, Slot::Gone) {
            Slot::Answered(answer) => Some(answer),
            Slot::Empty(_) | Slot::Gone => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_counter::WakeCounter;
    use futures::FutureExt;

    #[test]
    fn an_answer_sent_before_the_wait_is_read_at_once() {
        let (sender, receiver) = reply();
        sender.send(7);
        assert_eq!(receiver.now_or_never(), Some(Some(7)));
    }

    #[test]
    fn a_waiting_caller_is_woken_once_with_its_answer() {
        let (sender, mut receiver) = reply();
        let (wakes, waker) = WakeCounter::new();
        let mut context = Context::from_waker(&waker);
        assert!(receiver.poll_unpin(&mut context).is_pending());
        assert!(
            receiver.poll_unpin(&mut context).is_pending(),
            "polled again"
        );
        assert_eq!(wakes.wakes(), 0);
        sender.send("done");
        assert_eq!(wakes.wakes(), 1);
        assert_eq!(receiver.poll_unpin(&mut context), Poll::Ready(Some("done")));
    }

    #[test]
    fn the_latest_waker_is_the_one_woken() {
        let (sender, mut receiver) = reply::<u8>();
        let ((first, first_waker), (second, second_waker)) =
            (WakeCounter::new(), WakeCounter::new());
        let mut polled_by = |waker| receiver.poll_unpin(&mut Context::from_waker(waker));
        assert!(polled_by(&first_waker).is_pending());
        assert!(polled_by(&second_waker).is_pending());
        sender.send(1);
        assert_eq!((first.wakes(), second.wakes()), (0, 1));
    }

    #[test]
    fn a_sender_dropped_unsent_ends_the_wait_with_none() {
        let (sender, mut receiver) = reply::<u8>();
        let (wakes, waker) = WakeCounter::new();
        let mut context = Context::from_waker(&waker);
        assert!(receiver.poll_unpin(&mut context).is_pending());
        drop(sender);
        assert_eq!(wakes.wakes(), 1);
        assert_eq!(receiver.poll_unpin(&mut context), Poll::Ready(None));
    }

    #[test]
    fn a_caller_that_gives_up_lets_go_of_its_waker() {
        let (sender, mut receiver) = reply::<u8>();
        let (wakes, waker) = WakeCounter::new();
        assert!(receiver
            .poll_unpin(&mut Context::from_waker(&waker))
            .is_pending());
        drop((waker, receiver));
        assert_eq!(Arc::strong_count(&wakes), 1, "the slot kept no waker");
        sender.send(1);
        assert_eq!(wakes.wakes(), 0, "nobody woken for nothing");
    }

    #[test]
    fn an_answer_nobody_waits_for_is_dropped() {
        let answer = Arc::new(());
        let (sender, receiver) = reply();
        drop(receiver);
        sender.send(answer.clone());
        assert_eq!(Arc::strong_count(&answer), 1, "freed with the slot");
    }

    #[test]
    fn answers_cross_threads() {
        for _ in 0..1_000 {
            let (sender, receiver) = reply();
            let writer = std::thread::spawn(move || sender.send(5u64));
            assert_eq!(futures::executor::block_on(receiver), Some(5));
            writer.join().unwrap();
        }
    }
}
