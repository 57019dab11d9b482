//! The blog in SQLite: deterministic seeding, a small pool of read
//! connections, and [`Db`], one handle per GraphQL request that counts every
//! statement the request runs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params_from_iter, Connection, OpenFlags, Row};

pub const AUTHORS: i64 = 200;
pub const POSTS: i64 = 2_000;
/// Deleted after seeding, so posts and comments point at authors that no
/// longer exist: the resolvers must answer `null` with an error there.
pub const DELETED_AUTHORS: [i64; 2] = [60, 124];
/// Read connections, and so statements running at once.
pub const CONNECTIONS: usize = 4;

#[derive(Clone, Debug, PartialEq)]
pub struct AuthorRow {
    pub id: i64,
    pub name: Arc<str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PostRow {
    pub id: i64,
    pub author_id: i64,
    pub title: Arc<str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CommentRow {
    pub id: i64,
    pub post_id: i64,
    pub author_id: i64,
    pub body: Arc<str>,
}

/// Why a statement produced no rows.
#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    /// A [`Fault`] refused a statement covering this post.
    Injected {
        post_id: i64,
    },
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(error) => write!(f, "sqlite: {error}"),
            Self::Injected { post_id } => {
                write!(
                    f,
                    "injected failure: comments of post {post_id} are unavailable"
                )
            }
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sqlite(error) => Some(error),
            Self::Injected { .. } => None,
        }
    }
}

/// The seeded database file, removed on drop.
pub struct Database {
    dir: PathBuf,
    pub path: PathBuf,
    pub comments: i64,
}

