//! Reads: many `load(key)` calls become one [`Fetcher::fetch`] per batch, and
//! what it returned is remembered in an identity map.

mod blueprint;
mod builder;
mod handle;
mod rows;
mod runner;
mod source;

pub(crate) use blueprint::{Blueprint, Remembering};
pub(crate) use builder::remembering_settings;
pub use builder::FetcherBuilder;
pub use handle::BatchFetcher;
pub(crate) use handle::Retired;
pub use rows::{OneToMany, RowFetcher, Rows};
pub use source::{Fetcher, Values};
