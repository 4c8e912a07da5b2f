//! Rotated OAuth2 refresh tokens in the database, and the lock that keeps
//! two processes sharing the database from spending one refresh token twice.
//! [`DbTokenStore`] is what the runner holds: it forwards to the SQLite store
//! here or to the PostgreSQL one (`postgres/tokens.rs`, an advisory lock).
//!
//! On SQLite the lock is an OS file lock on a sibling file of the database
//! (`<db>.<auth>.refresh-lock`), not the database's write lock: a refresh
//! holds it across its token request (up to minutes with retries), and the
//! write lock held that long made every other writer (pages, checkpoints,
//! lease heartbeats, other processes) fail after its busy timeout. The
//! stored token is read in one short statement and a rotated one written in
//! another; no transaction spans network I/O. A crashed process releases
//! the file lock with its file handles, so no stale lock is left behind.
//! The store has its own connections and creates its own table, so it does
//! not depend on the rest of the store.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::postgres::tokens::PgTokenStore;
use crate::auth::oauth::{RefreshGuard, StoreFailure, TokenStore};
use crate::plan::Database;
use crate::secret::Secret;

/// The table of rotated refresh tokens (one place, for a rename).
pub(crate) const TABLE: &str = "_apisync_refresh_tokens";
const SCHEMA: &str = include_str!("../../migrations/0002_refresh_tokens.sql");
/// Short reads and writes.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for another process's refresh: longer than its token request
/// can take with retries (4 attempts of at most 30 s plus backoff).
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a waiter tries the refresh lock again. Polling (rather than a
/// blocking `lock` on a thread) lets a waiter give up at `LOCK_TIMEOUT` and
/// be dropped at once when the process stops.
const LOCK_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error(
        "cannot open the refresh token table in {path}: {source} (hint: check that the database file is writable)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("refresh token table: {source}")]
    Database {
        #[source]
        source: Box<super::error::DbError>,
    },
    #[error(
        "cannot open the refresh lock file {path}: {source} (hint: check that its folder is writable)"
    )]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another process held the refresh lock {path} for more than {}s (hint: check for a stuck apisync process refreshing the same auth)",
        LOCK_TIMEOUT.as_secs()
    )]
    LockTimeout { path: PathBuf },
    #[error(transparent)]
    Store(#[from] super::StoreError),
    #[error("the refresh token store task stopped unexpectedly")]
    Task,
}

/// Rotated refresh tokens in the project's database, whichever it is.
#[derive(Debug, Clone)]
pub struct DbTokenStore {
    backend: TokenBackend,
}

#[derive(Debug, Clone)]
enum TokenBackend {
    Sqlite(SqliteTokenStore),
    Postgres(PgTokenStore),
}

impl DbTokenStore {
    /// Create the token table if needed. Blocking: call before the runtime
    /// is busy (or from `spawn_blocking`).
    pub fn open(database: &Database) -> Result<DbTokenStore, TokensError> {
        let backend = match database {
            Database::Sqlite(path) => TokenBackend::Sqlite(SqliteTokenStore::open(path)?),
            Database::Postgres(url) => TokenBackend::Postgres(PgTokenStore::open(url)?),
        };
        Ok(DbTokenStore { backend })
    }
}

#[async_trait]
impl TokenStore for DbTokenStore {
    async fn load(&self, auth: &str) -> Result<Option<Secret>, StoreFailure> {
        match &self.backend {
            TokenBackend::Sqlite(store) => store.load(auth).await,
            TokenBackend::Postgres(store) => store.load(auth).await,
        }
    }

    async fn begin_refresh(&self, auth: &str) -> Result<Box<dyn RefreshGuard>, StoreFailure> {
        match &self.backend {
            TokenBackend::Sqlite(store) => store.begin_refresh(auth).await,
            TokenBackend::Postgres(store) => store.begin_refresh(auth).await,
        }
    }
}

impl From<rusqlite::Error> for TokensError {
    fn from(source: rusqlite::Error) -> Self {
        TokensError::Database {
            source: Box::new(source),
        }
    }
}

/// Refresh tokens in the SQLite database at `path`.
#[derive(Debug, Clone)]
pub struct SqliteTokenStore {
    path: PathBuf,
}

