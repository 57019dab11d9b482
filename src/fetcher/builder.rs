//! Configures and starts a [`BatchFetcher`].

use std::fmt;

use super::blueprint::{Blueprint, Remembering};
use super::{BatchFetcher, Fetcher};
use crate::cache::BoxStore;
use crate::core::{shared_settings, Settings};
use crate::{BuildError, Store};

/// The builder methods of what a fetching loader remembers, written once for
/// [`FetcherBuilder`] and the grouped builder: `cache`, `default_value`,
/// `default_with`.
macro_rules! remembering_settings {
    () => {
        /// Whether fetched values (and `NotFound`) are remembered (default `true`).
        /// With `false`, concurrent loads of a key still share one fetch, but
        /// nothing is kept once it is answered (any store set is not used).
        pub fn cache(mut self, enabled: bool) -> Self {
            self.remembering.cache = enabled;
            self
        }

        /// The value a key gets when the fetcher did not deliver it, instead of
        /// [`LoadError::NotFound`](crate::LoadError::NotFound): an empty list, a
        /// null object. It is remembered like any fetched value.
        ///
        /// ```
        /// # use anybatch::{BatchFetcher, Fetcher, Values};
        /// struct Tags;
        ///
        /// impl Fetcher for Tags {
        ///     type Key = u64;
        ///     type Value = Vec<&'static str>;
        ///     type Error = std::convert::Infallible;
        ///
        ///     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, Self::Value>) -> Result<(), Self::Error> {
        ///         // Only post 1 has tags.
        ///         values.extend(keys.iter().filter(|&&key| key == 1).map(|&key| (key, vec!["rust"])));
        ///         Ok(())
        ///     }
        /// }
        ///
        /// # smol::block_on(async {
        /// let tags = BatchFetcher::builder(Tags).default_value(Vec::new()).build().unwrap();
        /// assert_eq!(tags.load(1).await, Ok(vec!["rust"]));
        /// assert_eq!(tags.load(2).await, Ok(vec![]));
        /// # });
        /// ```
        pub fn default_value(self, value: F::Value) -> Self {
            self.default_with(move |_: &F::Key| value.clone())
        }

        /// Like [`default_value`](Self::default_value), with the value made from
        /// the key (a placeholder that names it, say). It runs while the
        /// identity map is locked, so keep it cheap; if it panics, the keys it
        /// was making values for fail with
        /// [`LoadError::Panicked`](crate::LoadError::Panicked).
        ///
        /// ```
        /// # use anybatch::{BatchFetcher, Fetcher, Values};
        /// # struct Names;
        /// # impl Fetcher for Names {
        /// #     type Key = u64; type Value = String; type Error = std::convert::Infallible;
        /// #     async fn fetch(&self, _: &[u64], _: &mut Values<u64, String>) -> Result<(), Self::Error> { Ok(()) }
        /// # }
        /// # smol::block_on(async {
        /// let names = BatchFetcher::builder(Names)
        ///     .default_with(|id: &u64| format!("deleted user #{id}"))
        ///     .build()
        ///     .unwrap();
        /// assert_eq!(names.load(7).await.unwrap(), "deleted user #7");
        /// # });
        /// ```
        pub fn default_with(
            mut self,
            make: impl Fn(&F::Key) -> F::Value + $crate::MaybeSend + $crate::MaybeSync + 'static,
        ) -> Self {
            self.remembering.default = Some(std::sync::Arc::new(make));
            self
        }
    };
}
pub(crate) use remembering_settings;

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
pub struct FetcherBuilder<F: Fetcher> {
    fetcher: F,
    settings: Settings,
    remembering: Remembering<F::Key, F::Value>,
    store: Option<BoxStore<F::Key, F::Value>>,
}

impl<F: Fetcher> FetcherBuilder<F> {
    pub(crate) fn new(fetcher: F) -> Self {
        Self {
            fetcher,
            settings: Settings::default(),
            remembering: Remembering::default(),
            store: None,
        }
    }

    /// Where fetched answers are kept: a [`MapStore`](crate::MapStore)
    /// (unbounded) by default, an [`LruStore`](crate::LruStore) to bound a
    /// long-lived loader's memory, a [`TtlStore`](crate::TtlStore) for data
    /// that goes stale, or any [`Store`]. The store holds `Some(value)` for
    /// fetched values and `None` for remembered absences.
    ///
    /// ```
    /// # use anybatch::{BatchFetcher, Fetcher, Values};
    /// use anybatch::LruStore;
    /// # struct Users;
    /// # impl Fetcher for Users {
    /// #     type Key = u64; type Value = u64; type Error = std::io::Error;
    /// #     async fn fetch(&self, keys: &[u64], values: &mut Values<u64, u64>) -> Result<(), Self::Error> {
    /// #         values.extend(keys.iter().map(|&key| (key, key))); Ok(())
    /// #     }
    /// # }
    /// # smol::block_on(async {
    /// let users = BatchFetcher::builder(Users).store(LruStore::new(2)).build().unwrap();
    /// users.load_many(&[1, 2, 3]).await.unwrap();
    /// assert_eq!(users.cached().await, 2);
    /// # });
    /// ```
    pub fn store(mut self, store: impl Store<F::Key, Option<F::Value>>) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    shared_settings!("key", "fetch", "fetches");

    remembering_settings!();

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
        let blueprint = Blueprint::new(self.settings, self.remembering)?;
        Ok(blueprint.build(self.fetcher, self.store))
    }
}

impl<F: Fetcher> fmt::Debug for FetcherBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetcherBuilder")
            .field("settings", &self.settings)
            .field("remembering", &self.remembering)
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}
