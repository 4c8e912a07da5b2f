//! Where rotated refresh tokens live between runs, and the lock that keeps
//! two processes from spending the same refresh token.
//!
//! The trait lives in `auth` because `auth` comes before `store` in the data
//! flow; `crate::token_store` implements it for the project's database
//! (SQLite or PostgreSQL), beside the store, which stays free of auth.

use async_trait::async_trait;

use crate::secret::Secret;

/// Why a store operation failed. Must never carry a token value.
pub type StoreFailure = Box<dyn std::error::Error + Send + Sync>;

/// Durable storage of rotated refresh tokens, one per named auth.
#[async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// The stored refresh token of `auth`, if a rotation was ever stored.
    async fn load(&self, auth: &str) -> Result<Option<Secret>, StoreFailure>;

    /// Take the refresh lock of `auth` (across processes, where the store
    /// can) and read the stored refresh token under it: another process may
    /// have rotated it while we waited. The lock is held until the guard is
    /// finished or dropped.
    async fn begin_refresh(&self, auth: &str) -> Result<Box<dyn RefreshGuard>, StoreFailure>;
}

/// A held refresh lock. Dropping it without `finish` releases the lock and
/// stores nothing (the refresh failed).
#[async_trait]
pub trait RefreshGuard: Send {
    /// The refresh token stored when the lock was taken.
    fn stored(&self) -> Option<Secret>;

    /// Durably store `rotated` (when the server rotated the refresh token)
    /// and release the lock. Returns only once the new token is committed,
    /// so the caller may then use the new access token.
    async fn finish(self: Box<Self>, rotated: Option<Secret>) -> Result<(), StoreFailure>;
}

/// For commands that keep nothing between runs (validate, dry runs, tests):
/// stores nothing and locks nothing. A `TokenSource` still remembers a
/// rotated refresh token in memory for the rest of the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTokenStore;

#[async_trait]
impl TokenStore for NoTokenStore {
    async fn load(&self, _auth: &str) -> Result<Option<Secret>, StoreFailure> {
        Ok(None)
    }

    async fn begin_refresh(&self, _auth: &str) -> Result<Box<dyn RefreshGuard>, StoreFailure> {
        Ok(Box::new(NoGuard))
    }
}

struct NoGuard;

#[async_trait]
impl RefreshGuard for NoGuard {
    fn stored(&self) -> Option<Secret> {
        None
    }

    async fn finish(self: Box<Self>, _rotated: Option<Secret>) -> Result<(), StoreFailure> {
        Ok(())
    }
}
