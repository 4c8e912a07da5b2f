//! Rotated OAuth2 refresh tokens in the database, and the lock that keeps
//! two processes sharing the database from spending one refresh token twice.
//! [`DbTokenStore`] is what the runner holds: it forwards to the SQLite store
//! here or to the PostgreSQL one (`postgres/tokens.rs`, an advisory lock).
//!
//! On SQLite the lock is a `BEGIN IMMEDIATE` transaction on a connection of its own,
//! held while the token request is in flight: a crashed process releases it
//! with its file handles, so no stale lease is ever left behind. It has its
//! own connection and creates its own table, so it does not depend on the
//! rest of the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::database::Database;
use super::postgres::tokens::PgTokenStore;
use crate::auth::oauth::{RefreshGuard, StoreFailure, TokenStore};
use crate::secret::Secret;

const SCHEMA: &str = include_str!("../../migrations/0002_refresh_tokens.sql");
/// Short reads and writes.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for another process's refresh: longer than its token request
/// can take with retries (4 attempts of at most 30 s plus backoff).
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

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
        "SELECT refresh_token FROM _apisync_refresh_tokens WHERE auth = ?1",
        params![auth],
        |row| row.get::<_, String>(0),
    )
    .optional()
    .map(|token| token.map(Secret::new))
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
        let (path, auth) = (self.path.clone(), auth.to_string());
        let guard = blocking(move || {
            let conn = connect(&path, LOCK_TIMEOUT)?;
            conn.execute_batch("BEGIN IMMEDIATE")?;
            // Read under the lock: another process may have rotated it.
            let stored = read(&conn, &auth)?;
            Ok(SqliteGuard {
                conn: Some(conn),
                auth,
                stored,
            })
        })
        .await?;
        Ok(Box::new(guard))
    }
}

/// The held `BEGIN IMMEDIATE` transaction.
struct SqliteGuard {
    conn: Option<Connection>,
    auth: String,
    stored: Option<Secret>,
}

#[async_trait]
impl RefreshGuard for SqliteGuard {
    fn stored(&self) -> Option<Secret> {
        self.stored.clone()
    }

    async fn finish(mut self: Box<Self>, rotated: Option<Secret>) -> Result<(), StoreFailure> {
        let conn = self.conn.take().ok_or(TokensError::Task)?;
        let auth = self.auth.clone();
        blocking(move || {
            if let Some(token) = rotated {
                conn.execute(
                    "INSERT INTO _apisync_refresh_tokens (auth, refresh_token, updated_at)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (auth) DO UPDATE SET
                       refresh_token = excluded.refresh_token, updated_at = excluded.updated_at",
                    params![auth, token.expose(), chrono::Utc::now().to_rfc3339()],
                )?;
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        })
        .await
    }
}

impl Drop for SqliteGuard {
    /// The refresh failed: roll back (closing the connection does) off the
    /// async workers when there is a runtime to do it on.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn_blocking(move || drop(conn));
                }
                Err(_) => drop(conn),
            }
        }
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
}
