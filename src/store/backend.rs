//! What a database backend offers, one small trait per concern. `sqlite/`
//! and `postgres/` each implement every trait in the file of the same name
//! (`Pages` in `pages.rs`, `Claims` in `claims.rs`, ...); [`Backend`] is
//! their sum, and [`super::Store`] holds one as `Box<dyn Backend>`.
//!
//! Adding an operation: one method on the trait of its concern, one
//! implementation in each backend folder. [`super::Store`] exposes it
//! as is; it only wraps the few that check the write guards or take an
//! `is_dead` closure. A third backend is one new folder implementing these
//! traits (and [`Reader`]), plus one arm in `Store::open`.
//!
//! Backend-neutral decisions (who takes a lease or a claim, which table a
//! page goes to, ...) are not here but in `rules.rs`, which every backend
//! uses.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use super::error::StoreError;
use super::guards::Guard;
use super::types::{
    ClaimEnd, JobStatus, LeaseOutcome, OtherRuns, Reset, RunId, RunOutcome, RunRecord, StreamClaim,
    StreamKey, StreamState, TableSpec,
};
use crate::record::Record;

/// Whether another process (by its holder name) is known to be dead; the
/// caller's knowledge (a pid gone on this host), asked by lease and claim
/// decisions.
pub type IsDead<'a> = &'a dyn Fn(&str) -> bool;

/// Copies SQLite's WAL into the database when called (see
/// [`Wal::wal_checkpointer`]).
pub type WalCheckpointer = Box<dyn FnMut() -> Result<(), StoreError> + Send + 'static>;

/// Record tables: created from a job's output, new declared columns added,
/// a replace job's staging table swapped in.
pub trait Tables {
    /// Make sure the table `apply_page` writes exists with every declared
    /// column: the live table, or for replace the staging table.
    fn prepare_table(&mut self, table: &TableSpec) -> Result<(), StoreError>;

    /// Put a replace job's staging table in place of the live one, in one
    /// transaction.
    fn swap_replace(&mut self, table: &TableSpec) -> Result<(), StoreError>;
}

/// Pages and checkpoints: a page's rows and the stream's position commit
/// together, after `guard` is checked inside the same transaction.
pub trait Pages {
    /// A page's rows and the stream's next position, in one transaction.
    fn apply_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
        guard: Guard<'_>,
    ) -> Result<(), StoreError>;

    /// The stream's last page and the end of the stream (cleared
    /// checkpoint, new mark, partition finished), in one transaction.
    fn apply_last_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError>;

    /// The last page of an incremental window that another window follows:
    /// its rows, the stream's next position (the next window's start) and
    /// the mark (this window's end), in one transaction, so a crash either
    /// redoes the window's last page or starts the next window, never
    /// skips or repeats one.
    #[allow(clippy::too_many_arguments)]
    fn apply_window_end(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError>;

    /// The saved position JSON of an unfinished stream.
    fn load_checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError>;

    /// The incremental high-water mark JSON the stream's last finish stored.
    fn load_mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError>;

    /// Drop a saved cursor the API refused; the mark stays.
    fn clear_checkpoint(&mut self, stream: &StreamKey) -> Result<(), StoreError>;
}

/// Streams and passes: which partitions of a job's current pass finished,
/// the end of a pass, resets.
pub trait Streams {
    /// A stream's last page has committed: clear its checkpoint, store its
    /// mark and record it finished, in one transaction (after `guard`).
    fn finish_stream(
        &mut self,
        stream: &StreamKey,
        run_id: RunId,
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError>;

    /// A pass of `job` (whose partitions come from `parent`'s rows) is
    /// about to read its parents: when none is under way, record now as
    /// its start (see `rules::pass_start_sql`), which its completion
    /// stores as the job's last finished pass start. A pass already under
    /// way keeps its start; one under way whose start was never recorded
    /// (finished partitions but no start) gets none, so its completion
    /// leaves the next pass a full one.
    ///
    /// `parent_table` is the parent's table: rows a replace parent wrote
    /// to its staging table become visible only at its swap, perhaps in a
    /// later run, so the oldest of them counts as a write still under way.
    fn begin_pass(&mut self, job: &str, parent: &str, parent_table: &str)
    -> Result<(), StoreError>;

    /// Partitions of `job` finished in its current pass, sorted.
    fn finished_partitions(&self, job: &str) -> Result<Vec<String>, StoreError>;

    /// Every partition of the pass finished: swap a replace table in,
    /// forget the finished set and keep the pass's start as the job's last
    /// finished pass start, in one transaction (after checking the
    /// job's lease in `guard`, if it runs under one).
    fn complete_job_pass(
        &mut self,
        job: &str,
        table: &TableSpec,
        guard: Guard<'_>,
    ) -> Result<(), StoreError>;

    /// Every slice of a backfill finished: forget its finished set only.
    fn complete_backfill(&mut self, job: &str) -> Result<(), StoreError>;

    /// `apisync reset`: forget checkpoints, finished partitions and (unless
    /// kept) marks of `job`, and drop its staging table.
    fn reset_job(&mut self, job: &str, table: &str, reset: Reset) -> Result<(), StoreError>;

    /// `apisync reset JOB --partition KEY`: the same for one stream.
    fn reset_stream(&mut self, stream: &StreamKey, reset: Reset) -> Result<(), StoreError>;
}

/// The run history and the `status` report built from it.
pub trait Runs {
    /// Record that a run of `job` started (`running` until finished).
    fn begin_run(&mut self, job: &str) -> Result<RunId, StoreError>;

