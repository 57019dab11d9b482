//! Where a loader keeps what it fetched: the [`Store`] trait behind the
//! identity map, and the stores anybatch ships.
//!
//! A store holds finished answers only; fetches in flight are tracked by the
//! loader beside it, so a store that evicts or expires an entry never breaks
//! in-flight deduplication. The loader calls every method under its map's
//! lock: [`get`](Store::get) under the shared (read) lock, so that hits run
//! concurrently, and the others under the exclusive one.
//!
//! | store | bound | when |
//! |---|---|---|
//! | [`MapStore`] (default) | none | a per-request loader, or a small fixed key space |
//! | [`LruStore`] | a number of entries | a long-lived loader over many keys, including keys taken from requests |
//! | [`TtlStore`] | an age (and optionally a number of entries) | data that goes stale |
//!
//! # Values: clone or `Arc`
//!
//! Every hit returns a clone of the stored value, made under the shared lock.
//! Values that are cheap to clone (integers, small `Copy` structs, short
//! strings) are best stored as they are: no `Arc`, no extra allocation, and
//! no reference count bouncing between cores. Wrap a value in `Arc<T>` when
//! cloning it allocates or copies much (long strings, `Vec`s, rows with many
//! fields): then a hit costs one atomic increment, whatever the size.
//! `cargo bench --bench stores` measures both.

mod lru;
mod ttl;

use std::collections::HashMap;
use std::hash::Hash;

pub use lru::LruStore;
pub use ttl::TtlStore;

use crate::{MaybeSend, MaybeSync};

/// A cache behind a loader's identity map.
///
/// The loader stores `V = Option<Value>`: `Some` for a fetched value, `None`
/// for a key the fetcher did not deliver (remembered as `NotFound`). A store
/// may drop any entry at any time (evict, expire); the next load of that key
/// is then fetched again.
///
/// ```
/// use anybatch::{BatchFetcher, Fetcher, LruStore, Values};
/// # struct Users;
/// # impl Fetcher for Users {
/// #     type Key = u64; type Value = String; type Error = std::io::Error;
/// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, String>) -> Result<(), Self::Error> {
/// #         values.extend(keys.iter().map(|&key| (key, format!("user {key}")))); Ok(())
/// #     }
/// # }
///
/// # smol::block_on(async {
/// // A process-wide user directory that never holds more than 10,000 users.
/// let users = BatchFetcher::builder(Users).store(LruStore::new(10_000)).build().unwrap();
/// assert_eq!(users.load(7).await.unwrap(), "user 7");
/// assert_eq!(users.cached().await, 1);
/// # });
/// ```
pub trait Store<K, V>: MaybeSend + MaybeSync + 'static {
    /// A clone of the value of `key`, if the store holds it. Called under the
    /// shared lock, possibly from several threads at once.
    fn get(&self, key: &K) -> Option<V>;

    /// True if the store holds `key` (unexpired), without cloning its value
    /// or counting as a use of it. The default calls [`get`](Store::get).
    fn contains(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Stores `value` for `key`, replacing any value it had; the store may
    /// evict other entries to make room.
    fn insert(&mut self, key: K, value: V);

    /// Forgets `key`.
    fn remove(&mut self, key: &K);

    /// Forgets everything.
    fn clear(&mut self);

    /// How many entries the store holds (expired ones it has not dropped
    /// yet may count).
    fn len(&self) -> usize;

    /// True when the store holds nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// foldhash instead of SipHash: several times cheaper on the hit path, and
/// still seeded per process, so that keys taken from requests cannot be
/// chosen to collide.
pub(crate) type Hasher = foldhash::quality::RandomState;

/// The default store: an unbounded `HashMap` (hashed with foldhash). Right
/// for a loader per request, or a small key space; a long-lived loader over
/// many keys wants [`LruStore`] or [`TtlStore`].
pub struct MapStore<K, V> {
    map: HashMap<K, V, Hasher>,
}

impl<K, V> MapStore<K, V> {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            map: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq, V> MapStore<K, V> {
    /// The value of `key`, by reference.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }
}

impl<K, V> Default for MapStore<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> std::fmt::Debug for MapStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapStore")
            .field("len", &self.map.len())
            .finish()
    }
}

impl<K, V> Store<K, V> for MapStore<K, V>
where
    K: Hash + Eq + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).cloned()
    }

    fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    fn insert(&mut self, key: K, value: V) {
        self.map.insert(key, value);
    }

    fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    fn clear(&mut self) {
        self.map.clear();
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}
