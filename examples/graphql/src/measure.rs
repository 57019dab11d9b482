//! Runs each query twice, without loaders and with them, counts the SQL
//! statements of each, and checks the two responses are the same.

use async_graphql::{Request, Response};
use serde_json::Value;

use crate::schema::BlogSchema;
use crate::source::Source;

/// A query and the fields that cost a statement per occurrence without
/// loaders: its levels, root included, as dotted paths into `data`.
pub struct Case {
    pub name: &'static str,
    pub query: &'static str,
    pub levels: &'static [&'static str],
}

pub const CASES: [Case; 4] = [
    Case {
        name: "posts, author",
        query: "{ posts(first: 50) { id title author { name } } }",
        levels: &["posts", "posts.author"],
    },
    Case {
        name: "posts, author, comments, comment author",
        query:
            "{ posts(first: 50) { id title author { name } comments { body author { name } } } }",
        levels: &[
            "posts",
            "posts.author",
            "posts.comments",
            "posts.comments.author",
        ],
    },
    Case {
        name: "authors, posts, comments, comment author",
        query:
            "{ authors(first: 20) { name posts { title comments { body author { id name } } } } }",
        levels: &[
            "authors",
            "authors.posts",
            "authors.posts.comments",
            "authors.posts.comments.author",
        ],
    },
    Case {
        name: "three roots sharing the loaders",
        query: "{ a: author(id: 7) { name posts { title author { name } } }
                  b: author(id: 60) { name }
                  c: posts(first: 10) { author { name posts { id } } } }",
        levels: &[
            "a",
            "a.posts",
            "a.posts.author",
            "b",
            "c",
            "c.author",
            "c.author.posts",
        ],
    },
];

impl Case {
    /// Statements the loaders may cost. A level's loads come in one burst
    /// from one task, so a level is one statement, unless the burst straddles
    /// the loaders' 1 ms batch window, which takes the process being
    /// descheduled mid-level on a busy machine: two per level leaves room for
    /// that and still fails anything that grows with N.
    pub fn loader_bound(&self) -> usize {
        2 * self.levels.len()
    }
}

/// One execution: the response and how many statements it cost.
pub struct Run {
    pub response: Response,
    pub statements: usize,
    /// Batches and keys per loader; `None` without loaders.
    pub batches: Option<String>,
}

impl Run {
    /// The response as a client receives it.
    pub fn json(&self) -> Value {
        serde_json::to_value(&self.response).expect("a response serializes")
    }
}

/// Executes `query` with `source` as the request's data.
pub async fn execute(schema: &BlogSchema, query: &str, source: Source) -> Run {
    // The request takes the source; these handles outlive it for the report.
    let db = source.db().clone();
    let loaders = source.loaders().cloned();
    let response = schema.execute(Request::new(query).data(source)).await;
    Run {
        response,
        statements: db.statements(),
        batches: loaders.map(|loaders| loaders.summary()),
    }
}

/// Statements a query costs without loaders: one per occurrence of each
/// level's last field, nulls included (the statement ran and found nothing),
/// nothing under a `null`.
pub fn naive_cost(case: &Case, data: &Value) -> Vec<usize> {
    case.levels
        .iter()
        .map(|level| occurrences(data, level))
        .collect()
}

fn occurrences(data: &Value, path: &str) -> usize {
    let (parents, field) = path.rsplit_once('.').unwrap_or(("", path));
    let mut nodes = vec![data];
    for step in parents.split('.').filter(|step| !step.is_empty()) {
        nodes = nodes
            .into_iter()
            .filter_map(|node| node.get(step))
            .flat_map(elements)
            .collect();
    }
    nodes
        .iter()
        .filter(|node| node.get(field).is_some())
        .count()
}

/// A list's elements, a single object, or nothing for `null`.
fn elements(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}
