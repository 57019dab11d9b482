//! Validated settings, from which a fetcher builder starts loaders.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_lock::Semaphore;

use super::runner::FetchRunner;
use super::{BatchFetcher, Fetcher};
use crate::cache::{BoxStore, Default, IdentityMap, Stored};
use crate::core::{self, BatchLimits, Settings};
use crate::spawn::Spawner;
use crate::stats::Counters;
use crate::store::MapStore;
use crate::{BuildError, MaybeSend, MaybeSync};

/// What a fetching loader remembers: whether it caches, and the value of an
/// undelivered key.
pub(crate) struct Remembering<K, V> {
    pub(crate) cache: bool,
    pub(crate) default: Option<Default<K, V>>,
}

impl<K, V> std::default::Default for Remembering<K, V> {
    fn default() -> Self {
        Self {
            cache: true,
            default: None,
        }
    }
}

impl<K, V> fmt::Debug for Remembering<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remembering")
            .field("cache", &self.cache)
            .field("default", &self.default.is_some())
            .finish()
    }
}

/// Validated settings, ready to build loaders from: one for a plain loader,
/// one per group for a grouped loader (whose groups share the in-flight
/// slots and the counters).
pub(crate) struct Blueprint<K, V> {
    limits: BatchLimits,
    spawner: Arc<dyn Spawner>,
    in_flight: Arc<Semaphore>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) label: Option<Arc<str>>,
    remembering: Remembering<K, V>,
}

impl<K, V> Blueprint<K, V> {
    pub(crate) fn new(
        settings: Settings,
        remembering: Remembering<K, V>,
    ) -> Result<Self, BuildError> {
        let (limits, spawner) = settings.validate()?;
        Ok(Self {
            limits,
            spawner,
            in_flight: core::in_flight_slots(&limits),
            counters: Arc::new(Counters::default()),
            label: settings.label,
            remembering,
        })
    }

    /// Starts a loader over `fetcher`: its own identity map (answers kept in
    /// `store`, or a `MapStore`; nothing kept with `cache(false)`) and
    /// collector.
    pub(crate) fn build<F>(&self, fetcher: F, store: Option<BoxStore<K, V>>) -> BatchFetcher<F>
    where
        F: Fetcher<Key = K, Value = V>,
        K: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static,
        V: Clone + MaybeSend + MaybeSync + 'static,
    {
        let store = match (self.remembering.cache, store) {
            (false, _) => Stored::Nothing,
            (true, Some(store)) => Stored::Other(store),
            (true, None) => Stored::Map(MapStore::new()),
        };
        let map = Arc::new(IdentityMap::new(store, self.remembering.default.clone()));
        let runner = Arc::new(FetchRunner {
            fetcher,
            map: map.clone(),
            batches: AtomicU64::new(0),
            counters: self.counters.clone(),
        });
        let queue = core::start(
            runner,
            self.limits,
            self.spawner.clone(),
            self.in_flight.clone(),
            self.counters.clone(),
            self.label.clone(),
        );
        BatchFetcher::from_parts(map, queue, self.counters.clone(), self.label.clone())
    }
}
