//! Failures as GraphQL errors: a deleted author is `null` plus an error at
//! its path whose source is the loader's typed `LoadError`; a failed batch
//! fails only the fields that waited on it.

use std::sync::Arc;

use anybatch::LoadError;
use async_graphql::ServerError;
use serde_json::Value;

use crate::db::{Db, DbError, Fault, Pool, DELETED_AUTHORS};
use crate::measure::{execute, Run};
use crate::schema::{BlogSchema, FieldError};
use crate::source::Source;

/// Checks that every error of `run` is a deleted author: `null` at the
/// error's path, `NOT_FOUND` for clients and `LoadError::NotFound` as the
/// typed source. Returns how many there were.
pub fn check_not_found(run: &Run) -> Result<usize, String> {
    let data = run.json()["data"].clone();
    for error in &run.response.errors {
        let field = typed(error)?;
        let deleted = DELETED_AUTHORS.contains(&field.key);
        if field.cause != LoadError::NotFound || field.relation != "author" || !deleted {
            return Err(format!("unexpected error {:?}: {field}", error.path));
        }
        if code(error) != Some("NOT_FOUND") || at(&data, &path(error)) != Some(&Value::Null) {
            return Err(format!("{:?} is not a null with NOT_FOUND", error.path));
        }
    }
    Ok(run.response.errors.len())
}

/// Which way a faulty request was resolved, and what it did.
pub struct FaultReport {
    pub failed_fields: usize,
    pub refused_posts: Vec<i64>,
}

/// Runs `query` (a `posts { id ... comments { ... } }` query) with comments
/// of `post_id` unavailable, and checks that the response is `healthy`
/// (the same query, no fault) with exactly the `comments` fields of the
/// refused posts turned to `null` plus an error each.
pub async fn check_fault(
    schema: &BlogSchema,
    source: fn(Db) -> Source,
    pool: &Arc<Pool>,
    query: &str,
    healthy: &Run,
    post_id: i64,
) -> Result<FaultReport, String> {
    let fault = Fault::on_comments_of(post_id);
    let run = execute(schema, query, source(Db::new(pool).with_fault(&fault))).await;
    let refused = fault.refused_posts();
    if !refused.contains(&post_id) {
        return Err(format!("the fault never fired: refused {refused:?}"));
    }

    // The data: the healthy data, the refused posts' comments nulled.
    let mut expected = healthy.json()["data"].clone();
    let mut nulled = Vec::new();
    for (index, post) in expected["posts"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if post["id"].as_i64().is_some_and(|id| refused.contains(&id)) {
            post["comments"] = Value::Null;
            nulled.push(serde_json::json!(["posts", index, "comments"]));
        }
    }
    if run.json()["data"] != expected {
        return Err("fields other than the refused comments changed".into());
    }

    // The errors: one FETCH_FAILED per nulled field, typed, and the healthy
    // run's NotFound errors except those that were under a nulled field.
    let mut failed = Vec::new();
    let mut others = Vec::new();
    for error in &run.response.errors {
        match &typed(error)?.cause {
            LoadError::Fetch(cause) => {
                let injected =
                    matches!(**cause, DbError::Injected { post_id: id } if id == post_id);
                if !injected || code(error) != Some("FETCH_FAILED") {
                    return Err(format!("{:?}: not the injected failure", error.path));
                }
                failed.push(path(error));
            }
            _ => others.push(path(error)),
        }
    }
    failed.sort_by_key(Value::to_string);
    nulled.sort_by_key(Value::to_string);
    if failed != nulled {
        return Err(format!("failed fields {failed:?}, expected {nulled:?}"));
    }
    let mut expected_others: Vec<Value> = (healthy.response.errors.iter().map(path))
        .filter(|p| !nulled.iter().any(|field| within(p, field)))
        .collect();
    expected_others.sort_by_key(Value::to_string);
    others.sort_by_key(Value::to_string);
    if others != expected_others {
        return Err(format!(
            "other errors {others:?}, expected {expected_others:?}"
        ));
    }
    Ok(FaultReport {
        failed_fields: failed.len(),
        refused_posts: refused,
    })
}

/// The typed cause every error of this schema carries.
fn typed(error: &ServerError) -> Result<&FieldError, String> {
    error
        .source::<FieldError>()
        .ok_or_else(|| format!("{:?} has no typed source: {}", error.path, error.message))
}

fn code(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code),
        _ => None,
    }
}

fn path(error: &ServerError) -> Value {
    serde_json::to_value(&error.path).expect("a path serializes")
}

/// Whether `path` is `field` or lies under it.
fn within(path: &Value, field: &Value) -> bool {
    match (path.as_array(), field.as_array()) {
        (Some(path), Some(field)) => path.starts_with(field),
        _ => false,
    }
}

/// The value at a response path such as `["posts", 3, "author"]`; `None`
/// when a step is missing (an errored field left out is not a `null`).
fn at<'a>(data: &'a Value, path: &Value) -> Option<&'a Value> {
    let mut node = data;
    for step in path.as_array()? {
        node = match step {
            Value::String(field) => node.get(field.as_str())?,
            Value::Number(index) => node.get(usize::try_from(index.as_u64()?).ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}