    fn finish_run(&mut self, run_id: RunId, outcome: &RunOutcome) -> Result<(), StoreError>;

    /// Per job: when its last successful run started (RFC 3339, UTC).
    fn last_success_starts(&self, jobs: &[&str]) -> Result<BTreeMap<String, String>, StoreError>;

    /// `(job, table)` pairs to what `apisync status` shows of each.
    fn status(&self, jobs: &[(&str, &str)]) -> Result<Vec<JobStatus>, StoreError>;

    /// The last `limit` runs of `job`, newest first.
    fn recent_runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError>;
}

/// Job leases: two processes never run the same job at once.
pub trait JobLeases {
    /// Take the lease on `job` for `holder` unless a live holder has it;
    /// runs of `job` left `running` are then marked `interrupted`.
    fn try_acquire_lease(
        &mut self,
        job: &str,
        holder: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<LeaseOutcome, StoreError>;

    /// Refresh the heartbeat; false when `holder` lost the lease.
    fn renew_lease(&mut self, job: &str, holder: &str) -> Result<bool, StoreError>;

    /// Give the lease up; one taken over by someone else is left alone.
    fn release_lease(&mut self, job: &str, holder: &str) -> Result<(), StoreError>;
}

/// The processes of a sharded invocation: who takes part, their
/// heartbeats, their runs.
pub trait Invocations {
    /// Register `holder` as shard `shard` of `invocation`; when the
    /// invocation started (the first process sets it).
    fn register_holder(
        &mut self,
        invocation: &str,
        holder: &str,
        shard: u32,
        steal: bool,
    ) -> Result<String, StoreError>;

    /// When `invocation` started, recording now if it is new.
    fn invocation_started_at(&mut self, invocation: &str) -> Result<String, StoreError>;

    /// Refresh `holder`'s heartbeat.
    fn renew_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError>;

    /// `holder` exits: its claims still `running` are free at once.
    fn end_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError>;

    /// Start a run of `job` as shard `shard` of `invocation`.
    fn begin_shard_run(
        &mut self,
        job: &str,
        invocation: &str,
        shard: u32,
        holder: &str,
    ) -> Result<RunId, StoreError>;

    /// Forget a shard's run that ran none of its streams.
    fn discard_empty_run(&mut self, run_id: RunId) -> Result<(), StoreError>;

    /// Per job: its last success before `invocation` started.
    fn last_success_starts_before(
        &self,
        jobs: &[&str],
        invocation: &str,
    ) -> Result<BTreeMap<String, String>, StoreError>;

    /// Shards of `invocation` with at least one live process.
    fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<BTreeSet<u32>, StoreError>;

    /// Mark `interrupted` the `running` runs of `invocation` whose process
    /// (not `me`) is dead.
    fn close_dead_runs(
        &mut self,
        invocation: &str,
        me: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<OtherRuns, StoreError>;
}

/// Stream claims of a sharded invocation: every stream is run by one
/// process, and a job's pass completes once.
pub trait Claims {
    /// Claim `stream` for `holder` in `invocation` (see `rules::decide_claim`).
    // The invocation, stream, shard and holder, plus how to treat a failed
    // or a stale claim: bundling them would only move the count.
    #[allow(clippy::too_many_arguments)]
    fn claim_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        shard: u32,
        holder: &str,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<StreamClaim, StoreError>;

    /// The end of a stream `holder` claimed; false when the claim was no
    /// longer `holder`'s (nothing changes then).
    fn end_claimed_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        holder: &str,
        end: ClaimEnd,
    ) -> Result<bool, StoreError>;

