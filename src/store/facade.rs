//! [`Store`] and [`StoreReader`]: what the rest of apisync holds. Each
//! forwards every call to the backend the [`Database`] named, SQLite
//! ([`SqliteStore`], the files beside this one) or PostgreSQL
//! ([`PgStore`], `postgres/`).
//!
//! Adding a store method: write it on `SqliteStore` (an `impl SqliteStore`
//! block in any file of `store/`) and on `PgStore` (`impl PgStore` in any
//! file of `store/postgres/`) with the same signature, then add one
//! forwarding line here: `pub fn x(&mut self, a: A) -> R { both!(mut self, db => db.x(a)) }`.
//! The compiler then refuses a backend that lacks it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use super::error::StoreError;
use super::leases::LeaseOutcome;
use super::open::SqliteStore;
use super::postgres::{PgReader, PgStore};
use super::reader::SqliteReader;
use super::shards::{ClaimEnd, HeldClaim, StreamClaim, StreamState};
use super::types::{JobStatus, Reset, RunId, RunOutcome, RunRecord, StreamKey, TableSpec};
use crate::plan::Database;
use crate::record::Record;

/// Copies SQLite's WAL into the database when called (see
/// [`Store::wal_checkpointer`]).
pub type WalCheckpointer = Box<dyn FnMut() -> Result<(), StoreError> + Send + 'static>;

/// The store: one per thread that writes (the writer), plus short-lived
/// ones for status, leases and metrics. `Send`, not `Sync`.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    /// Sharded streams this store's process claimed and is running: their
    /// pages check the claim inside their transaction (see
    /// [`Store::claim_stream`]).
    claims: HashMap<StreamKey, HeldClaim>,
    /// Jobs whose lease this store took, and the holder it took them as:
    /// every page, end of stream and end of pass of such a job checks the
    /// lease inside its transaction, so a process that lost its lease to
    /// another (its heartbeat went stale) stops writing at once.
    leases: HashMap<String, String>,
}

#[derive(Debug)]
pub(crate) enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// The same call on whichever backend this is. `mut self` for `&mut self`
/// methods.
macro_rules! both {
    (mut $self:ident, $db:ident => $call:expr) => {
        match &mut $self.backend {
            Backend::Sqlite($db) => $call,
            Backend::Postgres($db) => $call,
        }
    };
    ($self:ident, $db:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($db) => $call,
            Backend::Postgres($db) => $call,
        }
    };
}

impl Store {
    /// Open (creating if needed) the database and bring apisync's own tables
    /// up to date. PostgreSQL: connects, TLS as the URL's sslmode says.
    pub fn open(database: &Database) -> Result<Store, StoreError> {
        let backend = match database {
            Database::Sqlite(path) => Backend::Sqlite(SqliteStore::open(path)?),
            Database::Postgres(url) => Backend::Postgres(PgStore::open(url)?),
        };
        Ok(Store {
            backend,
            claims: HashMap::new(),
            leases: HashMap::new(),
        })
    }

