//! The identity map: for every key, its stored answer (a value, or a
//! remembered absence) or the promise of the fetch in flight for it.
//!
//! Answers live in a [`Store`] (pluggable: bounded, expiring) behind an async
//! `RwLock` that is only ever held for a few map operations, never across a
//! backend call, so a cache hit never waits for a fetch. The lock keeps a
//! standing reader while no writer is at work, which makes a hit's release
//! cheap (see [`pinned_lock`](crate::pinned_lock)). Fetches in flight
//! live beside it in a table the store never sees, so eviction cannot break
//! deduplication.
//!
//! Loads only ever take the shared lock: a hit reads the store; a miss then
//! joins or claims the key's fetch in the in-flight table, under that
//! table's own short, synchronous lock, held for a few keys at most. Only
//! answering or failing a batch, `prime`, `clear` and `clear_all` take the
//! exclusive lock, so a miss never holds up hits, and no reader sees a fetch
//! between leaving the in-flight table and reaching the store.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use async_lock::RwLockReadGuard;

use crate::pinned_lock::{PinnedRwLock, PinnedWriteGuard};
use crate::promise::{promise, Promise, Resolver};
use crate::store::{Hasher, MapStore, Store};
use crate::unpoisoned::lock;
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

/// What the store keeps per key: `Some(value)`, or `None` for a key the
/// fetcher did not deliver.
pub(crate) type BoxStore<K, V> = Box<dyn Store<K, Option<V>>>;

/// What a caller of a key eventually gets.
pub(crate) type Outcome<V, E> = Result<V, LoadError<E>>;

type Pending<V, E> = Promise<Outcome<V, E>>;

/// Where a known key stands for one caller.
pub(crate) enum Known<V, E> {
    /// Answered from the map.
    Done(Outcome<V, E>),
    /// A fetch for this key is queued or running: wait for it.
    Join(Pending<V, E>),
}

/// A fresh in-flight entry: the resolver goes with the key into a batch, the
/// promise to the caller.
pub(crate) struct Claim<V, E> {
    pub(crate) resolver: Resolver<Outcome<V, E>>,
    pub(crate) promise: Pending<V, E>,
}

/// The store of a map. The default `MapStore` is called directly, so its
/// lookup inlines into the hit path; other stores are called through `dyn`.
pub(crate) enum Stored<K, V> {
    Map(MapStore<K, Option<V>>),
    Other(BoxStore<K, V>),
    /// `cache(false)`.
    Nothing,
}

impl<K, V> Stored<K, V>
where
    K: Hash + Eq + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    fn as_store(&self) -> Option<&dyn Store<K, Option<V>>> {
        match self {
            Stored::Map(map) => Some(map),
            Stored::Other(store) => Some(&**store),
            Stored::Nothing => None,
        }
    }

    fn as_store_mut(&mut self) -> Option<&mut dyn Store<K, Option<V>>> {
        match self {
            Stored::Map(map) => Some(map),
            Stored::Other(store) => Some(&mut **store),
            Stored::Nothing => None,
        }
    }

    fn get(&self, key: &K) -> Option<Option<V>> {
        self.as_store()?.get(key)
    }

    fn contains(&self, key: &K) -> bool {
        self.as_store().is_some_and(|store| store.contains(key))
    }

    fn len(&self) -> usize {
        self.as_store().map_or(0, |store| store.len())
    }

    fn insert(&mut self, key: K, value: Option<V>) {
        if let Some(store) = self.as_store_mut() {
            store.insert(key, value);
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some(store) = self.as_store_mut() {
            store.remove(key);
        }
    }

    fn clear(&mut self) {
        if let Some(store) = self.as_store_mut() {
            store.clear();
        }
    }
}

/// Fetches queued or running, by key.
type InFlight<K, V, E> = HashMap<K, Pending<V, E>, Hasher>;

