//! The identity map: for every key, its value, its remembered absence, or the
//! promise of the fetch in flight for it.
//!
//! The map sits behind an async `RwLock` that is only ever held for a few map
//! operations, never across a backend call, so a cache hit never waits for a
//! fetch. Readers try the lock first and only wait (for the shared lock) when
//! a writer holds or awaits it; only unknown keys take the write lock.

use std::collections::hash_map::{Entry, OccupiedEntry};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use async_lock::{RwLock, RwLockWriteGuard};

use crate::promise::{promise, Promise, Resolver};
use crate::{LoadError, MaybeSend, MaybeSync};

/// Makes the value of a key the fetcher did not deliver (the builder's
/// `default_value` or `default_with`).
pub(crate) trait DefaultFor<K, V>: MaybeSend + MaybeSync {
    fn value_for(&self, key: &K) -> V;
}

impl<K, V, F: Fn(&K) -> V + MaybeSend + MaybeSync> DefaultFor<K, V> for F {
    fn value_for(&self, key: &K) -> V {
        self(key)
    }
}

/// Shared by every identity map of a grouped loader.
pub(crate) type Default<K, V> = Arc<dyn DefaultFor<K, V>>;

/// The read lock was not free without waiting.
#[derive(Debug)]
pub(crate) struct Busy;

/// What a caller of a key eventually gets.
pub(crate) type Outcome<V, E> = Result<V, LoadError<E>>;

enum Slot<V, E> {
    Ready(V),
    /// The fetcher answered without this key.
    Missing,
    Loading(Promise<Outcome<V, E>>),
}

/// Where a known key stands for one caller.
pub(crate) enum Known<V, E> {
    /// Answered from the map.
    Done(Outcome<V, E>),
    /// A fetch for this key is queued or running: wait for it.
    Join(Promise<Outcome<V, E>>),
}

/// A fresh in-flight entry: the resolver goes with the key into a batch, the
/// promise to the caller.
pub(crate) struct Claim<V, E> {
    pub(crate) resolver: Resolver<Outcome<V, E>>,
    pub(crate) promise: Promise<Outcome<V, E>>,
}

/// foldhash instead of SipHash: several times cheaper on the hit path, and
/// still seeded per process so that keys taken from requests cannot be
/// chosen to collide.
type Hasher = foldhash::quality::RandomState;

type Slots<K, V, E> = HashMap<K, Slot<V, E>, Hasher>;

/// The map under its write lock, as callers that queue keys see it.
pub(crate) struct Writer<'a, K, V, E> {
    slots: RwLockWriteGuard<'a, Slots<K, V, E>>,
}

pub(crate) struct IdentityMap<K, V, E> {
    slots: RwLock<Slots<K, V, E>>,
    /// `false` when caching is off: entries live only while in flight.
    keep: bool,
    /// The value of an undelivered key; `None`: it is `NotFound`.
    default: Option<Default<K, V>>,
}

