//! The handle of a grouped loader: one loader per group, made on demand.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::builder::StoreMaker;
use super::{GroupFetcher, GroupedFetcherBuilder, InGroup};
use crate::fetcher::{Blueprint, Retired};
use crate::{BatchFetcher, LoadError, Stats};

type Outcome<F> = Result<<F as GroupFetcher>::Value, LoadError<<F as GroupFetcher>::Error>>;

/// Batches loads per group: a batch only ever holds keys of one group, and
/// caching and in-flight dedup are per (group, key). Groups batch
/// concurrently, within one shared `max_in_flight`.
///
/// Each group has its own [`BatchFetcher`], started on the group's first
/// use; [`group`](Self::group) returns it for the full loader API. A group
/// keeps its identity map until [`clear_group`](Self::clear_group) or
/// [`clear_all`](Self::clear_all) forgets it, so a long-lived loader over
/// unbounded groups should forget idle ones. See [`GroupFetcher`] for an
/// example.
pub struct GroupedBatchFetcher<F: GroupFetcher> {
    inner: Arc<Inner<F>>,
}

struct Inner<F: GroupFetcher> {
    fetcher: Arc<F>,
    blueprint: Blueprint<F::Key, F::Value>,
    stores: Option<StoreMaker<F>>,
    /// Read for the common case, a group that exists: loads of different
    /// groups never wait for each other here.
    groups: RwLock<Groups<F>>,
}

struct Groups<F: GroupFetcher> {
    loaders: HashMap<F::Group, BatchFetcher<InGroup<F>>, foldhash::quality::RandomState>,
    /// Forgotten groups whose loaders may still be fetching, so that
    /// `close` waits for them too; pruned as they finish.
    retired: Vec<Retired<InGroup<F>>>,
    closed: bool,
}

impl<F: GroupFetcher> GroupedBatchFetcher<F> {
    /// Starts configuring a grouped loader over `fetcher`.
    pub fn builder(fetcher: F) -> GroupedFetcherBuilder<F> {
        GroupedFetcherBuilder::new(fetcher)
    }

