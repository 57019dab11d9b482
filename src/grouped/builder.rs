//! Configures and starts a [`GroupedBatchFetcher`].

use std::fmt;

use super::{GroupFetcher, GroupedBatchFetcher};
use crate::cache::BoxStore;
use crate::core::{shared_settings, Settings};
use crate::fetcher::{remembering_settings, Blueprint, Remembering};
use crate::{BuildError, MaybeSend, MaybeSync, Store};

/// Settings for a [`GroupedBatchFetcher`], from
/// [`GroupedBatchFetcher::builder`]. Every setting applies to each group's
/// loader, except `max_in_flight`, which bounds the fetches of all groups
/// together.
#[must_use = "a builder does nothing until `build` is called"]
pub struct GroupedFetcherBuilder<F: GroupFetcher> {
    fetcher: F,
    settings: Settings,
    remembering: Remembering<F::Key, F::Value>,
    stores: Option<StoreMaker<F>>,
}

/// Makes the store of each group's identity map.
pub(crate) trait MakeStore<G, K, V>: MaybeSend + MaybeSync {
    fn store_for(&self, group: &G) -> BoxStore<K, V>;
}

impl<G, K, V, S, M> MakeStore<G, K, V> for M
where
    M: Fn(&G) -> S + MaybeSend + MaybeSync,
    S: Store<K, Option<V>>,
{
    fn store_for(&self, group: &G) -> BoxStore<K, V> {
        Box::new(self(group))
    }
}

pub(crate) type StoreMaker<F> = Box<
    dyn MakeStore<<F as GroupFetcher>::Group, <F as GroupFetcher>::Key, <F as GroupFetcher>::Value>,
>;

impl<F: GroupFetcher> GroupedFetcherBuilder<F> {
    pub(crate) fn new(fetcher: F) -> Self {
        Self {
            fetcher,
            settings: Settings::default(),
            remembering: Remembering::default(),
            stores: None,
        }
    }

    /// Makes the store of each group (by default, an unbounded
    /// [`MapStore`](crate::MapStore) each); see
    /// [`FetcherBuilder::store`](crate::FetcherBuilder::store).
    ///
    /// ```
    /// # use anybatch::{GroupFetcher, GroupedBatchFetcher, Values};
    /// use anybatch::LruStore;
    /// # struct Rows;
    /// # impl GroupFetcher for Rows {
    /// #     type Group = u32; type Key = u64; type Value = u64; type Error = std::io::Error;
    /// #     async fn fetch(&self, _: &u32, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key))); Ok(())
    /// #     }
    /// # }
    /// // At most 1,000 rows per tenant.
    /// let rows = GroupedBatchFetcher::builder(Rows)
    ///     .store_per_group(|_tenant: &u32| LruStore::new(1_000))
    ///     .build()
    ///     .unwrap();
    /// # let _ = rows;
    /// ```
    pub fn store_per_group<S>(
        mut self,
        make: impl Fn(&F::Group) -> S + MaybeSend + MaybeSync + 'static,
    ) -> Self
    where
        S: Store<F::Key, Option<F::Value>>,
    {
        self.stores = Some(Box::new(make));
        self
    }

    shared_settings!("key", "fetch", "fetches");

    remembering_settings!();

    /// Validates the settings; group loaders start as their groups are first
    /// used.
    ///
    /// # Errors
    /// [`BuildError::InvalidSetting`] naming the first setting out of range,
    /// or [`BuildError::NoSpawner`].
    pub fn build(self) -> Result<GroupedBatchFetcher<F>, BuildError> {
        let blueprint = Blueprint::new(self.settings, self.remembering)?;
        Ok(GroupedBatchFetcher::new(
            self.fetcher,
            blueprint,
            self.stores,
        ))
    }
}

impl<F: GroupFetcher> fmt::Debug for GroupedFetcherBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupedFetcherBuilder")
            .field("settings", &self.settings)
            .field("remembering", &self.remembering)
            .field("store_per_group", &self.stores.is_some())
            .finish_non_exhaustive()
    }
}
