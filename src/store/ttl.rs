//! A store whose entries expire a fixed time after they were stored.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use super::{Hasher, Store};
use crate::clock::since_origin;
use crate::{MaybeSend, MaybeSync};

/// Forgets each entry `ttl` after it was stored, so the next load fetches it
/// again; optionally also holds at most a number of entries, dropping the
/// oldest first.
///
/// An expired entry is never returned; its memory is reclaimed by the next
/// insert (which drops every entry that expired before it, oldest first,
/// in amortized constant time), so memory stays bounded by what can be
/// inserted within one `ttl`, or by the capacity. A hit reads the clock once.
///
/// ```
/// use std::time::Duration;
/// use anybatch::{BatchFetcher, Fetcher, TtlStore, Values};
/// # struct Config;
/// # impl Fetcher for Config {
/// #     type Key = &'static str; type Value = String; type Error = std::io::Error;
/// #     async fn fetch(&self, keys: &[&'static str], values: &mut Values<&'static str, String>) -> Result<(), Self::Error> {
/// #         values.extend(keys.iter().map(|&key| (key, format!("value of {key}")))); Ok(())
/// #     }
/// # }
///
/// # smol::block_on(async {
/// // Settings re-read at most every 30 seconds, at most 1,000 of them kept.
/// let store = TtlStore::new(Duration::from_secs(30)).with_capacity(1_000);
/// let config = BatchFetcher::builder(Config).store(store).build().unwrap();
/// assert_eq!(config.load("region").await.unwrap(), "value of region");
/// # });
/// ```
pub struct TtlStore<K, V> {
    map: HashMap<K, Stored<V>, Hasher>,
    /// Keys in the order they were stored, with their expiry: since the ttl
    /// is the same for all, also the order in which they expire. A key
    /// stored again or removed leaves a stale record, skipped when reached.
    order: VecDeque<(K, Duration)>,
    ttl: Duration,
    capacity: Option<usize>,
}

struct Stored<V> {
    value: V,
    expires: Duration,
}

impl<K, V> TtlStore<K, V> {
    /// A store whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            map: HashMap::default(),
            order: VecDeque::new(),
            ttl,
            capacity: None,
        }
    }

    /// Also holds at most `capacity` entries (at least one), dropping the
    /// oldest to make room.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// How long an entry lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl<K: Hash + Eq + Clone, V> TtlStore<K, V> {
    /// Drops the oldest record; removes its key if the record is current.
    fn drop_oldest(&mut self) {
        if let Some((key, expires)) = self.order.pop_front() {
            if self
                .map
                .get(&key)
                .is_some_and(|stored| stored.expires == expires)
            {
                self.map.remove(&key);
            }
        }
    }

    /// Rebuilds the records when stale ones outnumber live entries, so
    /// repeated inserts of the same keys cannot grow them without bound.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.map.len() + 16 {
            return;
        }
        let mut live: Vec<_> = self
            .map
            .iter()
            .map(|(key, stored)| (key.clone(), stored.expires))
            .collect();
        live.sort_by_key(|&(_, expires)| expires);
        self.order = live.into();
    }
}

impl<K, V> Store<K, V> for TtlStore<K, V>
where
    K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    fn get(&self, key: &K) -> Option<V> {
        let stored = self.map.get(key)?;
        (since_origin() < stored.expires).then(|| stored.value.clone())
    }

    fn contains(&self, key: &K) -> bool {
        self.map
            .get(key)
            .is_some_and(|stored| since_origin() < stored.expires)
    }

    fn insert(&mut self, key: K, value: V) {
        let now = since_origin();
        while self
            .order
            .front()
            .is_some_and(|&(_, expires)| expires <= now)
        {
            self.drop_oldest();
        }
        let expires = now.saturating_add(self.ttl);
        self.map.insert(key.clone(), Stored { value, expires });
        self.order.push_back((key, expires));
        if let Some(capacity) = self.capacity {
            while self.map.len() > capacity {
                self.drop_oldest();
            }
        }
        self.compact();
    }

    fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

impl<K, V> fmt::Debug for TtlStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlStore")
            .field("len", &self.map.len())
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let mut store = TtlStore::new(Duration::from_millis(30));
        store.insert(1, "one");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(store.get(&1), None, "expired");
        store.insert(2, "two"); // drops the expired entry
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn capacity_drops_the_oldest() {
        let mut store = TtlStore::new(Duration::from_secs(3600)).with_capacity(3);
        for key in 0..10 {
            store.insert(key, key);
            assert!(store.len() <= 3);
        }
        assert_eq!(store.len(), 3);
        assert_eq!(
            (store.get(&6), store.get(&7), store.get(&9)),
            (None, Some(7), Some(9))
        );
    }

    #[test]
    fn reinserting_a_key_does_not_grow_the_records() {
        let mut store = TtlStore::new(Duration::from_secs(3600));
        for round in 0..10_000 {
            store.insert(round % 4, round);
        }
        assert_eq!(store.len(), 4);
        assert!(store.order.len() <= 2 * 4 + 16 + 1, "{}", store.order.len());
        store.remove(&0);
        assert_eq!(store.get(&0), None);
        // A stale record for key 1 must not remove its newer entry.
        store.insert(1, 1);
        assert_eq!(store.get(&1), Some(1));
    }
}
