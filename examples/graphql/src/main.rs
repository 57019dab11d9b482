//! anybatch as the loaders of an async-graphql server on smol, with no tokio.
//!
//! Seeds a blog in SQLite (authors, posts, comments; two authors deleted),
//! then:
//! 1. runs each query of [`measure::CASES`] twice, once with resolvers that
//!    issue one statement per field and once through per-request anybatch
//!    loaders, prints the statements each way, and checks the responses are
//!    identical and the batched count is at most one statement per level;
//! 2. checks failures: a deleted author is `null` plus an error at its path
//!    with `LoadError::NotFound` as the typed cause, and a failed batch nulls
//!    only the fields that waited on it;
//! 3. serves the schema over HTTP/1.1 on smol and checks it with a real
//!    client: the same answers, fresh loaders per request, 4xx on bad input.
//!
//! Exits non-zero on any failed check.
//!
//! Run: `cargo run --release --manifest-path examples/graphql/Cargo.toml`

mod client;
mod db;
mod failures;
mod loaders;
mod measure;
mod schema;
mod server;
mod source;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use db::{Database, Db, Pool, AUTHORS, CONNECTIONS, DELETED_AUTHORS, POSTS};
use measure::{execute, naive_cost, Run, CASES};
use schema::BlogSchema;
use source::Source;

fn main() -> ExitCode {
    match smol::block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("error: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let started = Instant::now();
    let database = Database::seed().map_err(|error| format!("seeding: {error}"))?;
    println!(
        "seeded {AUTHORS} authors, {POSTS} posts, {} comments in SQLite (WAL) in {:.1?}; authors {DELETED_AUTHORS:?} then deleted",
        database.comments,
        started.elapsed()
    );
    let pool = Pool::open(&database.path, CONNECTIONS).map_err(|error| error.to_string())?;
    let schema = schema::build();

    let healthy = compare_queries(&schema, &pool).await?;
    check_failures(&schema, &pool, &healthy).await?;
    client::check_server(&schema, &pool, &database, &healthy).await?;
    println!("\nok: every check passed");
    Ok(())
}

/// Step 1: every case without and with loaders. Returns the batched run of
/// the deep case (`CASES[1]`), the baseline of the later checks.
async fn compare_queries(schema: &BlogSchema, pool: &Arc<Pool>) -> Result<Run, String> {
    println!(
        "\nSQL statements per query: a statement per field (naive) versus per-request loaders"
    );
    println!(
        "{:<42} {:>6} {:>8} {:>6}  naive, level by level",
        "query", "naive", "loaders", "levels"
    );
    let mut not_found = 0;
    let mut deep = None;
    for (index, case) in CASES.iter().enumerate() {
        let naive = execute(schema, case.query, Source::naive(Db::new(pool))).await;
        let batched = execute(schema, case.query, Source::batched(Db::new(pool))).await;
        let cost = naive_cost(case, &naive.json()["data"]);
        let formula: Vec<String> = cost.iter().map(ToString::to_string).collect();
        let levels = case.levels.len();
        println!(
            "{:<42} {:>6} {:>8} {:>6}  {}",
            case.name,
            naive.statements,
            batched.statements,
            levels,
            formula.join(" + ")
        );
        println!(
            "    loaders: {}",
            batched.batches.as_deref().unwrap_or_default()
        );
        if batched.statements > levels {
            println!("    (a level's loads straddled the batch window and took two batches)");
        }

        if naive.json() != batched.json() {
            return Err(format!("{}: the responses differ", case.name));
        }
        if naive.statements != cost.iter().sum::<usize>() {
            return Err(format!(
                "{}: counted {} naive statements, expected {cost:?}",
                case.name, naive.statements
            ));
        }
        if batched.statements > case.loader_bound() {
            return Err(format!(
                "{}: {} statements with loaders, bound {}",
                case.name,
                batched.statements,
                case.loader_bound()
            ));
        }
        not_found += failures::check_not_found(&batched)?;
        if index == 1 {
            deep = Some(batched);
        }
    }
    if not_found == 0 {
        return Err("no query met a deleted author".into());
    }
    println!("ok: identical responses both ways; loaders within their bound (two per level)");
    Ok(deep.expect("CASES has a deep case"))
}

/// Step 2: a deleted author, and a failed batch.
async fn check_failures(
    schema: &BlogSchema,
    pool: &Arc<Pool>,
    healthy: &Run,
) -> Result<(), String> {
    println!("\nerrors are GraphQL errors with the typed cause");
    let first = healthy
        .response
        .errors
        .first()
        .ok_or("the deep case met no deleted author")?;
    let cause = &first
        .source::<schema::FieldError>()
        .expect("checked typed")
        .cause;
    println!(
        "  a deleted author: {} (source: LoadError::{cause:?})",
        serde_json::to_string(first).expect("serializes")
    );

    let post = 7;
    let query = CASES[1].query;
    let naive = failures::check_fault(schema, Source::naive, pool, query, healthy, post).await?;
    let batched =
        failures::check_fault(schema, Source::batched, pool, query, healthy, post).await?;
    println!("  comments of post {post} made unavailable (an injected fetch failure):");
    println!(
        "    naive:   {} field null with FETCH_FAILED (its statement covered posts {:?})",
        naive.failed_fields, naive.refused_posts
    );
    println!(
        "    loaders: {} fields null with FETCH_FAILED (the failed batch covered {} posts)",
        batched.failed_fields,
        batched.refused_posts.len()
    );
    println!("  ok: every other field as in the healthy response, titles and authors included");
    Ok(())
}