    /// Which of `partitions` of `job` are `done` in `invocation`.
    fn done_in_invocation(
        &self,
        invocation: &str,
        job: &str,
        partitions: &[&str],
    ) -> Result<HashSet<String>, StoreError>;

    /// The claimed streams of `job` in `invocation` that are not done.
    fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<Vec<StreamState>, StoreError>;

    /// Whether `job`'s pass completed in `invocation`.
    fn job_completed_in(&self, invocation: &str, job: &str) -> Result<bool, StoreError>;

    /// Complete `job`'s pass in `invocation` once; false when another
    /// process did it first.
    fn complete_sharded_pass(
        &mut self,
        invocation: &str,
        job: &str,
        table: &TableSpec,
    ) -> Result<bool, StoreError>;
}

/// Reading record tables back: partition values for a `--dry-run`
/// preview, and what tests and the key check look at.
pub trait Rows {
    /// Distinct non-null values at `pointer` in `table`, in order of first
    /// appearance, all in memory (small previews only).
    fn distinct_values(&self, table: &str, pointer: &str) -> Result<Vec<String>, StoreError>;

    /// Every `_data` of `table`, in insertion order.
    fn table_rows(&self, table: &str) -> Result<Vec<String>, StoreError>;

    fn count_rows(&self, table: &str) -> Result<u64, StoreError>;

    /// One row's stored `_pk` and `_data` text, or `None` when none has a key.
    fn key_sample(&self, table: &str) -> Result<Option<(String, String)>, StoreError>;

    /// Tests: run SQL statements as given.
    #[cfg(test)]
    fn exec_sql(&mut self, sql: &str);

    /// Tests: every row of a query, each value as text (NULL as None).
    #[cfg(test)]
    fn query_text(&mut self, sql: &str) -> Vec<Vec<Option<String>>>;
}

/// Copying a write-ahead log into the database by hand: SQLite's WAL. A
/// backend without one keeps the defaults, which do nothing.
pub trait Wal {
    /// Copy the WAL into the database without waiting for readers.
    fn checkpoint_wal(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A checkpointer for a thread beside the writer; taking it turns off
    /// the automatic checkpoint. None when there is no WAL to copy.
    fn wal_checkpointer(&self) -> Result<Option<WalCheckpointer>, StoreError> {
        Ok(None)
    }

    /// Undo [`Wal::wal_checkpointer`]'s switch-off.
    fn restore_wal_autocheckpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Everything a backend offers; what [`super::Store`] holds.
pub trait Backend:
    Tables
    + Pages
    + Streams
    + Runs
    + JobLeases
    + Invocations
    + Claims
    + Rows
    + Wal
    + Send
    + std::fmt::Debug
{
}

impl<T> Backend for T where
    T: Tables
        + Pages
        + Streams
        + Runs
        + JobLeases
        + Invocations
        + Claims
        + Rows
        + Wal
        + Send
        + std::fmt::Debug
{
}

/// Read-only access beside the writer, on a connection of its own: what
/// [`super::StoreReader`] holds.
pub trait Reader: Send + std::fmt::Debug {
    /// Whether apisync's state is here in this version's layout.
    fn has_state(&self) -> Result<bool, StoreError>;

    /// The saved position of `stream`.
    fn checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError>;

    /// The high-water mark of `stream`.
    fn mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError>;

    /// Whether `table` exists (a parent job that never ran has no table).
    fn has_table(&self, table: &str) -> Result<bool, StoreError>;

    /// Up to `limit` distinct non-null values at `pointer` in `table`, as
    /// text, in byte order, after `after` (keyset pagination); with
    /// `since`, only of the rows whose `_synced_at` is at or after it
    /// (`changed_only`).
    fn distinct_values_page(
        &self,
        table: &str,
        pointer: &str,
        after: Option<&str>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` distinct combinations of the values at `pointers` in
    /// `table`, each read as text as `distinct_values_page` reads one, as a
    /// JSON array of strings (`["42","eu"]`); rows where any is missing or
    /// null are left out; in byte order, after `after` (keyset
    /// pagination); with `since`, as `distinct_values_page`. What
    /// `partitions.fields` fans out over.
    fn distinct_combinations_page(
        &self,
        table: &str,
        pointers: &[String],
        after: Option<&str>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// The start of `job`'s last finished pass (RFC 3339, UTC), as its
    /// completion stored it; None when there is none (or the database
    /// predates schema 6): a `changed_only` pass then lists every parent.
    fn last_pass_start(&self, job: &str) -> Result<Option<String>, StoreError>;

    /// Which of `partitions` of `job` have finished in its current pass.
    fn finished_among(&self, job: &str, partitions: &[&str]) -> Result<Vec<String>, StoreError>;
}
