//! A write-once result that many callers await: one batch answers, every
//! caller that joined the key reads the answer.
//!
//! The [`Resolver`] is the single writing side and travels with the key into a
//! batch. Dropping it unanswered (a batch task dropped by a shutting-down
//! executor, a queue torn down) answers "abandoned", so no waiter can hang.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::unpoisoned::lock;

struct Shared<T> {
    /// `None` once set means the resolver was dropped unanswered.
    answer: OnceLock<Option<T>>,
    wakers: Mutex<Wakers>,
    /// Which batch carries this key (0: none yet); lets a batch recognise its
    /// own entries in the identity map.
    batch: AtomicU64,
}

/// The reading side; cheap to clone.
pub(crate) struct Promise<T> {
    shared: Arc<Shared<T>>,
}

/// The writing side; exactly one exists per promise.
pub(crate) struct Resolver<T> {
    shared: Arc<Shared<T>>,
}

pub(crate) fn promise<T>() -> (Resolver<T>, Promise<T>) {
    let shared = Arc::new(Shared {
        answer: OnceLock::new(),
        wakers: Mutex::new(Wakers::default()),
        batch: AtomicU64::new(0),
    });
    let promise = Promise {
        shared: shared.clone(),
    };
    (Resolver { shared }, promise)
}

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Promise<T> {
    /// Waits for the answer; gives the promise back when the resolver was
    /// dropped unanswered. Takes the promise by value: cloning it would touch
    /// the reference count the batch's task is touching too.
    pub(crate) fn wait(self) -> Wait<T> {
        Wait {
            promise: self,
            slot: None,
        }
    }

    /// True once answered or abandoned.
    pub(crate) fn is_settled(&self) -> bool {
        self.shared.answer.get().is_some()
    }

    pub(crate) fn batch(&self) -> u64 {
        self.shared.batch.load(Ordering::Relaxed)
    }

    /// Answers through the reading side. The first answer wins; waiters are
    /// woken when the [`Resolver`] is dropped, so a batch can answer many keys
    /// under a lock and wake them all after releasing it.
    pub(crate) fn answer(&self, value: T) {
        let _ = self.shared.answer.set(Some(value));
    }

    pub(crate) fn same_as(&self, other: &Promise<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Resolver<T> {
    /// Marks the promise as carried by batch `id` (non-zero).
    pub(crate) fn assign_batch(&self, id: u64) {
        self.shared.batch.store(id, Ordering::Relaxed);
    }

    pub(crate) fn is_settled(&self) -> bool {
        self.shared.answer.get().is_some()
    }

    pub(crate) fn answer(&self, value: T) {
        let _ = self.shared.answer.set(Some(value));
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        let _ = self.shared.answer.set(None);
        let wakers = std::mem::take(&mut *lock(&self.shared.wakers));
        wakers.wake_all();
    }
}

/// The wakers of a promise's waiters, one slot per waiter. Most promises
/// have one waiter, so slot 0 is stored inline and costs no allocation. A
/// waiter that goes away frees its slot for the next one, so waiters that
/// come and go (a load raced against a timeout, in a loop) do not pile up.
///
/// Kept small, since every key in flight allocates a promise: a count of
/// free slots and where to start looking for one, instead of a list of
/// them, took a promise of a `u64` result from 128 bytes to 112 (with its
/// reference counts), and 10,000-key bursts about 5% faster (scratch
/// harness, tokio; not isolated from the fast path in `wake_all`).
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    more: Vec<Option<Waker>>,
    /// How many slots of `more` are free: searched for only when some are.
    vacant: u32,
    /// Where in `more` the search for a free slot starts: none is before
    /// it, so a waiter that keeps coming and going finds its old slot at
    /// once however many others wait.
    lowest_vacant: u32,
}

impl Wakers {
    /// Stores `waker` in `slot` (or a new slot) and returns the slot.
    fn register(&mut self, slot: Option<usize>, waker: &Waker) -> usize {
        let slot = slot.unwrap_or_else(|| self.vacant_slot());
        let stored = match slot {
            0 => &mut self.first,
            index => &mut self.more[index - 1],
        };
        match stored {
            Some(stored) if stored.will_wake(waker) => {}
            _ => *stored = Some(waker.clone()),
        }
        slot
    }

    fn vacant_slot(&mut self) -> usize {
        if self.first.is_none() {
            return 0;
        }
        if self.vacant > 0 {
            let free = |from: usize| {
                let after = self.more.get(from..)?.iter().position(Option::is_none);
                after.map(|after| from + after)
            };
            // From the start too, should more than `u32::MAX` waiters ever
            // have pushed the hint past what it can hold.
            if let Some(index) = free(self.lowest_vacant as usize).or_else(|| free(0)) {
                self.vacant -= 1;
                self.lowest_vacant = u32::try_from(index + 1).unwrap_or(u32::MAX);
                return index + 1;
            }
        }
        self.more.push(None);
        self.more.len()
    }

    fn release(&mut self, slot: usize) {
        match slot {
            0 => self.first = None,
            index => {
                if let Some(stored @ Some(_)) = self.more.get_mut(index - 1) {
                    *stored = None;
                    self.vacant += 1;
                    let index = u32::try_from(index - 1).unwrap_or(u32::MAX);
                    self.lowest_vacant = self.lowest_vacant.min(index);
                }
            }
        }
    }

    fn wake_all(self) {
        // Most promises are answered before anyone waits.
        if self.first.is_none() && self.more.is_empty() {
            return;
        }
        self.first
            .into_iter()
            .chain(self.more.into_iter().flatten())
            .for_each(Waker::wake);
    }
}

/// Future returned by [`Promise::wait`].
pub(crate) struct Wait<T> {
    promise: Promise<T>,
    /// This waiter's index in the waker list once registered.
    slot: Option<usize>,
}

impl<T: Clone> Wait<T> {
    fn ready(&self, answer: &Option<T>) -> Poll<Result<T, Promise<T>>> {
        Poll::Ready(match answer {
            Some(answer) => Ok(answer.clone()),
            None => Err(self.promise.clone()),
        })
    }
}

impl<T: Clone> Future for Wait<T> {
    type Output = Result<T, Promise<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = &this.promise.shared;
        // Lock-free once answered: late joiners never touch the mutex.
        if let Some(answer) = shared.answer.get() {
            return this.ready(answer);
        }
        let mut wakers = lock(&shared.wakers);
        // Re-check under the lock: the resolver takes the wakers under it
        // after setting the answer, so either we see the answer or it sees us.
        if let Some(answer) = shared.answer.get() {
            drop(wakers);
            return this.ready(answer);
        }
        this.slot = Some(wakers.register(this.slot, cx.waker()));
        Poll::Pending
    }
}