    /// A private in-memory SQLite database (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(SqliteStore::open_in_memory()?),
            claims: HashMap::new(),
            leases: HashMap::new(),
        })
    }

    /// Copy SQLite's WAL into the database; nothing on PostgreSQL.
    pub fn checkpoint_wal(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.checkpoint_wal(),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// See [`SqliteStore::wal_checkpointer`]; None on PostgreSQL (no WAL to
    /// copy by hand).
    pub fn wal_checkpointer(&self) -> Result<Option<WalCheckpointer>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .wal_checkpointer()?
                .map(|c| Box::new(c) as WalCheckpointer)),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Undo the switch-off of SQLite's automatic WAL checkpoint; nothing on
    /// PostgreSQL.
    pub fn restore_wal_autocheckpoint(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.restore_wal_autocheckpoint(),
            Backend::Postgres(_) => Ok(()),
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
        let claim = self.claims.get(stream);
        let lease = self.leases.get(&stream.job).map(String::as_str);
        both!(mut self, db => db.apply_page(stream, table, run_id, records, position, claim, lease))
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
        let claim = self.claims.get(stream);
        let lease = self.leases.get(&stream.job).map(String::as_str);
        both!(mut self, db => db.apply_last_page(stream, table, run_id, records, mark, claim, lease))
    }

    /// Create the table `apply_page` writes (or add new declared columns).
    pub fn prepare_table(&mut self, table: &TableSpec) -> Result<(), StoreError> {
        both!(mut self, db => db.prepare_table(table))
    }

    /// Put a replace job's staging table in place of the live one.
    pub fn swap_replace(&mut self, table: &TableSpec) -> Result<(), StoreError> {
        both!(mut self, db => db.swap_replace(table))
    }

    pub fn load_checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        both!(self, db => db.load_checkpoint(stream))
    }

    pub fn load_mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        both!(self, db => db.load_mark(stream))
    }

    pub fn clear_checkpoint(&mut self, stream: &StreamKey) -> Result<(), StoreError> {
        both!(mut self, db => db.clear_checkpoint(stream))
    }

    pub fn finish_stream(
        &mut self,
        stream: &StreamKey,
        run_id: RunId,
        mark: Option<&str>,
    ) -> Result<(), StoreError> {
        let claim = self.claims.get(stream);
        let lease = self.leases.get(&stream.job).map(String::as_str);
        both!(mut self, db => db.finish_stream(stream, run_id, mark, claim, lease))
    }

    pub fn finished_partitions(&self, job: &str) -> Result<Vec<String>, StoreError> {
        both!(self, db => db.finished_partitions(job))
    }

    pub fn complete_job_pass(&mut self, job: &str, table: &TableSpec) -> Result<(), StoreError> {
        let lease = self.leases.get(job).map(String::as_str);
        both!(mut self, db => db.complete_job_pass(job, table, lease))
    }

    pub fn complete_backfill(&mut self, job: &str) -> Result<(), StoreError> {
        both!(mut self, db => db.complete_backfill(job))
    }

    pub fn reset_job(&mut self, job: &str, table: &str, reset: Reset) -> Result<(), StoreError> {
        both!(mut self, db => db.reset_job(job, table, reset))
    }

    pub fn reset_stream(&mut self, stream: &StreamKey, reset: Reset) -> Result<(), StoreError> {
        both!(mut self, db => db.reset_stream(stream, reset))
    }

    pub fn begin_run(&mut self, job: &str) -> Result<RunId, StoreError> {
        both!(mut self, db => db.begin_run(job))
    }

    pub fn finish_run(&mut self, run_id: RunId, outcome: &RunOutcome) -> Result<(), StoreError> {
        both!(mut self, db => db.finish_run(run_id, outcome))
    }

    pub fn last_success_starts(
        &self,
        jobs: &[&str],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        both!(self, db => db.last_success_starts(jobs))
    }

    pub fn status(&self, jobs: &[(&str, &str)]) -> Result<Vec<JobStatus>, StoreError> {
        both!(self, db => db.status(jobs))
    }

    /// The last `limit` runs of `job`, newest first.
    pub fn recent_runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        both!(self, db => db.recent_runs(job, limit))
    }

    pub fn try_acquire_lease(
        &mut self,
        job: &str,
        holder: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<LeaseOutcome, StoreError> {
        let outcome =
            both!(mut self, db => db.try_acquire_lease(job, holder, stale_after, &is_dead))?;
        if let LeaseOutcome::Acquired { .. } = outcome {
            self.leases.insert(job.to_string(), holder.to_string());
        }
        Ok(outcome)
    }

    pub fn renew_lease(&mut self, job: &str, holder: &str) -> Result<bool, StoreError> {
        both!(mut self, db => db.renew_lease(job, holder))
    }

    pub fn release_lease(&mut self, job: &str, holder: &str) -> Result<(), StoreError> {
        if self.leases.get(job).is_some_and(|held| held == holder) {
            self.leases.remove(job);
        }
        both!(mut self, db => db.release_lease(job, holder))
    }

    pub fn distinct_values(&self, table: &str, pointer: &str) -> Result<Vec<String>, StoreError> {
        both!(self, db => db.distinct_values(table, pointer))
    }

    pub fn table_rows(&self, table: &str) -> Result<Vec<String>, StoreError> {
        both!(self, db => db.table_rows(table))
    }

    pub fn count_rows(&self, table: &str) -> Result<u64, StoreError> {
        both!(self, db => db.count_rows(table))
    }

    /// One row's stored `_pk` and `_data` text, or `None` when none has a key.
    pub fn key_sample(&self, table: &str) -> Result<Option<(String, String)>, StoreError> {
        both!(self, db => db.key_sample(table))
    }

    /// Tests: run SQL statements as given.
    #[cfg(test)]
    pub(crate) fn exec_sql(&mut self, sql: &str) {
        both!(mut self, db => db.exec_sql(sql))
    }

    /// Tests: every row of a query, each value as text (NULL as None).
    #[cfg(test)]
    pub(crate) fn query_text(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        both!(mut self, db => db.query_text(sql))
    }
}

/// Read-only access beside the writer: partition values of a `from_job`
/// job, read in pages while the writer keeps writing.
#[derive(Debug)]
pub struct StoreReader {
    backend: ReaderBackend,
}

#[derive(Debug)]
enum ReaderBackend {
    Sqlite(SqliteReader),
    Postgres(PgReader),
}

macro_rules! reader {
    ($self:ident, $db:ident => $call:expr) => {
        match &$self.backend {
            ReaderBackend::Sqlite($db) => $call,
            ReaderBackend::Postgres($db) => $call,
        }
    };
}

