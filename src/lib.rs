//! Runtime-agnostic request batching: many concurrent `load(key)` calls
//! become one backend fetch, and what was fetched is remembered.
//!
//! ```
//! use anybatch::{BatchFetcher, Fetcher, Values};
//!
//! /// Looks authors up by id, many at a time.
//! struct Authors;
//!
//! impl Fetcher for Authors {
//!     type Key = u32;
//!     type Value = String;
//!     type Error = std::io::Error;
//!
//!     async fn fetch(&self, ids: &[u32], values: &mut Values<u32, String>) -> Result<(), Self::Error> {
//!         // One `SELECT id, name FROM authors WHERE id IN (...)` would go here.
//!         for &id in ids {
//!             values.insert(id, format!("author {id}"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # smol::block_on(async {
//! let authors = BatchFetcher::builder(Authors).build().unwrap();
//!
//! // Three posts, three concurrent loads: one fetch of [7, 9].
//! let post_authors = [7, 9, 7];
//! let names = futures::future::join_all(post_authors.map(|id| authors.load(id))).await;
//! assert_eq!(names[2].as_deref(), Ok("author 7"));
//!
//! // Known now: answered from the identity map, no fetch.
//! assert_eq!(authors.load(9).await.unwrap(), "author 9");
//! # });
//! ```
//!
//! # How a load is answered
//! 1. From the identity map, under a shared read lock (taken without waiting
//!    when it is free; no lock is ever held across a fetch).
//! 2. By joining the fetch already queued or running for the same key.
//! 3. Otherwise the key is queued; batches hold at most `max_batch_size` keys,
//!    each dispatched when full or `max_delay` after its first key, with at
//!    most `max_in_flight` fetches running at once. The load that completes a
//!    batch fetches it on its own task when a slot is free; a collector task
//!    dispatches the rest.
//!
//! Errors are typed ([`LoadError`]); a failed or panicking fetch fails only
//! its batch and is not remembered; a dropped `load` future never cancels a
//! fetch that others wait on.
//!
//! # Shapes of data
//! - A value for keys the backend does not return:
//!   [`FetcherBuilder::default_value`].
//! - Several rows per key ("every comment of post 7"): [`RowFetcher`] and
//!   [`OneToMany`].
//! - Batches that must not mix tenants, users or tables: [`GroupFetcher`] and
//!   [`GroupedBatchFetcher`].
//! - Bounded or expiring caches for long-lived loaders: [`Store`],
//!   [`LruStore`], [`TtlStore`].
//!
//! # A loader per request
//! In a server, create the loaders for each request, so that one user's
//! identity map is never another's. A loader costs a few microseconds to
//! create, and once its last handle is dropped its collector fetches what is
//! still queued and exits; nothing is left behind.
//!
//! ```
//! # use anybatch::{BatchFetcher, Fetcher, Values};
//! # struct Authors;
//! # impl Fetcher for Authors {
//! #     type Key = u32; type Value = String; type Error = std::io::Error;
//! #     async fn fetch(&self, ids: &[u32], values: &mut Values<u32, String>) -> Result<(), Self::Error> {
//! #         values.extend(ids.iter().map(|&id| (id, format!("author {id}")))); Ok(())
//! #     }
//! # }
//! /// What one request's handlers share.
//! struct RequestLoaders {
//!     authors: BatchFetcher<Authors>,
//! }
//!
//! async fn handle_request(post_authors: &[u32]) -> Vec<String> {
//!     let loaders = RequestLoaders {
//!         authors: BatchFetcher::builder(Authors).build().unwrap(),
//!     };
//!     let names = post_authors.iter().map(|&id| loaders.authors.load(id));
//!     futures::future::join_all(names).await.into_iter().map(Result::unwrap).collect()
//!     // `loaders` is dropped here, and with it the request's identity map.
//! }
//!
//! # smol::block_on(async {
//! assert_eq!(handle_request(&[1, 2, 1]).await, ["author 1", "author 2", "author 1"]);
//! # });
//! ```
//!
//! # Writes
//! [`BatchExecutor`] batches mutations on the same core: `execute(value)`
//! calls become one [`Executor::execute`] per batch, each value run exactly
//! once; `submit` queues fire-and-forget work behind a bounded queue, and
//! `shutdown_now` hands back whatever was still queued.
//!
//! # Observing
//! `stats()` on either kind returns a [`Stats`] snapshot; the `tracing`
//! feature adds one span per batch.
//!
//! # Runtimes
//! anybatch needs no particular runtime: the collector and the fetches it
//! dispatches are started through a [`Spawner`]. Timers come from
//! `futures-timer`, the close and shutdown signals from `async-channel`.
//!
//! # Features
//! - `smol` (default): [`SmolSpawner`], the default spawner on native targets.
//! - `tokio`: [`TokioSpawner`].
//! - `async-std`: [`AsyncStdSpawner`] (async-std is deprecated upstream,
//!   RUSTSEC-2025-0052).
//! - `tracing`: one `anybatch.batch` span per batch, with the loader's label,
//!   the batch size and its outcome.
//!
//! With no runtime feature, pass any spawner, for example a closure, to the
//! builder's `spawner`; building without one is a [`BuildError::NoSpawner`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod cache;
mod clock;
mod core;
mod error;
mod executor;
mod fetcher;
mod grouped;
mod hot_counter;
mod maybe_send;
mod pinned_lock;
mod promise;
mod spawn;
mod stats;
mod store;
mod trace;
mod unpoisoned;
#[cfg(test)]
mod wake_counter;

pub use error::{BuildError, ExecuteError, LoadError, SpawnerError, SubmitError};
pub use executor::{BatchExecutor, BatchFailure, Executor, ExecutorBuilder};
pub use fetcher::{BatchFetcher, Fetcher, FetcherBuilder, OneToMany, RowFetcher, Rows, Values};
pub use grouped::{GroupFetcher, GroupedBatchFetcher, GroupedFetcherBuilder, InGroup};
pub use maybe_send::{MaybeSend, MaybeSync};
pub use spawn::{BoxFuture, Spawner};
pub use stats::Stats;
pub use store::{LruStore, MapStore, Store, TtlStore};

#[cfg(feature = "async-std")]
pub use spawn::AsyncStdSpawner;

/// The README's code blocks run as doctests.
#[cfg(all(doctest, feature = "smol"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
#[cfg(all(feature = "smol", not(target_arch = "wasm32")))]
pub use spawn::SmolSpawner;
#[cfg(feature = "tokio")]
pub use spawn::TokioSpawner;
#[cfg(target_arch = "wasm32")]
pub use spawn::WasmSpawner;
