//! Configures and starts a [`BatchFetcher`].

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::runner::FetchRunner;
use super::{BatchFetcher, Fetcher};
use crate::cache::IdentityMap;
use crate::core::{self, shared_settings, Settings};
use crate::stats::Counters;
use crate::BuildError;

/// Settings for a [`BatchFetcher`], from [`BatchFetcher::builder`].
///
/// ```
/// use std::time::Duration;
/// # use anybatch::{BatchFetcher, Fetcher, Values};
/// # struct Users;
/// # impl Fetcher for Users {
/// #     type Key = u64; type Value = String; type Error = std::io::Error;
/// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, String>) -> Result<(), Self::Error> {
/// #         values.extend(keys.iter().map(|&key| (key, format!("user {key}")))); Ok(())
/// #     }
/// # }
///
/// let users = BatchFetcher::builder(Users)
///     .max_batch_size(500)                  // SQL `IN (...)` of at most 500
///     .max_delay(Duration::from_micros(500))
///     .max_in_flight(4)                      // a pool of 4 connections
///     .label("users")
///     .build()
///     .unwrap();
/// # let _ = users;
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct FetcherBuilder<F> {
    fetcher: F,
    settings: Settings,
    cache: bool,
}

impl<F: Fetcher> FetcherBuilder<F> {
    pub(crate) fn new(fetcher: F) -> Self {
        Self {
            fetcher,
            settings: Settings::default(),
            cache: true,
        }
    }

    shared_settings!("key", "fetch");

    /// Whether fetched values (and `NotFound`) are remembered (default `true`).
    /// With `false`, concurrent loads of a key still share one fetch, but
    /// nothing is kept once it is answered.
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache = enabled;
        self
    }

    /// Validates the settings and starts the loader's collector.
    ///
    /// # Errors
    /// [`BuildError::InvalidSetting`] naming the first setting out of range,
    /// or [`BuildError::NoSpawner`].
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, BuildError, Fetcher, Values};
    /// # struct Users;
    /// # impl Fetcher for Users {
    /// #     type Key = u64; type Value = u64; type Error = std::io::Error;
    /// #     async fn fetch(&self, _: &[u64], _: &mut Values<u64, u64>) -> Result<(), Self::Error> { Ok(()) }
    /// # }
    /// let error = BatchFetcher::builder(Users).max_batch_size(0).build().unwrap_err();
    /// assert!(matches!(error, BuildError::InvalidSetting { setting: "max_batch_size", .. }));
    /// ```
    pub fn build(self) -> Result<BatchFetcher<F>, BuildError> {
        let (limits, spawner) = self.settings.validate()?;
        let map = Arc::new(IdentityMap::new(self.cache));
        let counters = Arc::new(Counters::default());
        let runner = Arc::new(FetchRunner {
            fetcher: self.fetcher,
            map: map.clone(),
            batches: AtomicU64::new(0),
            counters: counters.clone(),
        });
        let label = self.settings.label;
        let queue = core::start(runner, limits, spawner, counters.clone(), label.clone());
        Ok(BatchFetcher::from_parts(map, queue, counters, label))
    }
}

impl<F> fmt::Debug for FetcherBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetcherBuilder")
            .field("settings", &self.settings)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