impl StoreReader {
    /// The schema must exist already (a [`Store`] opened it first).
    pub fn open(database: &Database) -> Result<StoreReader, StoreError> {
        let backend = match database {
            Database::Sqlite(path) => ReaderBackend::Sqlite(SqliteReader::open(path)?),
            Database::Postgres(url) => ReaderBackend::Postgres(PgReader::open(url)?),
        };
        Ok(StoreReader { backend })
    }

    /// Look at `database` without changing anything (`run --dry-run`): no
    /// migration, no file created; `None` when a SQLite file does not exist.
    pub fn open_to_peek(database: &Database) -> Result<Option<StoreReader>, StoreError> {
        let backend = match database {
            Database::Sqlite(path) if !path.exists() => return Ok(None),
            Database::Sqlite(path) => ReaderBackend::Sqlite(SqliteReader::open_to_peek(path)?),
            Database::Postgres(url) => ReaderBackend::Postgres(PgReader::open(url)?),
        };
        Ok(Some(StoreReader { backend }))
    }

    /// Whether apisync's state is here in this version's layout.
    pub fn has_state(&self) -> Result<bool, StoreError> {
        reader!(self, db => db.has_state())
    }

    /// The saved position of `stream`.
    pub fn checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        reader!(self, db => db.checkpoint(stream))
    }

    /// The high-water mark of `stream`.
    pub fn mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        reader!(self, db => db.mark(stream))
    }

    /// Whether `table` exists (a parent job that never ran has no table).
    pub fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        reader!(self, db => db.has_table(table))
    }

    /// Up to `limit` distinct non-null values at `pointer` in `table`, as
    /// text, in byte order, after `after` (keyset pagination).
    pub fn distinct_values_page(
        &self,
        table: &str,
        pointer: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        reader!(self, db => db.distinct_values_page(table, pointer, after, limit))
    }

    /// Which of `partitions` of `job` have finished in its current pass.
    pub fn finished_among(
        &self,
        job: &str,
        partitions: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        reader!(self, db => db.finished_among(job, partitions))
    }
}

/// Sharded runs (see `shards.rs`): what the processes of one invocation
/// share through the database.
impl Store {
    pub fn register_holder(
        &mut self,
        invocation: &str,
        holder: &str,
        shard: u32,
        steal: bool,
    ) -> Result<String, StoreError> {
        both!(mut self, db => db.register_holder(invocation, holder, shard, steal))
    }

    pub fn invocation_started_at(&mut self, invocation: &str) -> Result<String, StoreError> {
        both!(mut self, db => db.invocation_started_at(invocation))
    }

    pub fn last_success_starts_before(
        &self,
        jobs: &[&str],
        invocation: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        both!(self, db => db.last_success_starts_before(jobs, invocation))
    }

    pub fn discard_empty_run(&mut self, run_id: RunId) -> Result<(), StoreError> {
        both!(mut self, db => db.discard_empty_run(run_id))
    }

    pub fn renew_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        both!(mut self, db => db.renew_holder(invocation, holder))
    }

    pub fn end_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        both!(mut self, db => db.end_holder(invocation, holder))
    }

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
        let claim = both!(mut self, db => db.claim_stream(invocation, stream, shard, holder, retry_failed, stale_after, &is_dead))?;
        if let StreamClaim::Claimed { .. } = claim {
            let held = HeldClaim {
                invocation: invocation.to_string(),
                holder: holder.to_string(),
            };
            self.claims.insert(stream.clone(), held);
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
        self.claims.remove(stream);
        both!(mut self, db => db.end_claimed_stream(invocation, stream, holder, end))
    }

    pub fn done_in_invocation(
        &self,
        invocation: &str,
        job: &str,
        partitions: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        both!(self, db => db.done_in_invocation(invocation, job, partitions))
    }

    pub fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<Vec<StreamState>, StoreError> {
        both!(self, db => db.stream_states(invocation, job, stale_after, &is_dead))
    }

    pub fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<BTreeSet<u32>, StoreError> {
        both!(self, db => db.live_shards(invocation, stale_after, &is_dead))
    }

    pub fn job_completed_in(&self, invocation: &str, job: &str) -> Result<bool, StoreError> {
        both!(self, db => db.job_completed_in(invocation, job))
    }

    pub fn close_dead_runs(
        &mut self,
        invocation: &str,
        me: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<super::OtherRuns, StoreError> {
        both!(mut self, db => db.close_dead_runs(invocation, me, stale_after, &is_dead))
    }

    pub fn complete_sharded_pass(
        &mut self,
        invocation: &str,
        job: &str,
        table: &TableSpec,
    ) -> Result<bool, StoreError> {
        both!(mut self, db => db.complete_sharded_pass(invocation, job, table))
    }

    pub fn begin_shard_run(
        &mut self,
        job: &str,
        invocation: &str,
        shard: u32,
        holder: &str,
    ) -> Result<RunId, StoreError> {
        both!(mut self, db => db.begin_shard_run(job, invocation, shard, holder))
    }
}
