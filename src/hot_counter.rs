//! Counters bumped once per request (a cache hit, a join, a queued request)
//! or once per batch (its count, its keys, its backend time), sharded per
//! thread.
//!
//! A shared `fetch_add` is a `lock xadd` on every hit (about 6 ns of a 46 ns
//! hit), and threads hitting the same loader would fight over its cache line.
//! Instead each thread owns one of [`SHARDS`] cache-line-padded slots, where
//! it is the only writer, so it adds with a plain load and store. Threads
//! beyond the shard count share one more slot with `fetch_add`. A sum over
//! the slots is exact once the adds are done.
//!
//! A thread's shard index is process-wide (the same slot in every counter),
//! taken by [`enroll`] and given back when the thread exits, so that pools
//! that churn threads keep getting exclusive shards. `add` never enrolls:
//! any call on its path, even a cold one, made the compiler spill the hit's
//! answer to the stack around it, costing more than the `lock xadd` saved.
//! Loaders enroll on their slow paths (a miss, `load_many`, `prime`),
//! executors when they queue a value, and both when a thread starts or runs
//! a batch, so the workers of a runtime enroll before their hits add up;
//! until then a thread adds to the shared slot.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::unpoisoned::lock;

/// Exclusive slots per counter set; threads beyond this share one slot.
pub(crate) const SHARDS: usize = 16;

/// The index of a thread with no exclusive slot (any index `>= SHARDS`).
const SHARED: usize = SHARDS;
/// Not enrolled yet (also `>= SHARDS`: it adds to the shared slot).
const UNASSIGNED: usize = usize::MAX;

/// `N` counters, summed over the slots of every thread.
#[derive(Debug)]
pub(crate) struct HotCounters<const N: usize> {
    owned: [Slot<N>; SHARDS],
    shared: Slot<N>,
}

/// One thread's counts, on a cache line of its own.
#[derive(Debug)]
#[repr(align(64))]
struct Slot<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Slot<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Default for HotCounters<N> {
    fn default() -> Self {
        Self {
            owned: std::array::from_fn(|_| Slot::default()),
            shared: Slot::default(),
        }
    }
}

impl<const N: usize> HotCounters<N> {
    /// Adds `amount` to counter `which` (`< N`): to this thread's own slot
    /// once it has [`enroll`]ed, to the shared one otherwise.
    #[inline]
    pub(crate) fn add(&self, which: usize, amount: u64) {
        match self.owned.get(INDEX.with(Cell::get)) {
            Some(slot) => {
                // Only this thread writes this slot: no read-modify-write.
                let counter = &slot.0[which];
                let count = counter.load(Ordering::Relaxed);
                counter.store(count.wrapping_add(amount), Ordering::Relaxed);
            }
            None => {
                self.shared.0[which].fetch_add(amount, Ordering::Relaxed);
            }
        }
    }

    /// Counter `which`, summed over every slot.
    pub(crate) fn sum(&self, which: usize) -> u64 {
        let read = |slot: &Slot<N>| slot.0[which].load(Ordering::Relaxed);
        self.owned
            .iter()
            .chain([&self.shared])
            .map(read)
            .fold(0, u64::wrapping_add)
    }
}

thread_local! {
    /// This thread's shard index; `const` and without drop, so reading it is
    /// one thread-local load, and it stays readable while the thread exits.
    static INDEX: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// Gives the index back when the thread exits.
    static RELEASE: Release = const { Release };
}

/// Which indices below [`SHARDS`] a living thread holds, one bit each. The
/// mutex also orders a leaving thread's last stores before the next owner's
/// loads of the same slots.
static TAKEN: Mutex<u32> = Mutex::new(0);

struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        // Adds from later thread-local destructors go to the shared slot.
        let index = INDEX.with(|index| index.replace(SHARED));
        if index < SHARDS {
            give_back(&mut lock(&TAKEN), index);
        }
    }
}

/// Gives this thread an exclusive slot in every [`HotCounters`] if it has
/// none yet and one is free. Cheap once done: call it on slow paths.
pub(crate) fn enroll() {
    if INDEX.with(Cell::get) == UNASSIGNED {
        assign();
    }
}

