//! A minimal HTTP/1.1 server on smol: `POST /graphql` with a JSON body,
//! one request per connection (`Connection: close`). Every request gets a
//! fresh `Db` handle and fresh loaders; the response reports in
//! `extensions.sqlStatements` how many statements it cost.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::{Shutdown, TcpListener, TcpStream};

use crate::db::{Db, Pool};
use crate::schema::BlogSchema;
use crate::source::Source;

/// Request line plus headers.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, schema: BlogSchema, pool: Arc<Pool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait rather than spin.
            smol::Timer::after(Duration::from_millis(10)).await;
            continue;
        };
        let (schema, pool) = (schema.clone(), pool.clone());
        smol::spawn(async move {
            // A client that went away mid-request needs no reply.
            let _ = connection(stream, &schema, &pool).await;
        })
        .detach();
    }
}

async fn connection(stream: TcpStream, schema: &BlogSchema, pool: &Arc<Pool>) -> io::Result<()> {
    let mut reader = BufReader::new(stream.clone());
    // A client that connects and stays silent does not hold a task forever.
    let timeout = async {
        smol::Timer::after(READ_TIMEOUT).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    let reply = match smol::future::or(read_request(&mut reader), timeout).await? {
        Ok(request) => respond(request, schema, pool).await,
        Err(refusal) => refusal,
    };
    let mut stream = stream;
    stream.write_all(&reply.into_bytes()).await?;
    stream.flush().await?;
    // Closing with unread input would reset the connection and could destroy
    // the reply before the client reads it: stop writing, then drain for a
    // bounded time.
    stream.shutdown(Shutdown::Write)?;
    let drain = async {
        let _ = smol::io::copy(reader, smol::io::sink()).await;
    };
    smol::future::or(drain, async {
        smol::Timer::after(Duration::from_secs(1)).await;
    })
    .await;
    Ok(())
}

struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// The request, or the reply refusing it. `Err` only for I/O failures.
async fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Result<Request, Reply>> {
    let head = match read_head(reader).await? {
        Ok(head) => head,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let mut lines = head.iter();
    let request_line = lines.next().map(String::as_str).unwrap_or_default();
    let [method, target, version] = request_line.split(' ').collect::<Vec<_>>()[..] else {
        return Ok(Err(Reply::error(400, "malformed request line")));
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(Err(Reply::error(400, "not HTTP/1.x")));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Ok(Err(Reply::error(400, "malformed header")));
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Ok(Err(Reply::error(
                501,
                "send a Content-Length, not a transfer coding",
            )));
        }
        if name.eq_ignore_ascii_case("content-length") {
            match (value.trim().parse::<usize>(), length) {
                (Ok(parsed), None) => length = Some(parsed),
                (Ok(parsed), Some(earlier)) if parsed == earlier => {}
                _ => return Ok(Err(Reply::error(400, "invalid Content-Length"))),
            }
        }
    }
    let body = match length {
        None if method == "POST" => return Ok(Err(Reply::error(411, "Content-Length required"))),
        None => Vec::new(),
        Some(length) if length > MAX_BODY => return Ok(Err(Reply::error(413, "body over 1 MiB"))),
        Some(length) => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await?;
            body
        }
    };
    Ok(Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        body,
    }))
}

/// The request line and header lines, without line ends, up to the blank
/// line; refused when over `MAX_HEAD` or not UTF-8.
async fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Result<Vec<String>, Reply>> {
    let mut lines = Vec::new();
    let mut size = 0;
    loop {
        let mut line = Vec::new();
        let room = (MAX_HEAD - size) as u64;
        let read = (&mut *reader)
            .take(room)
            .read_until(b'\n', &mut line)
            .await?;
        if !line.ends_with(b"\n") {
            // The head outgrew its limit, or the client stopped mid-line.
            if read as u64 == room {
                return Ok(Err(Reply::error(431, "request head over 16 KiB")));
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        size += read;
        line.truncate(line.len() - 1);
        if line.ends_with(b"\r") {
            line.pop();
        }
        if line.is_empty() {
            return Ok(Ok(lines));
        }
        match String::from_utf8(line) {
            Ok(line) => lines.push(line),
            Err(_) => return Ok(Err(Reply::error(400, "request head is not UTF-8"))),
        }
    }
}

async fn respond(request: Request, schema: &BlogSchema, pool: &Arc<Pool>) -> Reply {
    if request.target != "/graphql" {
        return Reply::error(404, "only /graphql is served");
    }
    if request.method != "POST" {
        return Reply::error(405, "POST a JSON GraphQL request");
    }
    let query: async_graphql::Request = match serde_json::from_slice(&request.body) {
        Ok(query) => query,
        Err(error) => return Reply::error(400, &format!("invalid GraphQL request: {error}")),
    };
    // Per request: a new statement counter and new loaders, so nothing one
    // user loaded is ever answered to another.
    let db = Db::new(pool);
    let response = schema
        .execute(query.data(Source::batched(db.clone())))
        .await;
    let statements = async_graphql::Value::Number(db.statements().into());
    let response = response.extension("sqlStatements", statements);
    Reply {
        status: 200,
        body: serde_json::to_string(&response).expect("a response serializes"),
    }
}

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    /// A refusal, with the reason as a GraphQL-style error list.
    fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "errors": [{ "message": message }] });
        Self {
            status,
            body: body.to_string(),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            411 => "Length Required",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            _ => "Not Implemented",
        };
        let allow = if self.status == 405 {
            "Allow: POST\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.body.len()
        );
        [head.into_bytes(), self.body.into_bytes()].concat()
    }
}
