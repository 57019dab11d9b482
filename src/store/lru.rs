//! A store bounded by a number of entries, evicting the least recently used
//! one (approximately, by the CLOCK algorithm) to make room.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Hasher, Store};
use crate::{MaybeSend, MaybeSync};

/// Holds at most `capacity` entries; inserting into a full store evicts one
/// that was not used recently.
///
/// Recency is tracked the CLOCK way, an approximation of least-recently-used
/// that lets hits stay under the loader's shared lock: a hit only sets the
/// entry's "used" flag (an atomic store, skipped when already set), and
/// eviction sweeps the entries in a circle, sparing (and unflagging) each one
/// used since the sweep last passed. A new entry starts unflagged, so a scan of
/// one-off keys (untrusted keys from requests, say) evicts its own kind
/// before the entries that are being hit.
///
/// Chosen over a crate: `lru` needs `&mut self` to read (every hit would take
/// the exclusive lock), and concurrent caches such as `moka` or
/// `quick_cache` bring their own locking under the loader's.
///
/// ```
/// use anybatch::{LruStore, Store};
///
/// let mut store = LruStore::new(2);
/// store.insert(1, "one");
/// store.insert(2, "two");
/// assert_eq!(store.get(&1), Some("one")); // 1 is used, 2 is not
/// store.insert(3, "three"); // evicts 2
/// assert_eq!((store.get(&1), store.get(&2), store.get(&3)), (Some("one"), None, Some("three")));
/// assert_eq!(store.len(), 2);
/// ```
pub struct LruStore<K, V> {
    /// Where each key's entry sits in `entries`.
    index: HashMap<K, usize, Hasher>,
    /// The circle the clock hand sweeps.
    entries: Vec<Entry<K, V>>,
    hand: usize,
    capacity: usize,
}

struct Entry<K, V> {
    key: K,
    value: V,
    used: AtomicBool,
}

impl<K, V> LruStore<K, V> {
    /// A store of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            index: HashMap::with_capacity_and_hasher(capacity, Hasher::default()),
            entries: Vec::with_capacity(capacity),
            hand: 0,
            capacity,
        }
    }

    /// The most entries this store holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<K: Hash + Eq + Clone, V> LruStore<K, V> {
    /// Advances the hand to an entry not used since its last pass, clearing
    /// the flags it passes over; returns that entry's position.
    fn victim(&mut self) -> usize {
        loop {
            let hand = self.hand;
            self.hand = (hand + 1) % self.entries.len();
            if !std::mem::take(self.entries[hand].used.get_mut()) {
                return hand;
            }
        }
    }
}

impl<K, V> Store<K, V> for LruStore<K, V>
where
    K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
    V: Clone + MaybeSend + MaybeSync + 'static,
{
    fn get(&self, key: &K) -> Option<V> {
        let entry = &self.entries[*self.index.get(key)?];
        // Skip the store when already set: no cache-line write on hot keys.
        if !entry.used.load(Ordering::Relaxed) {
            entry.used.store(true, Ordering::Relaxed);
        }
        Some(entry.value.clone())
    }

    fn insert(&mut self, key: K, value: V) {
        if let Some(&at) = self.index.get(&key) {
            self.entries[at].value = value;
            return;
        }
        let entry = Entry {
            key: key.clone(),
            value,
            used: AtomicBool::new(false),
        };
        let at = if self.entries.len() < self.capacity {
            self.entries.push(entry);
            self.entries.len() - 1
        } else {
            let at = self.victim();
            let evicted = std::mem::replace(&mut self.entries[at], entry);
            self.index.remove(&evicted.key);
            at
        };
        self.index.insert(key, at);
    }

    fn remove(&mut self, key: &K) {
        let Some(at) = self.index.remove(key) else {
            return;
        };
        self.entries.swap_remove(at);
        if let Some(moved) = self.entries.get(at) {
            self.index.insert(moved.key.clone(), at);
        }
        if self.hand >= self.entries.len() {
            self.hand = 0;
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.hand = 0;
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl<K, V> fmt::Debug for LruStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LruStore")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut store = LruStore::new(100);
        for key in 0..10_000u32 {
            store.insert(key, key);
            assert!(store.len() <= 100);
        }
        assert_eq!(store.len(), 100);
        assert_eq!(store.index.len(), 100);
        // The index and the circle agree.
        for (key, &at) in &store.index {
            assert_eq!(store.entries[at].key, *key);
        }
    }

    #[test]
    fn keys_in_use_survive_a_scan() {
        let mut store = LruStore::new(10);
        for key in 0..5u32 {
            store.insert(key, key);
        }
        for scanned in 100..1_000u32 {
            // Keys 0..5 are hit between every insert of a one-off key.
            for key in 0..5 {
                assert_eq!(store.get(&key), Some(key), "hot key {key} evicted");
            }
            store.insert(scanned, scanned);
        }
        assert_eq!(store.len(), 10);
    }

    #[test]
    fn remove_and_replace_keep_the_index_right() {
        let mut store = LruStore::new(3);
        store.insert("a", 1);
        store.insert("b", 2);
        store.insert("c", 3);
        store.remove(&"a");
        assert_eq!((store.get(&"a"), store.get(&"c")), (None, Some(3)));
        store.insert("b", 20);
        store.insert("d", 4);
        assert_eq!(store.len(), 3);
        assert_eq!((store.get(&"b"), store.get(&"d")), (Some(20), Some(4)));
        store.insert("e", 5); // full: evicts one
        assert_eq!(store.len(), 3);
        store.clear();
        assert!(store.is_empty());
        assert_eq!(store.get(&"e"), None);
    }
}