/// How many keys' room the in-flight table keeps when it shrinks: a few
/// batches of the default size.
const KEPT_IN_FLIGHT: usize = 1024;

pub(crate) struct IdentityMap<K, V, E> {
    /// Keeps a standing reader while no writer is at work, so that a hit's
    /// release is never the last reader's (see `pinned_lock`).
    stored: PinnedRwLock<Stored<K, V>>,
    /// Locked only by a holder of `stored`'s lock (shared or exclusive), so
    /// that no reader sees a fetch between leaving this table and reaching
    /// the store, and so that a writer, alone under the exclusive lock,
    /// never waits for it.
    in_flight: Mutex<InFlight<K, V, E>>,
    /// The value of an undelivered key; `None`: it is `NotFound`.
    default: Option<Default<K, V>>,
}

/// The map under its shared lock, as loads see it. Stored answers are read
/// at once; the in-flight table is locked when a key that is not stored is
/// joined or claimed, and stays locked until [`release`](Self::release) or
/// the reader is dropped, so that `load_many` claims many keys per lock.
pub(crate) struct Reader<'a, K, V, E> {
    /// Declared first so it is released before the shared lock.
    claims: Option<MutexGuard<'a, InFlight<K, V, E>>>,
    stored: RwLockReadGuard<'a, Stored<K, V>>,
    in_flight: &'a Mutex<InFlight<K, V, E>>,
}

/// What [`IdentityMap::try_lookup`] found.
pub(crate) enum Lookup<'a, K, V, E> {
    Stored(Outcome<V, E>),
    /// Not stored: the shared lock, still held.
    Missing(Reader<'a, K, V, E>),
    Busy,
}

/// The map under its exclusive lock.
struct Writer<'a, K, V, E> {
    in_flight: MutexGuard<'a, InFlight<K, V, E>>,
    stored: PinnedWriteGuard<'a, Stored<K, V>>,
}

