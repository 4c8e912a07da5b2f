//! Rotated refresh tokens on PostgreSQL. The guard is a connection of its
//! own holding the session advisory lock `refresh:AUTH` while the token
//! request is in flight: a second process waits for it, then reads the
//! rotated token. No transaction stays open across the request (the read
//! and the write are one statement each): an idle-in-transaction session
//! held for minutes would hold back vacuum and table locks, and be killed
//! by `idle_in_transaction_session_timeout`. A crashed process's connection
//! closes and the server releases the lock, so no stale lock is left behind.

use async_trait::async_trait;

use super::{TokensError, blocking};
use crate::auth::oauth::{RefreshGuard, StoreFailure, TokenStore};
use crate::plan::PostgresUrl;
use crate::secret::Secret;
use crate::store::{LOCK_SPACE, PgConn, migrate_postgres as migrate};

/// apisync's refresh tokens, in its own schema (migration 5).
const TABLE: &str = "_apisync.refresh_tokens";

/// Waiting for another process's refresh: longer than its token request
/// can take with retries (as on SQLite).
const LOCK_TIMEOUT: &str = "300s";

#[derive(Debug, Clone)]
pub(crate) struct PgTokenStore {
    url: PostgresUrl,
}

impl PgTokenStore {
    /// Connect once to apply the migrations (the token table is one).
    /// Blocking: call before the runtime is busy.
    pub(crate) fn open(url: &PostgresUrl) -> Result<PgTokenStore, TokensError> {
        let conn = PgConn::connect(url)?;
        migrate(&conn)?;
        Ok(PgTokenStore { url: url.clone() })
    }
}

fn read(client: &mut postgres::Client, auth: &str) -> Result<Option<Secret>, postgres::Error> {
    client
        .query_opt(
            format!("SELECT refresh_token FROM {TABLE} WHERE auth = $1").as_str(),
            &[&auth],
        )
        .map(|row| row.map(|r| Secret::new(r.get::<_, String>(0))))
}

fn sql_error(source: postgres::Error) -> TokensError {
    TokensError::Database {
        source: Box::new(source),
    }
}

#[async_trait]
impl TokenStore for PgTokenStore {
    async fn load(&self, auth: &str) -> Result<Option<Secret>, StoreFailure> {
        let (url, auth) = (self.url.clone(), auth.to_string());
        blocking(move || {
            let conn = PgConn::connect(&url)?;
            conn.run(move |s| read(&mut s.client, &auth))?
                .map_err(sql_error)
        })
        .await
    }

    async fn begin_refresh(&self, auth: &str) -> Result<Box<dyn RefreshGuard>, StoreFailure> {
        let (url, auth) = (self.url.clone(), auth.to_string());
        let guard = blocking(move || {
            let conn = PgConn::connect(&url)?;
            let name = auth.clone();
            // Read under the lock: another process may have rotated it.
            let stored = conn
                .run(move |s| {
                    s.client
                        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))?;
                    s.client.execute(
                        "SELECT pg_advisory_lock($1, hashtext($2))",
                        &[&LOCK_SPACE, &lock_name(&name)],
                    )?;
                    read(&mut s.client, &name)
                })?
                .map_err(sql_error)?;
            Ok(PgGuard {
                conn: Some(conn),
                auth,
                stored,
            })
        })
        .await?;
        Ok(Box::new(guard))
    }
}

fn lock_name(auth: &str) -> String {
    format!("refresh:{auth}")
}

/// The connection holding the session lock.
struct PgGuard {
    conn: Option<PgConn>,
    auth: String,
    stored: Option<Secret>,
}

#[async_trait]
impl RefreshGuard for PgGuard {
    fn stored(&self) -> Option<Secret> {
        self.stored.clone()
    }

    async fn finish(mut self: Box<Self>, rotated: Option<Secret>) -> Result<(), StoreFailure> {
        let conn = self.conn.take().ok_or(TokensError::Task)?;
        let auth = self.auth.clone();
        blocking(move || {
            conn.run(move |s| {
                if let Some(token) = rotated {
                    s.client.execute(
                        format!(
                            "INSERT INTO {TABLE} (auth, refresh_token, updated_at)
                             VALUES ($1, $2, $3)
                             ON CONFLICT (auth) DO UPDATE SET
                               refresh_token = excluded.refresh_token,
                               updated_at = excluded.updated_at"
                        )
                        .as_str(),
                        &[&auth, &token.expose(), &chrono::Utc::now().to_rfc3339()],
                    )?;
                }
                s.client
                    .execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))",
                        &[&LOCK_SPACE, &lock_name(&auth)],
                    )
                    .map(drop)
            })?
            .map_err(sql_error)
        })
        .await
    }
}

impl Drop for PgGuard {
    /// The refresh failed: closing the connection releases the lock; off
    /// the async workers when there is a runtime.
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