impl Database {
    /// Seeds authors, their posts and comments on posts, all derived from
    /// the ids so every run sees the same blog.
    pub fn seed() -> rusqlite::Result<Self> {
        let dir = std::env::temp_dir().join(format!("anybatch-graphql-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let path = dir.join("blog.db");
        let mut connection = Connection::open(&path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.execute_batch(
            "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL, title TEXT NOT NULL);
             CREATE INDEX posts_by_author ON posts (author_id);
             CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL,
                                    author_id INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE INDEX comments_by_post ON comments (post_id);",
        )?;
        let transaction = connection.transaction()?;
        let mut comments = 0;
        {
            let mut author = transaction.prepare("INSERT INTO authors VALUES (?1, ?2)")?;
            for id in 1..=AUTHORS {
                author.execute((id, format!("Author {id}")))?;
            }
            let mut post = transaction.prepare("INSERT INTO posts VALUES (?1, ?2, ?3)")?;
            let mut comment = transaction
                .prepare("INSERT INTO comments (post_id, author_id, body) VALUES (?1, ?2, ?3)")?;
            for id in 1..=POSTS {
                // Each author writes ten posts, scattered over the ids.
                post.execute((id, 1 + id * 37 % AUTHORS, format!("Post {id}")))?;
                // Zero to four comments: some posts have none at all.
                for n in 0..id % 5 {
                    let by = 1 + (id * 13 + n * 31) % AUTHORS;
                    comment.execute((id, by, format!("Comment {n} on post {id}")))?;
                    comments += 1;
                }
            }
            let mut delete = transaction.prepare("DELETE FROM authors WHERE id = ?1")?;
            for id in DELETED_AUTHORS {
                delete.execute([id])?;
            }
        }
        transaction.commit()?;
        Ok(Self {
            dir,
            path,
            comments,
        })
    }

    /// Renames an author through a connection of its own, as another user's
    /// write would.
    pub fn rename_author(&self, id: i64, name: &str) -> rusqlite::Result<usize> {
        Connection::open(&self.path)?
            .execute("UPDATE authors SET name = ?1 WHERE id = ?2", (name, id))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A few read connections to one database file, each lent to one statement
/// at a time.
pub struct Pool {
    idle: async_channel::Receiver<Connection>,
    returned: async_channel::Sender<Connection>,
}

impl Pool {
    pub fn open(path: &Path, size: usize) -> rusqlite::Result<Arc<Self>> {
        let (returned, idle) = async_channel::bounded(size);
        for _ in 0..size {
            let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            returned.try_send(connection).expect("pool has room");
        }
        Ok(Arc::new(Self { idle, returned }))
    }

    /// Runs `work` on an idle connection, on a blocking thread: SQLite calls
    /// block, and smol's executor threads must not.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let connection = self.idle.recv().await.expect("the pool owns its sender");
        let (connection, result) = smol::unblock(move || {
            let result = work(&connection);
            (connection, result)
        })
        .await;
        self.returned
            .try_send(connection)
            .expect("a slot was freed");
        result
    }
}

/// Fails every comments statement that covers `post_id`, as a backend that
/// cannot serve one post would, and records the posts each refused
/// statement covered.
#[derive(Debug)]
pub struct Fault {
    pub post_id: i64,
    refused: Mutex<Vec<i64>>,
}

impl Fault {
    pub fn on_comments_of(post_id: i64) -> Arc<Self> {
        Arc::new(Self {
            post_id,
            refused: Mutex::new(Vec::new()),
        })
    }

    /// Posts whose comments were asked for by a refused statement.
    pub fn refused_posts(&self) -> Vec<i64> {
        let mut posts = self.refused.lock().expect("not poisoned").clone();
        posts.sort_unstable();
        posts
    }
}

/// One request's way into the database: every statement goes through
/// [`Db::select`], which counts it.
#[derive(Clone)]
pub struct Db {
    pool: Arc<Pool>,
    statements: Arc<AtomicUsize>,
    fault: Option<Arc<Fault>>,
}

impl Db {
    pub fn new(pool: &Arc<Pool>) -> Self {
        Self {
            pool: pool.clone(),
            statements: Arc::default(),
            fault: None,
        }
    }

    pub fn with_fault(mut self, fault: &Arc<Fault>) -> Self {
        self.fault = Some(fault.clone());
        self
    }

    /// Statements this request has executed so far.
    pub fn statements(&self) -> usize {
        self.statements.load(Ordering::Relaxed)
    }

    pub async fn first_posts(&self, first: i64) -> Result<Vec<PostRow>, DbError> {
        let sql = "SELECT id, author_id, title FROM posts ORDER BY id LIMIT ?1";
        self.select(sql.into(), vec![first], post_row).await
    }

    pub async fn first_authors(&self, first: i64) -> Result<Vec<AuthorRow>, DbError> {
        let sql = "SELECT id, name FROM authors ORDER BY id LIMIT ?1";
        self.select(sql.into(), vec![first], author_row).await
    }

    pub async fn authors(&self, ids: &[i64]) -> Result<Vec<AuthorRow>, DbError> {
        let sql = format!("SELECT id, name FROM authors WHERE id IN ({})", marks(ids));
        self.select(sql, ids.to_vec(), author_row).await
    }

    /// Posts of these authors, each author's in id order.
    pub async fn posts_of_authors(&self, author_ids: &[i64]) -> Result<Vec<PostRow>, DbError> {
        let sql = format!(
            "SELECT id, author_id, title FROM posts WHERE author_id IN ({}) ORDER BY id",
            marks(author_ids)
        );
        self.select(sql, author_ids.to_vec(), post_row).await
    }

    /// Comments on these posts, each post's in id order.
    pub async fn comments_on_posts(&self, post_ids: &[i64]) -> Result<Vec<CommentRow>, DbError> {
        if let Some(fault) = self
            .fault
            .as_ref()
            .filter(|f| post_ids.contains(&f.post_id))
        {
            fault
                .refused
                .lock()
                .expect("not poisoned")
                .extend_from_slice(post_ids);
            return Err(DbError::Injected {
                post_id: fault.post_id,
            });
        }
        let sql = format!(
            "SELECT id, post_id, author_id, body FROM comments WHERE post_id IN ({}) ORDER BY id",
            marks(post_ids)
        );
        self.select(sql, post_ids.to_vec(), comment_row).await
    }

    /// Executes one statement: the only place SQL runs, so the count is
    /// every statement.
    async fn select<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<i64>,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.pool
            .run(move |connection| {
                let mut statement = connection.prepare_cached(&sql)?;
                let rows = statement.query_map(params_from_iter(&params), row)?;
                rows.collect()
            })
            .await
            .map_err(DbError::Sqlite)
    }
}

/// `?,?,?` for an `IN (...)` of `keys.len()` parameters.
fn marks(keys: &[i64]) -> String {
    vec!["?"; keys.len()].join(",")
}

fn author_row(row: &Row<'_>) -> rusqlite::Result<AuthorRow> {
    Ok(AuthorRow {
        id: row.get(0)?,
        name: Arc::from(row.get::<_, String>(1)?),
    })
}

fn post_row(row: &Row<'_>) -> rusqlite::Result<PostRow> {
    Ok(PostRow {
        id: row.get(0)?,
        author_id: row.get(1)?,
        title: Arc::from(row.get::<_, String>(2)?),
    })
}

fn comment_row(row: &Row<'_>) -> rusqlite::Result<CommentRow> {
    Ok(CommentRow {
        id: row.get(0)?,
        post_id: row.get(1)?,
        author_id: row.get(2)?,
        body: Arc::from(row.get::<_, String>(3)?),
    })
}
