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

    fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
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
            // Unindexed first: if the key's `Hash` panics, no index entry is
            // left pointing at the slot another key is about to take.
            self.index.remove(&self.entries[at].key);
            self.entries[at] = entry;
            at
        };
        self.index.insert(key, at);
    }

    fn remove(&mut self, key: &K) {
        let Some(at) = self.index.remove(key) else {
            return;
        };
        self.entries.swap_remove(at);
        // Re-point the moved entry without cloning its key (no user code
        // between the two mutations but `Hash`/`Eq`).
        if let Some(moved) = self.entries.get(at) {
            if let Some(slot) = self.index.get_mut(&moved.key) {
                *slot = at;
            }
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

    /// A key whose `Hash` panics while the store evicts or moves it must
    /// never leave an index entry pointing at another key's value.
    #[test]
    fn a_panicking_key_never_returns_another_keys_value() {
        use std::cell::Cell;
        use std::panic::{catch_unwind, AssertUnwindSafe};

        // The key whose hash panics, if any.
        thread_local!(static POISONED: Cell<Option<u32>> = const { Cell::new(None) });

        #[derive(Clone, PartialEq, Eq, Debug)]
        struct Key(u32);

        impl Hash for Key {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                if POISONED.with(Cell::get) == Some(self.0) {
                    panic!("hash of {self:?}");
                }
                state.write_u32(self.0);
            }
        }

        let poison = |key| POISONED.with(|poisoned| poisoned.set(key));
        let mut store = LruStore::new(3);
        for key in 1..=3 {
            store.insert(Key(key), key);
        }
        // Inserting 4 evicts 1, whose hash panics.
        poison(Some(1));
        assert!(catch_unwind(AssertUnwindSafe(|| store.insert(Key(4), 4))).is_err());
        // Removing 2 moves 3, whose hash panics.
        poison(Some(3));
        let _ = catch_unwind(AssertUnwindSafe(|| store.remove(&Key(2))));
        poison(None);
        store.insert(Key(5), 5);
        store.insert(Key(6), 6);
        for key in 1..=6 {
            let found = store.get(&Key(key));
            assert!(
                found.is_none() || found == Some(key),
                "key {key} gave {found:?}"
            );
        }
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
