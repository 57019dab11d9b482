//! One `BatchFetcher` per relationship, built for each request over that
//! request's [`Db`]: what one user's request loaded is never seen by another.

use std::collections::HashMap;
use std::sync::Arc;

use anybatch::{BatchFetcher, Fetcher, Values};

use crate::db::{AuthorRow, CommentRow, Db, DbError, PostRow, CONNECTIONS};

/// Keys per `IN (...)`: more than any one level of these queries holds, so a
/// level is one statement.
pub const BATCH: usize = 500;

/// `authors WHERE id IN (...)`: one author per key, none for a deleted one.
pub struct AuthorsById(Db);

impl Fetcher for AuthorsById {
    type Key = i64;
    type Value = AuthorRow;
    type Error = DbError;

    async fn fetch(&self, ids: &[i64], values: &mut Values<i64, AuthorRow>) -> Result<(), DbError> {
        let authors = self.0.authors(ids).await?;
        values.extend(authors.into_iter().map(|author| (author.id, author)));
        Ok(())
    }
}

/// `posts WHERE author_id IN (...)`: every author's posts, one list per key.
pub struct PostsByAuthor(Db);

impl Fetcher for PostsByAuthor {
    type Key = i64;
    type Value = Arc<[PostRow]>;
    type Error = DbError;

    async fn fetch(
        &self,
        ids: &[i64],
        values: &mut Values<i64, Arc<[PostRow]>>,
    ) -> Result<(), DbError> {
        let posts = self.0.posts_of_authors(ids).await?;
        values.extend(group(ids, posts, |post| post.author_id));
        Ok(())
    }
}

/// `comments WHERE post_id IN (...)`: every post's comments, one list per key.
pub struct CommentsByPost(Db);

impl Fetcher for CommentsByPost {
    type Key = i64;
    type Value = Arc<[CommentRow]>;
    type Error = DbError;

    async fn fetch(
        &self,
        ids: &[i64],
        values: &mut Values<i64, Arc<[CommentRow]>>,
    ) -> Result<(), DbError> {
        let comments = self.0.comments_on_posts(ids).await?;
        values.extend(group(ids, comments, |comment| comment.post_id));
        Ok(())
    }
}

/// Splits one-to-many rows by parent key, keeping their order. Every key gets
/// a list, empty when it has no rows: "no comments" is an answer, not a
/// `NotFound`.
fn group<R>(keys: &[i64], rows: Vec<R>, parent: impl Fn(&R) -> i64) -> Vec<(i64, Arc<[R]>)> {
    let mut lists: HashMap<i64, Vec<R>> = keys.iter().map(|&key| (key, Vec::new())).collect();
    for row in rows {
        lists.entry(parent(&row)).or_default().push(row);
    }
    lists
        .into_iter()
        .map(|(key, list)| (key, Arc::from(list)))
        .collect()
}

/// The loaders of one request; clones share them.
#[derive(Clone)]
pub struct Loaders {
    pub authors: BatchFetcher<AuthorsById>,
    pub posts_by_author: BatchFetcher<PostsByAuthor>,
    pub comments_by_post: BatchFetcher<CommentsByPost>,
}

impl Loaders {
    pub fn new(db: &Db) -> Self {
        Self {
            authors: build(AuthorsById(db.clone()), "authors"),
            posts_by_author: build(PostsByAuthor(db.clone()), "posts by author"),
            comments_by_post: build(CommentsByPost(db.clone()), "comments by post"),
        }
    }

    /// Batches and keys fetched per loader that fetched at all, for example
    /// `authors 2 batches (131 keys)`.
    pub fn summary(&self) -> String {
        let loaders = [
            ("authors", self.authors.stats()),
            ("posts", self.posts_by_author.stats()),
            ("comments", self.comments_by_post.stats()),
        ];
        let used: Vec<String> = loaders
            .iter()
            .filter(|(_, stats)| stats.batches > 0)
            .map(|(name, stats)| {
                let plural = if stats.batches == 1 { "" } else { "es" };
                format!(
                    "{name} {} batch{plural} ({} keys)",
                    stats.batches, stats.queued
                )
            })
            .collect();
        used.join(", ")
    }
}

fn build<F: Fetcher>(fetcher: F, label: &str) -> BatchFetcher<F> {
    BatchFetcher::builder(fetcher)
        .max_batch_size(BATCH)
        .max_in_flight(CONNECTIONS)
        .label(label)
        .build()
        .expect("valid settings")
}
