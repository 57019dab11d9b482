//! Configures and starts a [`BatchFetcher`].

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use super::runner::FetchRunner;
use super::{BatchFetcher, Fetcher};
use crate::cache::IdentityMap;
use crate::core::{self, Settings};
use crate::{BuildError, Spawner};

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

    /// The most keys one fetch is given (default 100, at least 1). A batch is
    /// dispatched as soon as it holds this many; further keys go to the next
    /// batch. 100 keys fit under every SQL engine's bound-parameter limit and
    /// keep a reply small.
    pub fn max_batch_size(mut self, keys: usize) -> Self {
        self.settings.max_batch_size = keys;
        self
    }

    /// How long a batch that is not full may wait for more keys, counted from
    /// its **first** key; later keys never extend it (default 1 ms, at most one
    /// hour). One millisecond lets loads from many freshly spawned tasks meet
    /// in full batches while staying short next to the backend round trip it
    /// saves. `Duration::ZERO` dispatches as soon as the keys already queued
    /// are gathered: the lowest latency, with batches only as large as what
    /// arrived together.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.settings.max_delay = delay;
        self
    }

    /// The most fetches of this loader that run at once (default 10, at least
    /// 1). While all run, new keys queue into the next batches. Ten keeps a
    /// backend busy without exhausting a typical connection pool.
    pub fn max_in_flight(mut self, fetches: usize) -> Self {
        self.settings.max_in_flight = fetches;
        self
    }

    /// Whether fetched values (and `NotFound`) are remembered (default `true`).
    /// With `false`, concurrent loads of a key still share one fetch, but
    /// nothing is kept once it is answered.
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache = enabled;
        self
    }

    /// A name for this loader, shown by `Debug` and [`BatchFetcher::label`].
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.settings.label = Some(Arc::from(label.into()));
        self
    }

    /// Where the collector and the fetches run. Defaults to smol's global
    /// executor with the `smol` feature; required without it.
    pub fn spawner(mut self, spawner: impl Spawner) -> Self {
        self.settings.spawner = Some(Arc::new(spawner));
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
        let runner = Arc::new(FetchRunner {
            fetcher: self.fetcher,
            map: map.clone(),
            batches: AtomicU64::new(0),
        });
        let queue = core::start(runner, limits, spawner);
        Ok(BatchFetcher::from_parts(map, queue, self.settings.label))
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
