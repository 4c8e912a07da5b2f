//! Rotated refresh tokens in a SQLite database. The lock is an OS file lock on a sibling file of the database
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

use super::{TokensError, blocking};
use crate::auth::oauth::{RefreshGuard, StoreFailure, TokenStore};
use crate::secret::Secret;

/// The table of rotated refresh tokens (one place, for a rename).
pub(crate) const TABLE: &str = "_apisync_refresh_tokens";

const SCHEMA: &str = include_str!("../../migrations/0002_refresh_tokens.sql");

/// Short reads and writes.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waiting for another process's refresh: longer than its token request
/// can take with retries (4 attempts of at most 30 s plus backoff).
pub(super) const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a waiter tries the refresh lock again. Polling (rather than a
/// blocking `lock` on a thread) lets a waiter give up at `LOCK_TIMEOUT` and
/// be dropped at once when the process stops.
const LOCK_POLL: Duration = Duration::from_millis(50);

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
pub(super) fn lock_path(db: &Path, auth: &str) -> PathBuf {
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