impl SqliteTokenStore {
    /// The token table of the database at `path`. Nothing is opened yet:
    /// each use connects and creates the table if needed. Opening the file
    /// here, before the run's own store, created a new database only to
    /// close it again (its WAL checkpointed, fsynced and deleted) at the
    /// start of every first run; most runs never touch a refresh token.
    pub fn open(path: &Path) -> Result<Self, TokensError> {
        Ok(SqliteTokenStore {
            path: path.to_path_buf(),
        })
    }
}

fn connect(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    // A stored rotation must survive a power cut: it replaced the old token.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The run's migrations create it too; a token command may come first.
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn read(conn: &Connection, auth: &str) -> rusqlite::Result<Option<Secret>> {
    conn.query_row(
        &format!("SELECT refresh_token FROM {TABLE} WHERE auth = ?1"),
        params![auth],
        |row| row.get::<_, String>(0),
    )
    .optional()
    .map(|token| token.map(Secret::new))
}

/// Store `token` as the refresh token of `auth`, in one short statement.
fn write(conn: &Connection, auth: &str, token: &Secret) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO {TABLE} (auth, refresh_token, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (auth) DO UPDATE SET
               refresh_token = excluded.refresh_token, updated_at = excluded.updated_at"
        ),
        params![auth, token.expose(), chrono::Utc::now().to_rfc3339()],
    )
    .map(drop)
}

/// The lock file of `auth` beside the database: one per auth, so a token
/// endpoint that hangs for one auth does not hold up another's refresh.
fn lock_path(db: &Path, auth: &str) -> PathBuf {
    let plain = !auth.is_empty()
        && auth.len() <= 64
        && auth
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain {
        auth.to_string()
    } else {
        format!("{:016x}", fnv1a(auth.as_bytes()))
    };
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{key}.refresh-lock"));
    db.with_file_name(name)
}

/// A hash that every process and version computes alike (std's is not
/// promised to), so two processes name the same lock file.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Take the exclusive lock on `path`, waiting up to `LOCK_TIMEOUT` for
/// another process to release it. Released when the file is closed.
async fn lock(path: PathBuf) -> Result<File, TokensError> {
    let opened = path.clone();
    let file = tokio::task::spawn_blocking(move || {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(opened)
    })
    .await
    .map_err(|_| TokensError::Task)?
    .map_err(|source| TokensError::Lock {
        path: path.clone(),
        source,
    })?;
    let deadline = tokio::time::Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(LOCK_POLL).await;
            }
            Err(TryLockError::WouldBlock) => return Err(TokensError::LockTimeout { path }),
            Err(TryLockError::Error(source)) => return Err(TokensError::Lock { path, source }),
        }
    }
}

/// Run blocking database work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TokensError> + Send + 'static,
) -> Result<T, StoreFailure> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(TokensError::Task.into()),
    }
}

#[async_trait]
impl TokenStore for SqliteTokenStore {
    async fn load(&self, auth: &str) -> Result<Option<Secret>, StoreFailure> {
        let (path, auth) = (self.path.clone(), auth.to_string());
        blocking(move || Ok(read(&connect(&path, BUSY_TIMEOUT)?, &auth)?)).await
    }

    async fn begin_refresh(&self, auth: &str) -> Result<Box<dyn RefreshGuard>, StoreFailure> {
        let held = lock(lock_path(&self.path, auth)).await?;
        // Read under the lock (another process may have rotated it), in
        // one statement: no transaction stays open.
        let (path, name) = (self.path.clone(), auth.to_string());
        let stored = blocking(move || Ok(read(&connect(&path, BUSY_TIMEOUT)?, &name)?)).await?;
        Ok(Box::new(SqliteGuard {
            path: self.path.clone(),
            auth: auth.to_string(),
            stored,
            _held: held,
        }))
    }
}

/// The held refresh lock. Dropping it closes the lock file, which releases
/// the lock: a failed refresh stores nothing.
struct SqliteGuard {
    path: PathBuf,
    auth: String,
    stored: Option<Secret>,
    _held: File,
}

#[async_trait]
impl RefreshGuard for SqliteGuard {
    fn stored(&self) -> Option<Secret> {
        self.stored.clone()
    }