impl<K, V, E> IdentityMap<K, V, E>
where
    K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    pub(crate) fn new(stored: Stored<K, V>, default: Option<Default<K, V>>) -> Self {
        Self {
            stored: PinnedRwLock::new(stored),
            in_flight: Mutex::new(HashMap::default()),
            default,
        }
    }

    /// The hot path: `key`'s stored answer if the shared lock is free right
    /// now, else the lock itself for the caller to join or claim the key
    /// under, or [`Lookup::Busy`] when a writer holds or awaits the lock
    /// (then [`read`](Self::read) waits for it). A hit releases the lock
    /// here and returns only the answer.
    #[inline]
    pub(crate) fn try_lookup(&self, key: &K) -> Lookup<'_, K, V, E> {
        let Some(stored) = self.stored.try_read() else {
            return Lookup::Busy;
        };
        match stored_answer(&stored, key) {
            Some(outcome) => Lookup::Stored(outcome),
            None => Lookup::Missing(self.reader(stored)),
        }
    }

    /// The shared lock, without waiting when it is free.
    pub(crate) async fn read(&self) -> Reader<'_, K, V, E> {
        let stored = self.stored.read().await;
        self.reader(stored)
    }

    fn reader<'a>(&'a self, stored: RwLockReadGuard<'a, Stored<K, V>>) -> Reader<'a, K, V, E> {
        Reader {
            claims: None,
            stored,
            in_flight: &self.in_flight,
        }
    }

    /// How many answers the store holds.
    pub(crate) async fn stored(&self) -> usize {
        self.read().await.stored.len()
    }

    /// The exclusive lock, without waiting when it is free.
    async fn write(&self) -> Writer<'_, K, V, E> {
        let stored = self.stored.write().await;
        Writer {
            in_flight: lock(&self.in_flight),
            stored,
        }
    }

    /// Stores `value` unless the key is known or in flight; `false` when
    /// nothing was stored (including when the store keeps nothing).
    pub(crate) async fn prime(&self, key: K, value: V) -> bool {
        let mut map = self.write().await;
        let in_flight = map.in_flight.get(&key).is_some_and(is_pending);
        if in_flight || map.stored.contains(&key) {
            return false;
        }
        map.stored.insert(key.clone(), Some(value));
        map.stored.contains(&key)
    }

    /// Forgets `key`. A fetch already running for it still answers its
    /// callers but is no longer joined or stored; a key still queued stays, as
    /// its fetch has not started and will see the state after this clear.
    pub(crate) async fn clear(&self, key: &K) {
        let mut map = self.write().await;
        map.stored.remove(key);
        if map
            .in_flight
            .get(key)
            .is_some_and(|pending| !is_queued(pending))
        {
            map.in_flight.remove(key);
        }
    }

    /// Forgets every key, as [`clear`](Self::clear) does for one.
    pub(crate) async fn clear_all(&self) {
        let mut map = self.write().await;
        map.stored.clear();
        map.in_flight.retain(|_, pending| is_queued(pending));
    }

    /// Marks the keys of a batch about to be fetched as carried by `batch`,
    /// under the shared lock: `clear` and `clear_all` read the marks under
    /// the exclusive one, so each sees exactly which fetches started. (With
    /// the lock's standing reader, taking it is one compare-and-swap and
    /// releasing it one subtraction.)
    pub(crate) async fn start_batch(&self, batch: u64, resolvers: &[Resolver<Outcome<V, E>>]) {
        let _reader = self.read().await;
        for resolver in resolvers {
            resolver.assign_batch(batch);
        }
    }

    /// Answers batch `batch` from the values its fetcher delivered: delivered
    /// keys get their value, the rest the default value or `NotFound`.
    /// Entries still belonging to this batch are stored. Waiters wake when the
    /// caller drops the resolvers, after the lock is released. Returns how
    /// many keys were not delivered.
    pub(crate) async fn deliver(
        &self,
        batch: u64,
        keys: &[K],
        resolvers: &[Resolver<Outcome<V, E>>],
        values: Vec<(K, V)>,
    ) -> u64 {
        let mut missing = 0;
        let mut map = self.write().await;
        // Values whose entry is not this batch's: a key cleared while in
        // flight (its callers still get the value), or one never asked for.
        // The first value of a key delivered twice counts, as `Values` says.
        let mut unclaimed: HashMap<K, V> = HashMap::new();
        for (key, value) in values {
            match map.in_flight.entry(key) {
                Entry::Occupied(entry) if owned_by(entry.get(), batch) => {
                    let (key, pending) = entry.remove_entry();
                    map.settle(key, &pending, Ok(value));
                }
                Entry::Occupied(entry) => {
                    unclaimed.entry(entry.key().clone()).or_insert(value);
                }
                Entry::Vacant(entry) => {
                    unclaimed.entry(entry.into_key()).or_insert(value);
                }
            }
        }
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
            match map.take_owned(key, batch) {
                Some((key, pending)) => map.settle(key, &pending, outcome),
                None => resolver.answer(outcome),
            }
        }
        map.shrink_in_flight();
        missing
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
        let mut map = self.write().await;
        for (key, resolver) in keys.iter().zip(resolvers) {
            map.take_owned(key, batch);
            resolver.answer(Err(error.clone()));
        }
        map.shrink_in_flight();
    }
}

