//! Every backend-neutral decision, in one place: both backends ask these,
//! so SQLite and PostgreSQL never disagree on what a page, a lease or a
//! claim means. Nothing here touches a database.
//!
//! - timestamps: RFC 3339 text in UTC, so text order is time order;
//! - pages: which table a page goes to, whether it upserts, and that each
//!   record carries one value per declared column;
//! - passes: what a reset forgets, how backfill slices are told apart;
//! - job leases: who may take a lease, whether a write still holds it;
//! - stream claims: who runs a stream of a sharded invocation.

use std::time::Duration;

use super::error::StoreError;
use super::sql::staging_name;
use super::types::{LeaseOutcome, Reset, StreamClaim, TableSpec};
use crate::plan::WriteMode;
use crate::record::Record;

/// Timestamps are RFC 3339 text in UTC: sortable, readable in `sqlite3`.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// Pages.

/// Columns every record table starts with, before the declared ones.
pub(crate) const FIXED_COLUMNS: [&str; 4] = ["_pk", "_data", "_synced_at", "_run_id"];

/// The column a partitioned job's tables have besides the fixed ones: the
/// partition's values as a JSON object ([`TableSpec::partition`]). Tables
/// made before it existed gain it; their old rows keep NULL.
pub(crate) const PARTITION_COLUMN: &str = "_partition";

/// Columns a table of this spec may lack (made by an older apisync or for
/// an older job file) and gains with `ADD COLUMN`: `_partition`, if the job
/// is partitioned, then the declared columns.
pub(crate) fn addable_columns(table: &TableSpec) -> impl Iterator<Item = &str> {
    table
        .partition
        .as_ref()
        .map(|_| PARTITION_COLUMN)
        .into_iter()
        .chain(table.columns.iter().map(String::as_str))
}

/// Whether a page's rows upsert on `_pk` (else plain inserts): merge
/// always, replace when the job has a primary key, append never.
pub(crate) fn upserts(table: &TableSpec) -> bool {
    match table.mode {
        WriteMode::Merge => true,
        WriteMode::Append => false,
        WriteMode::Replace => table.has_primary_key,
    }
}

/// The table `apply_page` writes for this spec.
pub(crate) fn write_target(table: &TableSpec) -> String {
    match table.mode {
        WriteMode::Replace => staging_name(&table.table),
        WriteMode::Merge | WriteMode::Append => table.table.clone(),
    }
}

/// Every record must carry one value per declared column; a mismatch is a
/// bug upstream, reported instead of writing values into the wrong columns.
pub(crate) fn check_columns(table: &TableSpec, records: &[Record]) -> Result<(), StoreError> {
    match records
        .iter()
        .find(|r| r.columns.len() != table.columns.len())
    {
        Some(bad) => Err(StoreError::ColumnCount {
            table: table.table.clone(),
            expected: table.columns.len(),
            found: bad.columns.len(),
        }),
        None => Ok(()),
    }
}

pub(crate) fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Merge => "merge",
        WriteMode::Append => "append",
        WriteMode::Replace => "replace",
    }
}

// Passes.

/// Stream keys of a backfill start with this, so a backfill's slices keep
/// checkpoints and a finished set apart from the job's own pass.
pub const BACKFILL_PREFIX: &str = "backfill:";

/// The same, for range tests in SQL: every key with the prefix sorts at or
/// after `BACKFILL_PREFIX` and before this (":" + 1 is ";").
pub(crate) const BACKFILL_END: &str = "backfill;";

/// What a reset deletes (both backends): `$1` is the job, and with
/// `one_partition` `$2` the partition. `namespace` goes before each of
/// apisync's table names: [`SQLITE_STATE_PREFIX`] or `_apisync.` (see
/// [`super::sql::PG_STATE_SCHEMA`]).
pub(crate) fn reset_statements(reset: Reset, one_partition: bool, namespace: &str) -> Vec<String> {
    let tables: &[&str] = match reset {
        Reset::Marks => &["checkpoints", "finished_streams", "marks"],
        Reset::KeepMarks => &["checkpoints", "finished_streams"],
    };
    let scope = match one_partition {
        true => "job = $1 AND partition = $2",
        false => "job = $1",
    };
    let mut statements: Vec<String> = tables
        .iter()
        .map(|table| format!("DELETE FROM {namespace}{table} WHERE {scope}"))
        .collect();
    // A pass's start is the mark of `changed_only`: forgotten with the
    // marks, so the next pass lists every parent row. One partition has
    // none of its own (the pass is the job's).
    if reset == Reset::Marks && !one_partition {
        statements.push(format!("DELETE FROM {namespace}passes WHERE job = $1"));
    }
    statements
}

