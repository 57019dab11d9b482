//! An async `RwLock` that holds one read guard of its own whenever no
//! writer is at work, so that the guards of other readers are never the
//! last one out.
//!
//! Why: async-lock's read unlock, when it releases the last reader,
//! notifies the event writers wait on, and that notification (event-listener
//! 5.4) takes a lock even when nobody listens. One-at-a-time readers, such as
//! sequential cache hits, are always the last reader, so each paid it: the
//! hit cost about as much again as the map lookup. With a standing reader,
//! a hit is one compare-and-swap to take the lock and one subtraction to
//! release it. Writers put the standing reader down before they ask for the
//! lock (a writer waits for every reader), and the last writer to finish
//! picks it up again.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use async_lock::{RwLock, RwLockReadGuard, RwLockReadGuardArc, RwLockWriteGuard};

use crate::unpoisoned::lock;

pub(crate) struct PinnedRwLock<T> {
    lock: Arc<RwLock<T>>,
    pin: Mutex<Pin<T>>,
}

/// The standing reader, and how many writers are waiting or writing.
struct Pin<T> {
    writers: usize,
    standing: Option<RwLockReadGuardArc<T>>,
}

/// The exclusive lock. The standing reader comes back once the last writer
/// drops its guard.
pub(crate) struct PinnedWriteGuard<'a, T> {
    /// Declared first: released before the standing reader comes back.
    guard: RwLockWriteGuard<'a, T>,
    _writing: Writing<'a, T>,
}

/// One writer's share of the standing reader's absence.
struct Writing<'a, T>(&'a PinnedRwLock<T>);

impl<T> PinnedRwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        let lock = Arc::new(RwLock::new(value));
        let standing = lock.try_read_arc();
        Self {
            lock,
            pin: Mutex::new(Pin {
                writers: 0,
                standing,
            }),
        }
    }

    /// The shared lock if no writer holds or awaits it.
    #[inline]
    pub(crate) fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.lock.try_read()
    }

    /// The shared lock, once no writer holds or awaits it.
    pub(crate) async fn read(&self) -> RwLockReadGuard<'_, T> {
        match self.lock.try_read() {
            Some(guard) => guard,
            None => self.lock.read().await,
        }
    }

    /// The exclusive lock. Dropping the future while it waits gives the
    /// standing reader back like dropping the guard does.
    pub(crate) async fn write(&self) -> PinnedWriteGuard<'_, T> {
        let writing = self.start_writing();
        let guard = match self.lock.try_write() {
            Some(guard) => guard,
            None => self.lock.write().await,
        };
        PinnedWriteGuard {
            guard,
            _writing: writing,
        }
    }

    fn start_writing(&self) -> Writing<'_, T> {
        let standing = {
            let mut pin = lock(&self.pin);
            pin.writers += 1;
            pin.standing.take()
        };
        // Released outside the pin's lock: it may wake a waiting writer.
        drop(standing);
        Writing(self)
    }

    #[cfg(test)]
    fn is_pinned(&self) -> bool {
        lock(&self.pin).standing.is_some()
    }
}

impl<T> Drop for Writing<'_, T> {
    fn drop(&mut self) {
        let map = self.0;
        let mut pin = lock(&map.pin);
        pin.writers -= 1;
        if pin.writers == 0 {
            // Every writer counts itself before it asks for the lock, so
            // with none counted the lock is free of writers and this
            // succeeds; if it ever did not, readers would only pay the
            // notification again until the next writer is done.
            pin.standing = map.lock.try_read_arc();
        }
    }
}

impl<T> Deref for PinnedWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for PinnedWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_writer_gets_the_lock_and_the_reader_stands_again() {
        let lock = PinnedRwLock::new(1);
        assert!(lock.is_pinned());
        futures::executor::block_on(async {
            let mut guard = lock.write().await;
            assert!(!lock.is_pinned(), "put down while writing");
            *guard = 2;
        });
        assert!(lock.is_pinned(), "back once the writer is done");
        assert_eq!(*lock.try_read().unwrap(), 2);
    }

    #[test]
    fn a_writer_waiting_for_a_reader_gives_the_standing_one_back_done_or_dropped() {
        for finishes in [true, false] {
            let lock = PinnedRwLock::new(0);
            let reader = lock.try_read().unwrap();
            let mut writing = Box::pin(lock.write());
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            assert!(
                writing.poll_unpin(&mut cx).is_pending(),
                "waits for the reader"
            );
            if finishes {
                drop(reader);
                assert!(writing.poll_unpin(&mut cx).is_ready());
                drop(writing);
            } else {
                drop(writing);
                drop(reader);
            }
            assert!(lock.is_pinned(), "finished: {finishes}");
            assert!(lock.try_read().is_some(), "no writer left waiting");
        }
    }

    #[test]
    fn writers_and_readers_on_many_threads_all_finish() {
        let lock = Arc::new(PinnedRwLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for round in 0..2_000 {
                        futures::executor::block_on(async {
                            if (round + thread) % 3 == 0 {
                                *lock.write().await += 1;
                            } else {
                                let _ = *lock.read().await;
                            }
                        });
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(lock.is_pinned());
        let writes: u64 = (0..4u64)
            .map(|thread| {
                (0..2_000u64)
                    .filter(|round| (round + thread) % 3 == 0)
                    .count() as u64
            })
            .sum();
        assert_eq!(*lock.try_read().unwrap(), writes);
    }
}