    pub(crate) fn new(
        fetcher: F,
        blueprint: Blueprint<F::Key, F::Value>,
        stores: Option<StoreMaker<F>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                fetcher: Arc::new(fetcher),
                blueprint,
                stores,
                groups: RwLock::new(Groups {
                    loaders: HashMap::default(),
                    retired: Vec::new(),
                    closed: false,
                }),
            }),
        }
    }

    /// The loader of `group`, started on first use. Once this loader is
    /// closed, a group not seen before gets a closed loader, which is not
    /// kept. Its `stats()` are those of all groups together (the counters
    /// are shared).
    pub fn group(&self, group: &F::Group) -> BatchFetcher<InGroup<F>> {
        if let Some(loader) = self.read().loaders.get(group) {
            return loader.clone();
        }
        // Built outside the lock: the store maker and the spawner are user
        // code, and may well use this loader.
        let fetcher = InGroup {
            fetcher: self.inner.fetcher.clone(),
            group: group.clone(),
        };
        let store = self.inner.stores.as_ref().map(|make| make.store_for(group));
        let built = self.inner.blueprint.build(fetcher, store);
        let mut groups = self.write();
        if groups.closed {
            built.stop_taking();
            return built;
        }
        // Another caller may have started the group meanwhile: theirs wins,
        // and ours, never used, stops as it is dropped.
        let loader = groups.loaders.entry(group.clone()).or_insert(built);
        loader.clone()
    }

    /// Loads `key` of `group`; see [`BatchFetcher::load`].
    ///
    /// # Errors
    /// As [`BatchFetcher::load`].
    pub async fn load(&self, group: &F::Group, key: F::Key) -> Outcome<F> {
        self.group(group).load(key).await
    }

    /// Loads several keys of `group`; see [`BatchFetcher::load_many`].
    ///
    /// # Errors
    /// As [`BatchFetcher::load_many`].
    pub async fn load_many(
        &self,
        group: &F::Group,
        keys: &[F::Key],
    ) -> Result<Vec<F::Value>, LoadError<F::Error>> {
        self.group(group).load_many(keys).await
    }

    /// Loads several keys of `group`, one result each; see
    /// [`BatchFetcher::load_each`].
    pub async fn load_each(&self, group: &F::Group, keys: &[F::Key]) -> Vec<Outcome<F>> {
        self.group(group).load_each(keys).await
    }

    /// Stores `value` for `key` of `group`; see [`BatchFetcher::prime`].
    pub async fn prime(&self, group: &F::Group, key: F::Key, value: F::Value) -> bool {
        self.group(group).prime(key, value).await
    }

    /// Forgets `key` of `group`; see [`BatchFetcher::clear`].
    pub async fn clear(&self, group: &F::Group, key: &F::Key) {
        let loader = self.read().loaders.get(group).cloned();
        if let Some(loader) = loader {
            loader.clear(key).await;
        }
    }

    /// Forgets `group` entirely: its identity map goes, and its loader stops
    /// once its queued keys are fetched and no [`group`](Self::group) handle
    /// remains. Fetches already running still answer their callers. The next
    /// load of the group starts afresh.
    ///
    /// ```
    /// # use anybatch::{GroupFetcher, GroupedBatchFetcher, Values};
    /// # struct Rows;
    /// # impl GroupFetcher for Rows {
    /// #     type Group = u32; type Key = u64; type Value = u64; type Error = std::io::Error;
    /// #     async fn fetch(&self, tenant: &u32, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key + u64::from(*tenant)))); Ok(())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let rows = GroupedBatchFetcher::builder(Rows).build().unwrap();
    /// rows.prime(&1, 5, 0).await;
    /// assert_eq!(rows.groups(), 1);
    /// rows.clear_group(&1);
    /// assert_eq!(rows.groups(), 0);
    /// assert_eq!(rows.load(&1, 5).await.unwrap(), 6); // fetched again
    /// # });
    /// ```
    pub fn clear_group(&self, group: &F::Group) {
        let mut groups = self.write();
        let forgotten = groups.loaders.remove(group);
        groups.retire(forgotten);
        drop(groups);
    }

    /// Forgets every group, as [`clear_group`](Self::clear_group) does one.
    pub fn clear_all(&self) {
        let mut groups = self.write();
        let forgotten = std::mem::take(&mut groups.loaders);
        for (_, loader) in forgotten {
            groups.retire(Some(loader));
        }
    }

    /// How many groups have a loader now.
    pub fn groups(&self) -> usize {
        self.read().loaders.len()
    }

    /// Closes every group's loader (see [`BatchFetcher::close`]) and waits
    /// for all of them, and for groups forgotten earlier whose fetches are
    /// still running; groups first used afterwards are closed from the start.
    pub async fn close(&self) {
        let (loaders, retired): (Vec<_>, Vec<_>) = {
            let mut groups = self.write();
            groups.closed = true;
            let loaders = groups.loaders.values().cloned().collect();
            (loaders, std::mem::take(&mut groups.retired))
        };
        let open = futures::future::join_all(loaders.iter().map(BatchFetcher::close));
        let forgotten = futures::future::join_all(retired.into_iter().map(Retired::close));
        futures::future::join(open, forgotten).await;
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.read().closed
    }

    /// What all groups have done so far, together; see [`Stats`].
    pub fn stats(&self) -> Stats {
        self.inner.blueprint.counters.snapshot()
    }

    /// The label given to the builder, if any.
    pub fn label(&self) -> Option<&str> {
        self.inner.blueprint.label.as_deref()
    }

    fn read(&self) -> RwLockReadGuard<'_, Groups<F>> {
        // Under this lock run only map operations (a group's `Hash`, `Eq`,
        // `Clone`) and handle drops: a panic there leaves the map usable.
        self.inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Groups<F>> {
        self.inner
            .groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: GroupFetcher> Groups<F> {
    /// Keeps track of a forgotten group's loader until its work is done.
    fn retire(&mut self, forgotten: Option<BatchFetcher<InGroup<F>>>) {
        self.retired.retain(|retired| !retired.is_done());
        if let Some(loader) = forgotten {
            self.retired.push(loader.retire());
        }
        // `forgotten` is dropped here, under the lock: its collector only
        // notices once its queue closes, never calling back in here.
    }
}

impl<F: GroupFetcher> Clone for GroupedBatchFetcher<F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<F: GroupFetcher> fmt::Debug for GroupedBatchFetcher<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One read, released before writing: `f` may be slow.
        let (groups, closed) = {
            let groups = self.read();
            (groups.loaders.len(), groups.closed)
        };
        f.debug_struct("GroupedBatchFetcher")
            .field("label", &self.label())
            .field("groups", &groups)
            .field("closed", &closed)
            .finish_non_exhaustive()
    }
}