impl<K, V, E> IdentityMap<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    pub(crate) fn new(keep: bool, default: Option<Default<K, V>>) -> Self {
        Self {
            slots: RwLock::new(HashMap::default()),
            keep,
            default,
        }
    }

    /// Answers from the read lock if it is free right now: a hit, a
    /// remembered absence, or a join of the fetch in flight; `Ok(None)` for
    /// an unknown key (the caller then takes the write lock and
    /// [`claim`](Writer::claim)s). `Err(Busy)` when a writer holds or awaits
    /// the lock: then [`read_lookup`](Self::read_lookup) waits for it.
    pub(crate) fn try_lookup(&self, key: &K) -> Result<Option<Known<V, E>>, Busy> {
        let slots = self.slots.try_read().ok_or(Busy)?;
        Ok(lookup(&slots, key))
    }

    /// [`try_lookup`](Self::try_lookup), waiting for the read lock.
    pub(crate) async fn read_lookup(&self, key: &K) -> Option<Known<V, E>> {
        lookup(&*self.slots.read().await, key)
    }

    /// Looks up many keys under one read lock (waiting for it if need be).
    pub(crate) async fn lookup_all(&self, keys: &[K]) -> Vec<Option<Known<V, E>>> {
        let slots = match self.slots.try_read() {
            Some(slots) => slots,
            None => self.slots.read().await,
        };
        keys.iter().map(|key| lookup(&slots, key)).collect()
    }

    /// Takes the write lock, without waiting when it is free.
    pub(crate) async fn writer(&self) -> Writer<'_, K, V, E> {
        Writer {
            slots: self.write().await,
        }
    }

    async fn write(&self) -> RwLockWriteGuard<'_, Slots<K, V, E>> {
        match self.slots.try_write() {
            Some(slots) => slots,
            None => self.slots.write().await,
        }
    }

    /// Stores `value` unless the key is present or in flight; `false` when
    /// nothing was stored (including when caching is off).
    pub(crate) async fn prime(&self, key: K, value: V) -> bool {
        if !self.keep {
            return false;
        }
        let mut slots = self.write().await;
        if lookup(&slots, &key).is_none() {
            slots.insert(key, Slot::Ready(value));
            return true;
        }
        false
    }

    /// Forgets `key`. A fetch already running for it still answers its
    /// callers but is no longer joined or stored; a key still queued stays, as
    /// its fetch has not started and will see the state after this clear.
    pub(crate) async fn clear(&self, key: &K) {
        let mut slots = self.write().await;
        if slots.get(key).is_some_and(|slot| !is_queued(slot)) {
            slots.remove(key);
        }
    }

    /// Forgets every key, as [`clear`](Self::clear) does for one.
    pub(crate) async fn clear_all(&self) {
        self.write().await.retain(|_, slot| is_queued(slot));
    }

    /// Marks the keys of a batch about to be fetched as carried by `batch`.
    /// Done under the lock so that `clear` sees exactly which fetches started.
    pub(crate) async fn start_batch(&self, batch: u64, resolvers: &[Resolver<Outcome<V, E>>]) {
        let _slots = self.write().await;
        for resolver in resolvers {
            resolver.assign_batch(batch);
        }
    }

    /// Answers batch `batch` from the values its fetcher delivered: delivered
    /// keys get their value, the rest the default value or `NotFound`.
    /// Entries still belonging to this batch are stored (or dropped when
    /// caching is off). Waiters wake when the caller drops the resolvers,
    /// after the lock is released. Returns how many keys were not delivered.
    pub(crate) async fn deliver(
        &self,
        batch: u64,
        keys: &[K],
        resolvers: &[Resolver<Outcome<V, E>>],
        values: Vec<(K, V)>,
    ) -> u64 {
        let mut missing = 0;
        let mut slots = self.write().await;
        // Values whose entry is not this batch's: a key cleared while in
        // flight (its callers still get the value), or one never asked for.
        let mut unclaimed = Vec::new();
        for (key, value) in values {
            match slots.entry(key) {
                Entry::Occupied(entry) if owned_by(entry.get(), batch) => {
                    self.settle(entry, Ok(value));
                }
                Entry::Occupied(entry) => unclaimed.push((entry.key().clone(), value)),
                Entry::Vacant(entry) => unclaimed.push((entry.into_key(), value)),
            }
        }
        // Keep the first value of a key delivered twice, as `Values` promises.
        let mut first_unclaimed: HashMap<K, V> = HashMap::new();
        for (key, value) in unclaimed {
            first_unclaimed.entry(key).or_insert(value);
        }
        let mut unclaimed = first_unclaimed;
        for (key, resolver) in keys.iter().zip(resolvers) {
            if resolver.is_settled() {
                continue;
            }
            if let Some(value) = unclaimed.remove(key) {
                resolver.answer(Ok(value));
                continue;
            }
            missing += 1;
            let outcome = match &self.default {
                Some(default) => Ok(default.value_for(key)),
                None => Err(LoadError::NotFound),
            };
            match slots.entry(key.clone()) {
                Entry::Occupied(entry) if owned_by(entry.get(), batch) => {
                    self.settle(entry, outcome);
                }
                _ => resolver.answer(outcome),
            }
        }
        missing
    }

    /// Answers the callers of an in-flight entry and stores what they got
    /// (a value, or a remembered absence), or drops it when caching is off.
    fn settle(&self, mut entry: OccupiedEntry<'_, K, Slot<V, E>>, outcome: Outcome<V, E>) {
        let Slot::Loading(promise) = entry.get() else {
            return;
        };
        if !self.keep {
            promise.answer(outcome);
            entry.remove();
            return;
        }
        let stored = match &outcome {
            Ok(value) => Slot::Ready(value.clone()),
            Err(_) => Slot::Missing,
        };
        promise.answer(outcome);
        entry.insert(stored);
    }

    /// Answers every key of batch `batch` with `error`, storing nothing: the
    /// next load of these keys fetches again.
    pub(crate) async fn fail(
        &self,
        batch: u64,
        keys: &[K],
        resolvers: &[Resolver<Outcome<V, E>>],
        error: LoadError<E>,
    ) {
        let mut slots = self.write().await;
        for (key, resolver) in keys.iter().zip(resolvers) {
            if slots.get(key).is_some_and(|slot| owned_by(slot, batch)) {
                slots.remove(key);
            }
            resolver.answer(Err(error.clone()));
        }
    }
}

impl<K, V, E> Writer<'_, K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// The key's standing, or a new in-flight entry the caller must queue.
    pub(crate) fn claim(&mut self, key: &K) -> Result<Known<V, E>, Claim<V, E>> {
        if let Some(known) = lookup(&self.slots, key) {
            return Ok(known);
        }
        let (resolver, promise) = promise();
        self.slots
            .insert(key.clone(), Slot::Loading(promise.clone()));
        Err(Claim { resolver, promise })
    }

    /// Removes the in-flight entry of `key` if it is still `promise`'s (used
    /// when a claimed key could not be queued, or its batch was abandoned).
    pub(crate) fn forget(&mut self, key: &K, promise: &Promise<Outcome<V, E>>) {
        if let Some(Slot::Loading(current)) = self.slots.get(key) {
            if current.same_as(promise) {
                self.slots.remove(key);
            }
        }
    }
}

fn lookup<K: Hash + Eq, V: Clone, E>(slots: &Slots<K, V, E>, key: &K) -> Option<Known<V, E>> {
    match slots.get(key)? {
        Slot::Ready(value) => Some(Known::Done(Ok(value.clone()))),
        Slot::Missing => Some(Known::Done(Err(LoadError::NotFound))),
        Slot::Loading(promise) if !promise.is_settled() => Some(Known::Join(promise.clone())),
        // A settled promise still in the map was abandoned (its batch was
        // dropped unanswered): treat the key as unknown and fetch again.
        Slot::Loading(_) => None,
    }
}

/// In flight but not yet handed to the fetcher.
fn is_queued<V, E>(slot: &Slot<V, E>) -> bool {
    matches!(slot, Slot::Loading(promise) if promise.batch() == 0 && !promise.is_settled())
}

fn owned_by<V, E>(slot: &Slot<V, E>, batch: u64) -> bool {
    matches!(slot, Slot::Loading(promise) if promise.batch() == batch && !promise.is_settled())
}
