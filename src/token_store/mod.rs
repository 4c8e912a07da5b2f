//! Rotated OAuth2 refresh tokens in the project's database, and the lock
//! that keeps two processes sharing the database from spending one
//! refresh token twice: auth's [`TokenStore`], implemented beside the store
//! rather than inside it, so the store stays synchronous and free of auth.
//! [`DbTokenStore`] is what the runner hands auth: it forwards to
//! `sqlite.rs` (an OS file lock beside the database) or `postgres.rs` (an
//! advisory lock). Each keeps its own connections and creates the token
//! table if needed, so it does not depend on a [`crate::store::Store`]
//! being open.
//!
//! The promises both keep: the stored token is read under the refresh
//! lock (another process may have rotated it meanwhile), no database
//! transaction spans the token request, and a rotated token is committed
//! before the guard's `finish` returns, so the new access token is only
//! handed out once its refresh token is safe.

mod postgres;
mod sqlite;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use async_trait::async_trait;

use crate::auth::oauth::{RefreshGuard, StoreFailure, TokenStore};
use crate::plan::Database;
use crate::secret::Secret;
use crate::store::StoreError;
use postgres::PgTokenStore;
pub use sqlite::SqliteTokenStore;

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
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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
        sqlite::LOCK_TIMEOUT.as_secs()
    )]
    LockTimeout { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Run blocking database work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TokensError> + Send + 'static,
) -> Result<T, StoreFailure> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(TokensError::Task.into()),
    }
}
