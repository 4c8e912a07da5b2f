//! [`Store`] and [`StoreReader`]: what the rest of apisync holds. Each
//! opens the backend the [`Database`] names and hands every call to it:
//! through `Deref`, the operations of the traits in `backend.rs` are the
//! handle's own methods, so a new operation needs nothing here.
//!
//! `Store` wraps only the operations that touch its [`WriteGuards`] (pages,
//! the end of a stream or pass, taking and giving back claims and leases)
//! and those that take an `is_dead` test, which the traits take as `&dyn
//! Fn` so that they can be called on `dyn Backend`.

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::backend::{Backend, Reader};
use super::error::StoreError;
use super::guards::{HeldClaim, WriteGuards};
use super::postgres::{PgReader, PgStore};
use super::sqlite::{SqliteReader, SqliteStore};
use super::types::{
    ClaimEnd, LeaseOutcome, OtherRuns, RunId, StreamClaim, StreamKey, StreamState, TableSpec,
};
use crate::plan::Database;
use crate::record::Record;

/// The store: one per thread that writes (the writer), plus short-lived
/// ones for status, leases and metrics. `Send`, not `Sync`.
#[derive(Debug)]
pub struct Store {
    backend: Box<dyn Backend>,
    /// The claims and leases taken through this handle, which its writes
    /// check inside their transactions (see `guards.rs`).
    guards: WriteGuards,
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.backend
    }
}

impl Store {
    /// Open (creating if needed) the database and bring apisync's own tables
    /// up to date. PostgreSQL: connects, TLS as the URL's sslmode says.
    pub fn open(database: &Database) -> Result<Store, StoreError> {
        let backend: Box<dyn Backend> = match database {
            Database::Sqlite(path) => Box::new(SqliteStore::open(path)?),
            Database::Postgres(url) => Box::new(PgStore::open(url)?),
        };
        Ok(Store::with(backend))
    }

    /// A private in-memory SQLite database (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store::with(Box::new(SqliteStore::open_in_memory()?)))
    }

    fn with(backend: Box<dyn Backend>) -> Store {
        Store {
            backend,
            guards: WriteGuards::default(),
        }
    }

    /// A page's rows and the stream's next position, in one transaction.
    pub fn apply_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
    ) -> Result<(), StoreError> {
        let guard = self.guards.for_stream(stream);
        self.backend
            .apply_page(stream, table, run_id, records, position, guard)
    }

    /// An incremental window's last page, the next window's position and
    /// the window's end as the mark, in one transaction.
    pub fn apply_window_end(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
        mark: Option<&str>,
    ) -> Result<(), StoreError> {
        let guard = self.guards.for_stream(stream);
        self.backend
            .apply_window_end(stream, table, run_id, records, position, mark, guard)
    }

    /// The stream's last page and the end of the stream, in one transaction.
    pub fn apply_last_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        mark: Option<&str>,
    ) -> Result<(), StoreError> {
        let guard = self.guards.for_stream(stream);
        self.backend
            .apply_last_page(stream, table, run_id, records, mark, guard)
    }

    pub fn finish_stream(
        &mut self,
        stream: &StreamKey,
        run_id: RunId,
        mark: Option<&str>,
    ) -> Result<(), StoreError> {
        let guard = self.guards.for_stream(stream);
        self.backend.finish_stream(stream, run_id, mark, guard)
    }

    pub fn complete_job_pass(&mut self, job: &str, table: &TableSpec) -> Result<(), StoreError> {
        let guard = self.guards.for_job(job);
        self.backend.complete_job_pass(job, table, guard)
    }

    /// Take `job`'s lease; once taken, this handle's writes of the job
    /// check it.
    pub fn try_acquire_lease(
        &mut self,
        job: &str,
        holder: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<LeaseOutcome, StoreError> {
        let outcome = self
            .backend
            .try_acquire_lease(job, holder, stale_after, &is_dead)?;
        if let LeaseOutcome::Acquired { .. } = outcome {
            self.guards.leased(job, holder);
        }
        Ok(outcome)
    }

    pub fn release_lease(&mut self, job: &str, holder: &str) -> Result<(), StoreError> {
        self.guards.released(job, holder);
        self.backend.release_lease(job, holder)
    }

    /// Claim `stream` (see `Claims::claim_stream`); once claimed, this
    /// handle's writes of the stream check the claim.
    #[allow(clippy::too_many_arguments)]
    pub fn claim_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        shard: u32,
        holder: &str,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<StreamClaim, StoreError> {
        let claim = self.backend.claim_stream(
            invocation,
            stream,
            shard,
            holder,
            retry_failed,
            stale_after,
            &is_dead,
        )?;
        if let StreamClaim::Claimed { .. } = claim {
            let held = HeldClaim {
                invocation: invocation.to_string(),
                holder: holder.to_string(),
            };
            self.guards.claimed(stream, held);
        }
        Ok(claim)
    }

    pub fn end_claimed_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        holder: &str,
        end: ClaimEnd,
    ) -> Result<bool, StoreError> {
        self.guards.unclaimed(stream);
        self.backend
            .end_claimed_stream(invocation, stream, holder, end)
    }

    pub fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<Vec<StreamState>, StoreError> {
        self.backend
            .stream_states(invocation, job, stale_after, &is_dead)
    }

    pub fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<BTreeSet<u32>, StoreError> {
        self.backend.live_shards(invocation, stale_after, &is_dead)
    }

    pub fn close_dead_runs(
        &mut self,
        invocation: &str,
        me: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<OtherRuns, StoreError> {
        self.backend
            .close_dead_runs(invocation, me, stale_after, &is_dead)
    }
}

/// Read-only access beside the writer: partition values of a `from_job`
/// job, read in pages while the writer keeps writing.
#[derive(Debug)]
pub struct StoreReader {
    backend: Box<dyn Reader>,
}

impl Deref for StoreReader {
    type Target = dyn Reader;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl StoreReader {
    /// The schema must exist already (a [`Store`] opened it first).
    pub fn open(database: &Database) -> Result<StoreReader, StoreError> {
        let backend: Box<dyn Reader> = match database {
            Database::Sqlite(path) => Box::new(SqliteReader::open(path)?),
            Database::Postgres(url) => Box::new(PgReader::open(url)?),
        };
        Ok(StoreReader { backend })
    }

    /// Look at `database` without changing anything (`run --dry-run`): no
    /// migration, no file created; `None` when a SQLite file does not exist.
    pub fn open_to_peek(database: &Database) -> Result<Option<StoreReader>, StoreError> {
        let backend: Box<dyn Reader> = match database {
            Database::Sqlite(path) if !path.exists() => return Ok(None),
            Database::Sqlite(path) => Box::new(SqliteReader::open_to_peek(path)?),
            Database::Postgres(url) => Box::new(PgReader::open(url)?),
        };
        Ok(Some(StoreReader { backend }))
    }
}
