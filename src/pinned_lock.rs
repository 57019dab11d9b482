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
    use std::future::Future;

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

    /// Checks, once nothing is running, that the lock has exactly one
    /// standing reader and no other: a writer is refused while it stands,
    /// and let in once it is put down.
    fn exactly_one_standing<T>(lock: &PinnedRwLock<T>) {
        assert!(lock.is_pinned(), "the standing reader is there");
        assert!(lock.lock.try_write().is_none(), "it holds the lock");
        let standing = lock.pin.lock().unwrap().standing.take();
        drop(standing);
        assert!(
            lock.lock.try_write().is_some(),
            "no other reader was left behind"
        );
        let mut pin = lock.pin.lock().unwrap();
        assert_eq!(pin.writers, 0);
        pin.standing = lock.lock.try_read_arc();
    }

    fn ready<F: Future + Unpin>(future: &mut F, what: &str) -> F::Output {
        let waker = futures::task::noop_waker();
        match future.poll_unpin(&mut std::task::Context::from_waker(&waker)) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("{what} is still waiting"),
        }
    }

    fn pending<F: Future + Unpin>(future: &mut F, what: &str) {
        let waker = futures::task::noop_waker();
        let polled = future.poll_unpin(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending(), "{what} did not wait");
    }

    #[test]
    fn writers_hand_over_and_cancel_without_losing_the_standing_reader() {
        let lock = PinnedRwLock::new(0);
        // One writer leaves while a second waits: no standing reader until
        // the second is done too.
        let first = futures::executor::block_on(lock.write());
        let mut second = Box::pin(lock.write());
        pending(&mut second, "the second writer");
        drop(first);
        assert!(!lock.is_pinned());
        let guard = ready(&mut second, "the second writer");
        drop(guard);
        exactly_one_standing(&lock);

        // A writer waiting for a reader is dropped while another waits
        // behind it; a reader arriving meanwhile waits for the writer.
        let reader = lock.try_read().unwrap();
        let mut first = Box::pin(lock.write());
        pending(&mut first, "a writer behind a reader");
        let mut second = Box::pin(lock.write());
        pending(&mut second, "a writer behind a writer");
        drop(first);
        assert!(!lock.is_pinned(), "the second writer still counts");
        pending(&mut second, "the second writer, behind the reader");
        let mut late_reader = Box::pin(lock.read());
        pending(&mut late_reader, "a reader behind a writer");
        drop(reader);
        drop(ready(&mut second, "the second writer"));
        drop(ready(&mut late_reader, "the late reader"));
        exactly_one_standing(&lock);

        // Dropped inside another future, as the identity map's writes are.
        async fn write_in(lock: &PinnedRwLock<i32>) {
            *lock.write().await += 1;
        }
        let reader = lock.try_read().unwrap();
        let mut nested = Box::pin(write_in(&lock));
        pending(&mut nested, "a nested writer");
        drop(nested);
        drop(reader);
        exactly_one_standing(&lock);
    }

    #[test]
    fn threads_reading_writing_and_giving_up_never_hang_and_leave_one_standing() {
        const OPERATIONS: u64 = 50_000;
        let lock = Arc::new(PinnedRwLock::new(0u64));
        let threads: Vec<_> = (0..4u64)
            .map(|thread| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    let waker = futures::task::noop_waker();
                    let mut cx = std::task::Context::from_waker(&waker);
                    let mut state = thread.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let mut writes = 0u64;
                    for _ in 0..OPERATIONS {
                        // xorshift: a fixed, varied mix of operations per thread.
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        match state % 6 {
                            0 => {
                                *futures::executor::block_on(lock.write()) += 1;
                                writes += 1;
                            }
                            1 => {
                                // Polled once: written if free, else given up.
                                let mut write = Box::pin(lock.write());
                                if let std::task::Poll::Ready(mut guard) = write.poll_unpin(&mut cx)
                                {
                                    *guard += 1;
                                    writes += 1;
                                }
                            }
                            2 => drop(futures::executor::block_on(lock.read())),
                            3 => drop(Box::pin(lock.read()).poll_unpin(&mut cx)),
                            _ => drop(lock.try_read()),
                        }
                    }
                    writes
                })
            })
            .collect();
        let writes: u64 = threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .sum();
        assert_eq!(*lock.try_read().unwrap(), writes, "no write lost");
        exactly_one_standing(&lock);
    }
}
