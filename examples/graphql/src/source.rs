//! Where one request's resolvers get their data: straight from SQL, one
//! statement per field (the N+1 way), or through that request's loaders.
//!
//! Both ways run the same statements through the same row mapping and answer
//! with the same `LoadError`, so their responses can be compared byte for
//! byte: the only difference is how many statements run.

use std::sync::Arc;

use anybatch::LoadError;

use crate::db::{AuthorRow, CommentRow, Db, DbError, PostRow};
use crate::loaders::Loaders;

pub type Loaded<T> = Result<T, LoadError<DbError>>;

/// Put into each request's context data; the schema itself holds no state.
pub enum Source {
    /// Each field runs its own `... WHERE id IN (?)` with one key.
    Naive(Db),
    /// Each field loads through a loader created for this request.
    Batched(Db, Loaders),
}

impl Source {
    pub fn naive(db: Db) -> Self {
        Self::Naive(db)
    }

    pub fn batched(db: Db) -> Self {
        let loaders = Loaders::new(&db);
        Self::Batched(db, loaders)
    }

    /// For the root lists, one statement either way.
    pub fn db(&self) -> &Db {
        match self {
            Self::Naive(db) | Self::Batched(db, _) => db,
        }
    }

    pub fn loaders(&self) -> Option<&Loaders> {
        match self {
            Self::Naive(_) => None,
            Self::Batched(_, loaders) => Some(loaders),
        }
    }

    pub async fn author(&self, id: i64) -> Loaded<AuthorRow> {
        match self {
            Self::Naive(db) => {
                let found = db.authors(&[id]).await.map_err(failed)?;
                found.into_iter().next().ok_or(LoadError::NotFound)
            }
            Self::Batched(_, loaders) => loaders.authors.load(id).await,
        }
    }

    pub async fn posts_of(&self, author_id: i64) -> Loaded<Arc<[PostRow]>> {
        match self {
            Self::Naive(db) => db
                .posts_of_authors(&[author_id])
                .await
                .map(Arc::from)
                .map_err(failed),
            Self::Batched(_, loaders) => loaders.posts_by_author.load(author_id).await,
        }
    }

    pub async fn comments_on(&self, post_id: i64) -> Loaded<Arc<[CommentRow]>> {
        match self {
            Self::Naive(db) => db
                .comments_on_posts(&[post_id])
                .await
                .map(Arc::from)
                .map_err(failed),
            Self::Batched(_, loaders) => loaders.comments_by_post.load(post_id).await,
        }
    }
}

/// A failed statement, typed as the loaders would report it.
fn failed(error: DbError) -> LoadError<DbError> {
    LoadError::Fetch(Arc::new(error))
}