    async fn finish(self: Box<Self>, rotated: Option<Secret>) -> Result<(), StoreFailure> {
        let Some(token) = rotated else {
            return Ok(());
        };
        let (path, auth) = (self.path.clone(), self.auth.clone());
        // The lock (`self`) is held until the rotation is committed.
        blocking(move || Ok(write(&connect(&path, BUSY_TIMEOUT)?, &auth, &token)?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_db::backends;

    #[tokio::test(flavor = "multi_thread")]
    async fn finish_commits_and_drop_rolls_back() {
        for db in backends() {
            let store = DbTokenStore::open(&db.database).unwrap();
            assert!(store.load("crm").await.unwrap().is_none());

            let guard = store.begin_refresh("crm").await.unwrap();
            assert!(guard.stored().is_none());
            guard.finish(Some(Secret::new("rt-2"))).await.unwrap();
            assert_eq!(store.load("crm").await.unwrap().unwrap().expose(), "rt-2");

            let guard = store.begin_refresh("crm").await.unwrap();
            assert_eq!(guard.stored().unwrap().expose(), "rt-2");
            drop(guard);
            let guard = store.begin_refresh("crm").await.unwrap();
            guard.finish(None).await.unwrap();
            assert_eq!(store.load("crm").await.unwrap().unwrap().expose(), "rt-2");
            assert!(store.load("other").await.unwrap().is_none());
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn second_lock_waits_for_the_first() {
        for db in backends() {
            let first = DbTokenStore::open(&db.database).unwrap();
            let second = DbTokenStore::open(&db.database).unwrap();
            let held = first.begin_refresh("crm").await.unwrap();
            let waiting = tokio::spawn(async move {
                let guard = second.begin_refresh("crm").await.unwrap();
                guard.stored().map(|s| s.expose().to_string())
            });
            // Whenever the waiter got there, it reads under the lock, which it
            // gets only after this commit: it must see the rotation.
            held.finish(Some(Secret::new("rt-9"))).await.unwrap();
            assert_eq!(waiting.await.unwrap().as_deref(), Some("rt-9"));
        }
    }

    /// Issue 14 item 7: a held refresh lock (a token request in flight)
    /// leaves the database free: another connection takes the write lock
    /// at once (SQLite, busy timeout 0) or an exclusive lock on the token
    /// table without waiting (PostgreSQL: no transaction is left open).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_held_refresh_lock_leaves_the_database_free() {
        for db in backends() {
            let store = DbTokenStore::open(&db.database).unwrap();
            let held = store.begin_refresh("crm").await.unwrap();
            let database = db.database.clone();
            let other = tokio::task::spawn_blocking(move || match database {
                Database::Sqlite(path) => {
                    let conn = Connection::open(path).unwrap();
                    conn.busy_timeout(Duration::ZERO).unwrap();
                    conn.execute_batch(&format!(
                        "BEGIN IMMEDIATE; DELETE FROM {TABLE} WHERE auth = 'none'; COMMIT;"
                    ))
                    .map_err(|e| e.to_string())
                }
                Database::Postgres(url) => {
                    let conn = super::super::postgres::PgConn::connect(&url).unwrap();
                    conn.run(|s| {
                        // PostgreSQL keeps the table in apisync's schema.
                        s.client.batch_execute(
                            "BEGIN; LOCK TABLE _apisync.refresh_tokens IN ACCESS EXCLUSIVE MODE NOWAIT; COMMIT;",
                        )
                    })
                    .unwrap()
                    .map_err(|e| e.to_string())
                }
            });
            let result = other.await.unwrap();
            held.finish(Some(Secret::new("rt-2"))).await.unwrap();
            assert_eq!(result, Ok(()), "{}", db.database);
            assert_eq!(store.load("crm").await.unwrap().unwrap().expose(), "rt-2");
        }
    }

    #[test]
    fn one_lock_file_per_auth_beside_the_database() {
        let db = Path::new("data").join("apisync.db");
        assert_eq!(
            lock_path(&db, "crm_eu-2"),
            Path::new("data").join("apisync.db.crm_eu-2.refresh-lock")
        );
        let odd = lock_path(&db, "../x y");
        assert_eq!(odd.parent(), Some(Path::new("data")));
        assert_ne!(odd, lock_path(&db, "../x z"));
    }
}
