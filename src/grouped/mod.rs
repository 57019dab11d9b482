//! Grouped loads: every key belongs to a group (a tenant, a user, a table,
//! an auth scope), a batch only ever holds keys of one group, and the fetcher
//! is told which. Each group gets its own loader (identity map and
//! collector) from one blueprint, so caching and in-flight dedup are per
//! (group, key), while every group shares the in-flight slots and counters.

mod builder;
mod handle;

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

pub use builder::GroupedFetcherBuilder;
pub use handle::GroupedBatchFetcher;

use crate::{Fetcher, MaybeSend, MaybeSync, Values};

/// Fetches a batch of keys that all belong to one group, in one backend call.
///
/// Like [`Fetcher`], with the batch's group passed in: one API call per
/// user, one query per tenant's database, one `SELECT` per table.
///
/// ```
/// use anybatch::{GroupFetcher, GroupedBatchFetcher, Values};
///
/// /// Feature flags, evaluated per user by one API call per batch.
/// struct Flags;
///
/// impl GroupFetcher for Flags {
///     type Group = String; // the user
///     type Key = &'static str; // the flag
///     type Value = bool;
///     type Error = std::io::Error;
///
///     async fn fetch(
///         &self,
///         user: &String,
///         flags: &[&'static str],
///         values: &mut Values<&'static str, bool>,
///     ) -> Result<(), Self::Error> {
///         for &flag in flags {
///             values.insert(flag, user.starts_with("admin") || flag == "new_ui");
///         }
///         Ok(())
///     }
/// }
///
/// # smol::block_on(async {
/// let flags = GroupedBatchFetcher::builder(Flags).build().unwrap();
/// let admin = "admin-1".to_string();
/// let guest = "guest-7".to_string();
/// // Two batches: one per user.
/// let (a, b, c) = futures::join!(
///     flags.load(&admin, "beta"),
///     flags.load(&guest, "beta"),
///     flags.load(&guest, "new_ui"),
/// );
/// assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (true, false, true));
/// assert_eq!(flags.stats().batches, 2);
/// # });
/// ```
pub trait GroupFetcher: MaybeSend + MaybeSync + 'static {
    /// What keys are grouped by.
    type Group: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static;
    /// What a value is looked up by, within its group.
    type Key: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static;
    /// What is fetched; see [`Fetcher::Value`].
    type Value: Clone + MaybeSend + MaybeSync + 'static;
    /// Why a whole batch failed.
    type Error: std::error::Error + MaybeSend + MaybeSync + 'static;

    /// Fetches `keys`, all of `group`, in one call, delivering what was found
    /// into `values`; see [`Fetcher::fetch`].
    fn fetch(
        &self,
        group: &Self::Group,
        keys: &[Self::Key],
        values: &mut Values<Self::Key, Self::Value>,
    ) -> impl Future<Output = Result<(), Self::Error>> + MaybeSend;
}

/// A [`GroupFetcher`] bound to one group: the fetcher of that group's
/// loader, as returned by [`GroupedBatchFetcher::group`].
pub struct InGroup<F: GroupFetcher> {
    fetcher: Arc<F>,
    group: F::Group,
}

impl<F: GroupFetcher> InGroup<F> {
    /// The group this fetcher serves.
    pub fn group(&self) -> &F::Group {
        &self.group
    }
}

impl<F: GroupFetcher> Fetcher for InGroup<F> {
    type Key = F::Key;
    type Value = F::Value;
    type Error = F::Error;

    fn fetch(
        &self,
        keys: &[F::Key],
        values: &mut Values<F::Key, F::Value>,
    ) -> impl Future<Output = Result<(), F::Error>> + MaybeSend {
        self.fetcher.fetch(&self.group, keys, values)
    }
}

impl<F: GroupFetcher> std::fmt::Debug for InGroup<F>
where
    F::Group: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InGroup")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
