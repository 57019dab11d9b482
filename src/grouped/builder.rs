//! Configures and starts a [`GroupedBatchFetcher`].

use std::fmt;

use super::{GroupFetcher, GroupedBatchFetcher};
use crate::core::{shared_settings, Settings};
use crate::fetcher::{remembering_settings, Blueprint, Remembering};
use crate::BuildError;

/// Settings for a [`GroupedBatchFetcher`], from
/// [`GroupedBatchFetcher::builder`]. Every setting applies to each group's
/// loader, except `max_in_flight`, which bounds the fetches of all groups
/// together.
#[must_use = "a builder does nothing until `build` is called"]
pub struct GroupedFetcherBuilder<F: GroupFetcher> {
    fetcher: F,
    settings: Settings,
    remembering: Remembering<F::Key, F::Value>,
}

impl<F: GroupFetcher> GroupedFetcherBuilder<F> {
    pub(crate) fn new(fetcher: F) -> Self {
        Self {
            fetcher,
            settings: Settings::default(),
            remembering: Remembering::default(),
        }
    }

    shared_settings!("key", "fetch");

    remembering_settings!();

    /// Validates the settings; group loaders start as their groups are first
    /// used.
    ///
    /// # Errors
    /// [`BuildError::InvalidSetting`] naming the first setting out of range,
    /// or [`BuildError::NoSpawner`].
    pub fn build(self) -> Result<GroupedBatchFetcher<F>, BuildError> {
        let blueprint = Blueprint::new(self.settings, self.remembering)?;
        Ok(GroupedBatchFetcher::new(self.fetcher, blueprint))
    }
}

impl<F: GroupFetcher> fmt::Debug for GroupedFetcherBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupedFetcherBuilder")
            .field("settings", &self.settings)
            .field("remembering", &self.remembering)
            .finish_non_exhaustive()
    }
}
