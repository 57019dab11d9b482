//! Reads: many `load(key)` calls become one [`Fetcher::fetch`] per batch, and
//! what it returned is remembered in an identity map.

mod builder;
mod handle;
mod runner;
mod source;

pub use builder::FetcherBuilder;
pub use handle::BatchFetcher;
pub use source::{Fetcher, Values};
