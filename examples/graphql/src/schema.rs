//! The GraphQL schema: authors, their posts, comments on posts.
//!
//! Every relationship field is nullable, so a field that cannot be resolved
//! becomes `null` plus an error at its path and its siblings still answer.
//! (Returning `Err` from a nullable field would not do: async-graphql 7.2.1
//! then leaves the field out of its object, where the GraphQL spec handles a
//! field error as though the field returned `null`; see [`or_null`].)

use std::fmt;

use anybatch::LoadError;
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Error, ErrorExtensions, Object, Result, Schema,
};

use crate::db::{AuthorRow, CommentRow, DbError, PostRow};
use crate::source::{Loaded, Source};

pub type BlogSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn build() -> BlogSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .limit_depth(10)
        .finish()
}

/// Why a relationship field is `null`: which one, for which key, and the
/// loader's typed error. It travels as the GraphQL error's `source`, so
/// server code can match on `cause` instead of parsing the message.
#[derive(Debug)]
pub struct FieldError {
    pub relation: &'static str,
    pub key: i64,
    pub cause: LoadError<DbError>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.relation, self.key, self.cause)?;
        // `LoadError::Fetch` keeps the backend's error as its source only.
        if let LoadError::Fetch(error) = &self.cause {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}

/// The GraphQL error for a failed load; clients see the cause as
/// `extensions.code`.
fn field_error(relation: &'static str, key: i64, cause: LoadError<DbError>) -> Error {
    let code = match &cause {
        LoadError::NotFound => "NOT_FOUND",
        LoadError::Fetch(_) => "FETCH_FAILED",
        LoadError::Panicked(_) => "PANICKED",
        LoadError::Closed => "CLOSED",
    };
    let error = FieldError {
        relation,
        key,
        cause,
    };
    Error::new_with_source(error).extend_with(|_, extensions| extensions.set("code", code))
}

/// The loaded value, or `null` plus a GraphQL error at this field's path.
///
/// `add_error` is async-graphql's documented way to report an error and still
/// answer `null`; `item.pos` and `set_error_path` are public though hidden
/// from its docs, and are what its generated resolvers use for the location
/// and path of a field error, so the error reads exactly like theirs.
fn or_null<T>(ctx: &Context<'_>, relation: &'static str, key: i64, loaded: Loaded<T>) -> Option<T> {
    match loaded {
        Ok(value) => Some(value),
        Err(cause) => {
            let error = field_error(relation, key, cause).into_server_error(ctx.item.pos);
            ctx.add_error(ctx.set_error_path(error));
            None
        }
    }
}

fn source<'a>(ctx: &Context<'a>) -> &'a Source {
    ctx.data_unchecked::<Source>()
}

pub struct Query;

#[Object]
impl Query {
    /// The first posts, by id.
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 100))] first: i32,
    ) -> Result<Vec<Post>> {
        let rows = source(ctx).db().first_posts(first.into()).await?;
        Ok(rows.into_iter().map(Post).collect())
    }

    /// The first authors, by id.
    async fn authors(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 100))] first: i32,
    ) -> Result<Vec<Author>> {
        let rows = source(ctx).db().first_authors(first.into()).await?;
        Ok(rows.into_iter().map(Author).collect())
    }

    /// One author; `null` without an error when there is none, since asking
    /// for an id that does not exist is not a fault.
    async fn author(&self, ctx: &Context<'_>, id: i64) -> Option<Author> {
        match source(ctx).author(id).await {
            Err(LoadError::NotFound) => None,
            loaded => or_null(ctx, "author", id, loaded).map(Author),
        }
    }
}

pub struct Author(AuthorRow);

#[Object]
impl Author {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn posts(&self, ctx: &Context<'_>) -> Option<Vec<Post>> {
        let id = self.0.id;
        let posts = or_null(ctx, "posts of author", id, source(ctx).posts_of(id).await)?;
        Some(posts.iter().cloned().map(Post).collect())
    }
}

pub struct Post(PostRow);

#[Object]
impl Post {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    /// `null` with an error when the author row is gone.
    async fn author(&self, ctx: &Context<'_>) -> Option<Author> {
        let id = self.0.author_id;
        or_null(ctx, "author", id, source(ctx).author(id).await).map(Author)
    }

    async fn comments(&self, ctx: &Context<'_>) -> Option<Vec<Comment>> {
        let id = self.0.id;
        let comments = or_null(
            ctx,
            "comments on post",
            id,
            source(ctx).comments_on(id).await,
        )?;
        Some(comments.iter().cloned().map(Comment).collect())
    }
}

pub struct Comment(CommentRow);

#[Object]
impl Comment {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn body(&self) -> &str {
        &self.0.body
    }

    /// `null` with an error when the author row is gone.
    async fn author(&self, ctx: &Context<'_>) -> Option<Author> {
        let id = self.0.author_id;
        or_null(ctx, "author", id, source(ctx).author(id).await).map(Author)
    }
}