/// The start of a pass of `job` that `changed_only` may count from, as
/// `begin_pass` records it: the earliest of `started_at` (now) and the
/// start of every run of `parent` that was still writing then (unfinished,
/// or finished at or after it). `$1` is `parent`, `$2` `started_at`.
///
/// Why the parent's runs: a parent row's `_synced_at` is taken when its
/// page is written, but the row is only seen once its transaction commits.
/// A page written just before the pass started and committed after the
/// pass read its parents would be in neither this pass (not visible yet)
/// nor the next (older than the start). Every page is written inside its
/// run, after the run's start and before its end: counting from the
/// earliest such start covers it. A run that began after `started_at`
/// writes rows newer than it. A run left `running` by a crash keeps the
/// start early until its lease is taken over; that only fetches more.
pub(crate) fn pass_start_sql(namespace: &str) -> String {
    format!(
        "SELECT min(started_at) FROM (
             SELECT CAST($2 AS TEXT) AS started_at
             UNION ALL
             SELECT started_at FROM {namespace}runs
             WHERE job = $1 AND started_at < $2 AND (finished_at IS NULL OR finished_at >= $2)
         ) s"
    )
}

// Job leases.

/// What an interrupted orphan run is told in its `error` column.
pub(crate) const ORPHANED: &str =
    "the process running it stopped (killed or crashed) before it finished";

/// Who may take a job's lease, whichever database keeps it: given the
/// current lease (holder, heartbeat), `Ok(replaced)` when `holder` may take
/// it (naming the dead or stale holder it replaces, if any), or the
/// [`LeaseOutcome::HeldBy`] to answer when a live holder has it.
pub(crate) fn lease_decision(
    current: Option<(String, String)>,
    holder: &str,
    stale_after: Duration,
    is_dead: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, LeaseOutcome> {
    match current {
        None => Ok(None),
        Some((other, _)) if other == holder => Ok(None),
        Some((other, heartbeat_at))
            if heartbeat_at < stale_cutoff(stale_after) || is_dead(&other) =>
        {
            Ok(Some(other))
        }
        Some((holder, heartbeat_at)) => Err(LeaseOutcome::HeldBy {
            holder,
            heartbeat_at,
        }),
    }
}

/// `Ok` when the lease row names `holder`, else [`StoreError::LeaseLost`].
pub(crate) fn lease_held(job: &str, holder: &str, now: Option<String>) -> Result<(), StoreError> {
    match now {
        Some(now) if now == holder => Ok(()),
        now => Err(StoreError::LeaseLost {
            job: job.to_string(),
            holder: holder.to_string(),
            now,
        }),
    }
}

/// Heartbeats older than this (same RFC 3339 shape as [`now`], so text
/// order is time order) are stale.
pub(crate) fn stale_cutoff(stale_after: Duration) -> String {
    let stale_after = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    let cutoff = chrono::Utc::now()
        .checked_sub_signed(stale_after)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// Stream claims.

/// How long the per-stream rows of an invocation are kept: a rerun of an
/// invocation older than this runs its unfinished jobs' streams again.
pub(crate) const KEEP_STREAMS: Duration = Duration::from_secs(7 * 24 * 3600);

/// The error of a run whose streams another process took over.
pub(crate) const TAKEN_OVER: &str =
    "the process running it stopped (killed or crashed) before it finished";

/// What a claim found under its lock, before [`decide_claim`].
pub(crate) enum Found {
    /// Nothing to do (done, finished in the pass, or the pass completed).
    Done,
    /// Never claimed in this invocation.
    Free,
    Failed {
        holder: String,
    },
    /// `running` for `holder`; `fresh`: its row is not ended and its
    /// heartbeat is recent (`is_dead` is asked by [`decide_claim`]).
    Running {
        holder: String,
        fresh: bool,
    },
}

impl Found {
    /// What a stream's claim row (`status`, `holder`) means. `fresh` is
    /// asked only of a `running` row, with its holder.
    pub(crate) fn from_row<E>(
        status: &str,
        holder: String,
        fresh: impl FnOnce(&str) -> Result<bool, E>,
    ) -> Result<Found, E> {
        Ok(match status {
            "done" => Found::Done,
            "failed" => Found::Failed { holder },
            _ => Found::Running {
                fresh: fresh(&holder)?,
                holder,
            },
        })
    }
}

/// Who runs a stream, whichever database keeps the claims: `Ok(taken_from)`
/// when `holder` claims it (naming the dead or stale holder it takes over,
/// if any), or the [`StreamClaim`] to answer without claiming.
pub(crate) fn decide_claim(
    found: Found,
    holder: &str,
    retry_failed: bool,
    is_dead: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, StreamClaim> {
    match found {
        Found::Done => Err(StreamClaim::Done),
        Found::Failed { holder } if !retry_failed => Err(StreamClaim::Failed { holder }),
        Found::Free | Found::Failed { .. } => Ok(None),
        Found::Running { holder: other, .. } if other == holder => Ok(None),
        Found::Running {
            holder: other,
            fresh,
        } => {
            if fresh && !is_dead(&other) {
                Err(StreamClaim::Busy { holder: other })
            } else {
                Ok(Some(other))
            }
        }
    }
}
