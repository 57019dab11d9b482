//! Locking a `std::sync::Mutex` whatever a panicking holder left behind.
//!
//! The crate's std mutexes guard state that every critical section leaves
//! consistent between single operations (a map insert, a queue push, a
//! counter), and user code that panics under one (a key's `Hash`, a value's
//! `Clone`) fails only its own caller. Poisoning would instead turn one
//! panic into a panic for every later caller, so it is ignored.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