#[cold]
fn assign() {
    // Registering the release first: a thread already past its destructors
    // takes no index it could never give back.
    let index = match RELEASE.try_with(|_| ()) {
        Ok(()) => take(&mut lock(&TAKEN)),
        Err(_) => SHARED,
    };
    INDEX.with(|slot| slot.set(index));
}

/// The lowest free index, or [`SHARED`] when all are taken.
fn take(taken: &mut u32) -> usize {
    let index = (!*taken).trailing_zeros() as usize;
    if index >= SHARDS {
        return SHARED;
    }
    *taken |= 1 << index;
    index
}

fn give_back(taken: &mut u32, index: usize) {
    *taken &= !(1 << index);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::thread;

    /// The tests below count on how many threads hold an index: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn enrolled_index() -> usize {
        enroll();
        INDEX.with(Cell::get)
    }

    #[test]
    fn sums_are_exact_with_more_threads_than_shards() {
        let _serial = lock(&SERIAL);
        const THREADS: u64 = 2 * SHARDS as u64;
        const ADDS: u64 = 20_000;
        let counters = Arc::new(HotCounters::<2>::default());
        // All alive at once, so some must share the fallback slot.
        let barrier = Arc::new(Barrier::new(THREADS as usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (counters, barrier) = (counters.clone(), barrier.clone());
                thread::spawn(move || {
                    // Every thread takes its index before any can exit.
                    let index = enrolled_index();
                    barrier.wait();
                    for _ in 0..ADDS {
                        counters.add(0, 1);
                        counters.add(1, 3);
                    }
                    index
                })
            })
            .collect();
        let indices: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(indices.iter().any(|&index| index >= SHARDS));
        let mut owned: Vec<usize> = indices.into_iter().filter(|&i| i < SHARDS).collect();
        let before = owned.len();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(owned.len(), before, "an index was held by two threads");
        assert_eq!(counters.sum(0), THREADS * ADDS);
        assert_eq!(counters.sum(1), 3 * THREADS * ADDS);
    }

    #[test]
    fn an_exiting_thread_gives_its_index_back() {
        let _serial = lock(&SERIAL);
        let counters = Arc::new(HotCounters::<1>::default());
        // Far more threads than shards, one after another: each gets an
        // exclusive index only if the previous ones gave theirs back.
        for _ in 0..4 * SHARDS {
            let counters = counters.clone();
            let index = thread::spawn(move || {
                let index = enrolled_index();
                counters.add(0, 2);
                index
            })
            .join()
            .unwrap();
            assert!(index < SHARDS, "thread got no exclusive shard");
        }
        assert_eq!(counters.sum(0), 2 * 4 * SHARDS as u64);
    }

    #[test]
    fn a_thread_adds_to_the_shared_slot_until_it_enrolls() {
        let _serial = lock(&SERIAL);
        let counters = Arc::new(HotCounters::<1>::default());
        let inner = counters.clone();
        thread::spawn(move || {
            inner.add(0, 5);
            assert_eq!(inner.shared.0[0].load(Ordering::Relaxed), 5);
            let index = enrolled_index();
            assert!(index < SHARDS);
            inner.add(0, 7);
            assert_eq!(inner.owned[index].0[0].load(Ordering::Relaxed), 7);
        })
        .join()
        .unwrap();
        assert_eq!(counters.sum(0), 12);
    }

    #[test]
    fn indices_are_reused_lowest_first() {
        let mut taken = 0;
        let first: Vec<usize> = (0..SHARDS).map(|_| take(&mut taken)).collect();
        assert_eq!(first, (0..SHARDS).collect::<Vec<_>>());
        assert_eq!(take(&mut taken), SHARED);
        give_back(&mut taken, 5);
        give_back(&mut taken, 2);
        assert_eq!((take(&mut taken), take(&mut taken)), (2, 5));
        assert_eq!(take(&mut taken), SHARED);
    }
}