impl<K, V, E> Reader<'_, K, V, E>
where
    K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    /// The stored answer of `key`, if any.
    pub(crate) fn stored(&self, key: &K) -> Option<Outcome<V, E>> {
        stored_answer(&self.stored, key)
    }

    /// For a key not stored: the fetch in flight to join, or a new in-flight
    /// entry the caller must queue.
    pub(crate) fn join_or_claim(&mut self, key: &K) -> Result<Known<V, E>, Claim<V, E>> {
        let in_flight = self.in_flight();
        match in_flight.get_mut(key) {
            Some(pending) if is_pending(pending) => Ok(Known::Join(pending.clone())),
            // A settled promise still in flight was abandoned (its batch was
            // dropped unanswered): fetch again.
            Some(abandoned) => {
                let (resolver, promise) = promise();
                *abandoned = promise.clone();
                Err(Claim { resolver, promise })
            }
            None => {
                let (resolver, promise) = promise();
                in_flight.insert(key.clone(), promise.clone());
                Err(Claim { resolver, promise })
            }
        }
    }

    /// Removes the in-flight entry of `key` if it is still `promise`'s (used
    /// when a claimed key could not be queued, or its batch was abandoned).
    pub(crate) fn forget(&mut self, key: &K, promise: &Pending<V, E>) {
        let in_flight = self.in_flight();
        if in_flight
            .get(key)
            .is_some_and(|current| current.same_as(promise))
        {
            in_flight.remove(key);
        }
    }

    /// Unlocks the in-flight table, keeping the shared lock: between keys,
    /// so that a long list of keys does not hold it throughout.
    pub(crate) fn release(&mut self) {
        self.claims = None;
    }

    fn in_flight(&mut self) -> &mut InFlight<K, V, E> {
        let table = self.in_flight;
        self.claims.get_or_insert_with(|| lock(table))
    }
}

impl<K, V, E> Writer<'_, K, V, E>
where
    K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    /// Takes the in-flight entry of `key` out if batch `batch` carries it.
    /// Taken out and put back if it is another fetch's: one lookup, and no
    /// assumption that a key hashes the same way twice.
    fn take_owned(&mut self, key: &K, batch: u64) -> Option<(K, Pending<V, E>)> {
        let (key, pending) = self.in_flight.remove_entry(key)?;
        if owned_by(&pending, batch) {
            return Some((key, pending));
        }
        self.in_flight.insert(key, pending);
        None
    }

    /// Gives back the memory of a burst of keys once it is answered. Room
    /// for [`KEPT_IN_FLIGHT`] keys stays: batches that each fill and empty
    /// the table would otherwise free it and grow it again, rehashing at
    /// every doubling, for every batch.
    fn shrink_in_flight(&mut self) {
        let (len, capacity) = (self.in_flight.len(), self.in_flight.capacity());
        // Twice the kept room: a table already sized for it (a capacity a
        // little under 2,048) is not asked to shrink after every batch.
        if capacity > 2 * KEPT_IN_FLIGHT && len * 4 < capacity {
            self.in_flight.shrink_to((len * 2).max(KEPT_IN_FLIGHT));
        }
    }

    /// Answers the callers of a finished in-flight entry (already taken out
    /// of `in_flight`) and stores what they got.
    fn settle(&mut self, key: K, pending: &Pending<V, E>, outcome: Outcome<V, E>) {
        match &outcome {
            Ok(value) => self.stored.insert(key, Some(value.clone())),
            Err(_) => self.stored.insert(key, None),
        }
        pending.answer(outcome);
    }
}

/// The stored answer of `key`, if any.
#[inline]
fn stored_answer<K, V, E>(stored: &Stored<K, V>, key: &K) -> Option<Outcome<V, E>>
where
    K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    let stored = match stored {
        // The default store's hit, with nothing in between.
        Stored::Map(map) => map.peek(key).cloned(),
        other => other.get(key),
    };
    stored.map(|stored| stored.ok_or(LoadError::NotFound))
}

/// Not yet answered: callers can still join it.
fn is_pending<V, E>(pending: &Pending<V, E>) -> bool {
    !pending.is_settled()
}

/// In flight but not yet handed to the fetcher.
fn is_queued<V, E>(pending: &Pending<V, E>) -> bool {
    pending.batch() == 0 && is_pending(pending)
}

fn owned_by<V, E>(pending: &Pending<V, E>, batch: u64) -> bool {
    pending.batch() == batch && is_pending(pending)
}