impl<T> Drop for Wait<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let shared = &self.promise.shared;
            if shared.answer.get().is_none() {
                lock(&shared.wakers).release(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_counter::WakeCounter;
    use futures::FutureExt;

    #[test]
    fn answer_reaches_every_waiter() {
        let (resolver, promise) = promise::<u32>();
        let mut first = promise.clone().wait();
        let mut second = promise.clone().wait();
        assert!(first.poll_unpin(&mut noop_context()).is_pending());
        resolver.answer(5);
        drop(resolver);
        assert_eq!(answer(&mut first), Some(5));
        assert_eq!(answer(&mut second), Some(5));
        assert_eq!(answer(promise.wait()), Some(5));
    }

    #[test]
    fn dropped_resolver_abandons() {
        let (resolver, promise) = promise::<u32>();
        let waiter = promise.clone().wait();
        drop(resolver);
        assert!(promise.is_settled());
        let abandoned = futures::executor::block_on(waiter).unwrap_err();
        assert!(abandoned.same_as(&promise));
    }

    #[test]
    fn first_answer_wins() {
        let (resolver, promise) = promise::<u32>();
        promise.answer(1);
        resolver.answer(2);
        drop(resolver);
        assert_eq!(answer(promise.wait()), Some(1));
    }

    #[test]
    fn departed_waiters_free_their_slots() {
        let (_resolver, promise) = promise::<u32>();
        let mut kept = promise.clone().wait();
        assert!(kept.poll_unpin(&mut noop_context()).is_pending());
        for _ in 0..1_000 {
            let mut passing = promise.clone().wait();
            assert!(passing.poll_unpin(&mut noop_context()).is_pending());
        }
        let wakers = promise.shared.wakers.lock().unwrap();
        assert!(wakers.first.is_some());
        assert_eq!(
            wakers.more.len(),
            1,
            "one slot, reused by every passing waiter"
        );
    }

    #[test]
    fn waiters_coming_and_going_anywhere_reuse_slots_and_are_all_woken() {
        let (resolver, promise) = promise::<u32>();
        // Up to 64 waiters at once, each with a counter of its own.
        let mut places: Vec<Option<(Wait<u32>, Arc<WakeCounter>)>> = Vec::new();
        places.resize_with(64, || None);
        let mut seed = 7u64;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let place = &mut places[(seed >> 33) as usize % 64];
            match place.take() {
                Some(leaving) => drop(leaving),
                None => {
                    let mut wait = promise.clone().wait();
                    let (wakes, waker) = WakeCounter::new();
                    assert!(wait
                        .poll_unpin(&mut Context::from_waker(&waker))
                        .is_pending());
                    *place = Some((wait, wakes));
                }
            }
            let wakers = promise.shared.wakers.lock().unwrap();
            let free = wakers.more.iter().filter(|slot| slot.is_none()).count();
            assert_eq!(wakers.vacant as usize, free, "the count is exact");
            let lowest = wakers.lowest_vacant as usize;
            assert!(wakers.more.iter().take(lowest).all(Option::is_some));
            assert!(wakers.more.len() < 64, "never more slots than waiters");
        }
        drop(resolver);
        for (_, wakes) in places.into_iter().flatten() {
            assert_eq!(wakes.wakes(), 1, "every waiter left is woken once");
        }
    }

    fn answer<W: Future<Output = Result<u32, Promise<u32>>>>(wait: W) -> Option<u32> {
        futures::executor::block_on(wait).ok()
    }

    fn noop_context() -> Context<'static> {
        Context::from_waker(futures::task::noop_waker_ref())
    }
}
