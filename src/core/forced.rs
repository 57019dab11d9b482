//! The state of a forced shutdown (`shutdown_now`), shared by the queue and
//! the collector.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use crate::unpoisoned::lock;

/// What a forced stop hands back, and how many `shutdown_now` calls are
/// waiting to take it. With none waiting (the calls were dropped), the items
/// are dropped instead of kept, so their callers are answered `Closed`.
pub(super) struct HandBack<T> {
    pub(super) items: Vec<T>,
    pub(super) claimants: usize,
}

/// One waiting `shutdown_now` call.
pub(super) struct Claimant<'a, T>(&'a Mutex<HandBack<T>>);

impl<'a, T> Claimant<'a, T> {
    pub(super) fn new(hand_back: &'a Mutex<HandBack<T>>) -> Self {
        lock(hand_back).claimants += 1;
        Self(hand_back)
    }

    pub(super) fn take(self) -> Vec<T> {
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

/// A forced shutdown's state, shared by the handle and the collector.
pub(super) struct Forced<T> {
    pub(super) requested: AtomicBool,
    /// Items the collector held or found queued when it stopped.
    pub(super) handed_back: Mutex<HandBack<T>>,
}
