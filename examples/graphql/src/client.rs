//! The server exercised over real sockets: GraphQL requests through `ureq`
//! (an HTTP client written independently of this server), malformed input
//! written byte by byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

use crate::db::{Database, Pool};
use crate::measure::{Run, CASES};
use crate::schema::BlogSchema;
use crate::server;

/// A blocking `ureq` call on a blocking thread: status and body.
pub async fn post(addr: SocketAddr, path: &str, body: String) -> Result<(u16, String), String> {
    let url = format!("http://{addr}{path}");
    smol::unblock(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut response = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(&body)
            .map_err(|error| format!("POST {url}: {error}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|error| error.to_string())?;
        Ok((response.status().as_u16(), text))
    })
    .await
}

/// A GraphQL query over HTTP: the status and the parsed response.
pub async fn query(addr: SocketAddr, query: &str) -> Result<(u16, Value), String> {
    let (status, body) = post(addr, "/graphql", json!({ "query": query }).to_string()).await?;
    let body =
        serde_json::from_str(&body).map_err(|error| format!("reply is not JSON: {error}"))?;
    Ok((status, body))
}

/// Writes `request` as is and returns the reply's status code.
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = exchange.await.map_err(|error| error.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    status.ok_or_else(|| format!("not an HTTP reply: {text:?}"))
}

/// Step 3: the schema served over HTTP, checked through sockets.
pub async fn check_server(
    schema: &BlogSchema,
    pool: &Arc<Pool>,
    database: &Database,
    healthy: &Run,
) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| error.to_string())?;
    let addr = listener.local_addr().map_err(|error| error.to_string())?;
    let server = smol::spawn(server::serve(listener, schema.clone(), pool.clone()));
    println!("\nover HTTP: POST http://{addr}/graphql (HTTP/1.1 server on smol, client ureq)");

    let case = &CASES[1];
    let (status, body) = query(addr, case.query).await?;
    let expected = healthy.json();
    if status != 200 || body["data"] != expected["data"] || body["errors"] != expected["errors"] {
        return Err(format!(
            "{}: over HTTP {status}, not the in-process response",
            case.name
        ));
    }
    let statements = body["extensions"]["sqlStatements"]
        .as_u64()
        .unwrap_or(u64::MAX);
    if statements > case.loader_bound() as u64 {
        return Err(format!("{}: {statements} statements over HTTP", case.name));
    }
    println!(
        "  {}: 200, the in-process data and errors, {statements} SQL statements",
        case.name
    );

    // A loader shared between requests would answer the second from its
    // identity map with the old name.
    let ask = "{ author(id: 3) { name } }";
    let before = query(addr, ask).await?.1["data"]["author"]["name"].clone();
    database
        .rename_author(3, "Ada Lovelace")
        .map_err(|error| error.to_string())?;
    let after = query(addr, ask).await?.1["data"]["author"]["name"].clone();
    if before != "Author 3" || after != "Ada Lovelace" {
        return Err(format!(
            "author 3 read as {before} then {after} around a rename"
        ));
    }
    println!("  fresh loaders per request: author 3 read as {before}, renamed elsewhere, then read as {after}");

    for (what, expected, status) in refusals(addr).await? {
        if status != expected {
            return Err(format!("{what}: status {status}, expected {expected}"));
        }
        println!("  {what}: {status}");
    }
    server.cancel().await;
    Ok(())
}

/// Bad requests and the status each got: (what, expected, got).
async fn refusals(addr: SocketAddr) -> Result<Vec<(&'static str, u16, u16)>, String> {
    let mut seen = Vec::new();
    let (status, body) = query(addr, "{ posts(first: 1) { nope } }").await?;
    let reported = body["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("nope"));
    seen.push((
        "unknown field: a GraphQL error",
        200,
        if reported { status } else { 0 },
    ));
    let (status, _) = post(addr, "/graphql", "{not json".into()).await?;
    seen.push(("body not JSON", 400, status));
    let (status, _) = post(addr, "/elsewhere", "{}".into()).await?;
    seen.push(("POST /elsewhere", 404, status));
    let raw: [(&str, &[u8], u16); 5] = [
        ("malformed request line", b"NONSENSE\r\n\r\n", 400),
        (
            "GET /graphql",
            b"GET /graphql HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
        ),
        (
            "POST without Content-Length",
            b"POST /graphql HTTP/1.1\r\nHost: x\r\n\r\n",
            411,
        ),
        (
            "Content-Length not a number",
            b"POST /graphql HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
            400,
        ),
        (
            "body over 1 MiB",
            b"POST /graphql HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",
            413,
        ),
    ];
    for (what, request, expected) in raw {
        seen.push((what, expected, raw_status(addr, request).await?));
    }
    let padding = [b'a'; 20_000];
    let long_head = [
        b"GET /graphql HTTP/1.1\r\nX-Padding: ",
        &padding[..],
        b"\r\n\r\n",
    ]
    .concat();
    let status = raw_status(addr, &long_head).await?;
    seen.push(("request head over 16 KiB", 431, status));
    Ok(seen)
}
