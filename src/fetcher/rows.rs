//! One-to-many loads: the backend returns rows, several per key ("every
//! comment of post 7"), and each key's value is all of its rows.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use super::{Fetcher, Values};
use crate::{MaybeSend, MaybeSync};

/// Fetches the rows of a batch of keys in one backend call, several rows per
/// key; wrapped in [`OneToMany`], it makes a loader whose value for a key is
/// every row delivered for it, in delivery order, and an empty `Vec` for a
/// key without rows.
///
/// One `SELECT ... WHERE post_id IN (...)` serves the whole batch:
///
/// ```
/// use anybatch::{BatchFetcher, OneToMany, RowFetcher, Rows};
///
/// /// Comments by post id.
/// struct Comments;
///
/// impl RowFetcher for Comments {
///     type Key = u64;
///     type Row = String;
///     type Error = std::io::Error;
///
///     async fn fetch(&self, post_ids: &[u64], rows: &mut Rows<u64, String>) -> Result<(), Self::Error> {
///         // SELECT post_id, body FROM comments WHERE post_id IN (...) ORDER BY id
///         for &post in post_ids.iter().filter(|&&post| post != 3) {
///             rows.push(post, format!("first on {post}"));
///             rows.push(post, format!("second on {post}"));
///         }
///         Ok(())
///     }
/// }
///
/// # smol::block_on(async {
/// let comments = BatchFetcher::builder(OneToMany::new(Comments)).build().unwrap();
/// let (seven, three) = futures::join!(comments.load(7), comments.load(3));
/// assert_eq!(seven.unwrap(), ["first on 7", "second on 7"]);
/// assert!(three.unwrap().is_empty()); // no rows: empty, not an error
/// # });
/// ```
pub trait RowFetcher: MaybeSend + MaybeSync + 'static {
    /// What rows are grouped by (a foreign key).
    type Key: Hash + Eq + Clone + MaybeSend + MaybeSync + 'static;
    /// One row; every caller of a key gets a clone of all of its rows, so
    /// large rows are best wrapped in an `Arc`.
    type Row: Clone + MaybeSend + MaybeSync + 'static;
    /// Why a whole batch failed.
    type Error: std::error::Error + MaybeSend + MaybeSync + 'static;

    /// Fetches the rows of `keys` in one call, pushing each into `rows`.
    fn fetch(
        &self,
        keys: &[Self::Key],
        rows: &mut Rows<Self::Key, Self::Row>,
    ) -> impl Future<Output = Result<(), Self::Error>> + MaybeSend;
}

/// Where a [`RowFetcher`] puts its rows. Rows of keys not in the batch are
/// ignored.
#[derive(Debug)]
pub struct Rows<K, R> {
    by_key: HashMap<K, Vec<R>, foldhash::fast::RandomState>,
    count: usize,
}

impl<K: Hash + Eq, R> Rows<K, R> {
    /// Adds `row` to the rows of `key`, after those pushed before.
    pub fn push(&mut self, key: K, row: R) {
        self.by_key.entry(key).or_default().push(row);
        self.count += 1;
    }

    /// How many rows were pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no row was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl<K: Hash + Eq, R> Extend<(K, R)> for Rows<K, R> {
    fn extend<I: IntoIterator<Item = (K, R)>>(&mut self, rows: I) {
        for (key, row) in rows {
            self.push(key, row);
        }
    }
}

/// Turns a [`RowFetcher`] into a [`Fetcher`] whose value is a `Vec` of rows.
#[derive(Debug)]
pub struct OneToMany<F>(F);

impl<F: RowFetcher> OneToMany<F> {
    /// Wraps `fetcher`; give the result to [`BatchFetcher::builder`](crate::BatchFetcher::builder).
    pub fn new(fetcher: F) -> Self {
        Self(fetcher)
    }

    /// The wrapped row fetcher.
    pub fn inner(&self) -> &F {
        &self.0
    }
}

impl<F: RowFetcher> Fetcher for OneToMany<F> {
    type Key = F::Key;
    type Value = Vec<F::Row>;
    type Error = F::Error;

    async fn fetch(
        &self,
        keys: &[F::Key],
        values: &mut Values<F::Key, Vec<F::Row>>,
    ) -> Result<(), F::Error> {
        let mut rows = Rows {
            by_key: HashMap::with_capacity_and_hasher(keys.len(), Default::default()),
            count: 0,
        };
        self.0.fetch(keys, &mut rows).await?;
        // Every key is answered: one without rows gets the empty `Vec`.
        for key in keys {
            let found = rows.by_key.remove(key).unwrap_or_default();
            values.insert(key.clone(), found);
        }
        Ok(())
    }
}
