//! The backend side: what a user implements to fetch a batch.

use std::future::Future;
use std::hash::Hash;

use crate::{MaybeSend, MaybeSync};

/// Fetches a batch of keys in one backend call.
///
/// `fetch` is given distinct keys (never more than the loader's
/// `max_batch_size`) and puts every value it found into `values`. A key it
/// does not deliver is answered with [`LoadError::NotFound`](crate::LoadError::NotFound);
/// an `Err` fails every key of the batch with
/// [`LoadError::Fetch`](crate::LoadError::Fetch); a panic is caught and fails
/// them with [`LoadError::Panicked`](crate::LoadError::Panicked). None of the
/// three stops the loader.
///
/// Values are delivered into a sink rather than returned as a map: a
/// backend's rows go straight to the loader with no intermediate `HashMap`
/// to build and hash again. Implement it with `async fn`:
///
/// ```
/// use anybatch::{Fetcher, Values};
///
/// struct Squares;
///
/// impl Fetcher for Squares {
///     type Key = u64;
///     type Value = u64;
///     type Error = std::io::Error;
///
///     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
///         // One backend call for the whole batch would go here.
///         for &key in keys {
///             values.insert(key, key * key);
///         }
///         Ok(())
///     }
/// }
/// # let _ = Squares;
/// ```
pub trait Fetcher: MaybeSend + MaybeSync + 'static {
    /// What a value is looked up by.
    type Key: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static;
    /// What is fetched; every caller of a key gets a clone, and the identity
    /// map's clone is made under its lock, so large values are best wrapped
    /// in an `Arc`.
    type Value: Clone + MaybeSend + MaybeSync + 'static;
    /// Why a whole batch failed; shared by its callers through an `Arc`.
    type Error: std::error::Error + MaybeSend + MaybeSync + 'static;

    /// Fetches `keys` in one call, delivering what was found into `values`.
    fn fetch(
        &self,
        keys: &[Self::Key],
        values: &mut Values<Self::Key, Self::Value>,
    ) -> impl Future<Output = Result<(), Self::Error>> + MaybeSend;
}

/// Where a [`Fetcher`] puts the values it found.
///
/// Values for keys that were not in the batch are ignored; if a key is
/// delivered twice, the first value counts.
///
/// ```
/// use anybatch::Values;
///
/// let mut values = Values::default();
/// values.insert(1, "one");
/// values.extend([(2, "two"), (3, "three")]);
/// assert_eq!(values.len(), 3);
/// ```
#[derive(Debug)]
pub struct Values<K, V> {
    found: Vec<(K, V)>,
}

impl<K, V> Values<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            found: Vec::with_capacity(capacity),
        }
    }

    /// Delivers `value` for `key`.
    pub fn insert(&mut self, key: K, value: V) {
        self.found.push((key, value));
    }

    /// How many values were delivered so far.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// True when nothing was delivered yet.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<(K, V)> {
        self.found
    }
}

impl<K, V> Default for Values<K, V> {
    fn default() -> Self {
        Self { found: Vec::new() }
    }
}

impl<K, V> Extend<(K, V)> for Values<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, items: I) {
        self.found.extend(items);
    }
}
