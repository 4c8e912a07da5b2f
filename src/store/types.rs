//! Plain data the store takes and gives back, the same whichever backend
//! answers: no SQLite or PostgreSQL types.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::plan::{JobPlan, WriteMode};

/// One stream of a job: the checkpoint and mark are kept per stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub job: String,
    /// The partition key; "" for an unpartitioned job.
    pub partition: String,
}

impl StreamKey {
    pub fn new(job: impl Into<String>, partition: impl Into<String>) -> Self {
        StreamKey {
            job: job.into(),
            partition: partition.into(),
        }
    }
}

/// What the store needs to know about a job's output table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub table: String,
    pub mode: WriteMode,
    /// Declared column names, in the order of `Record::columns`.
    pub columns: Vec<String>,
    /// True when the job declares `records.primary_key`: `_pk` is then NOT NULL.
    pub has_primary_key: bool,
    /// The `_partition` column, which only a partitioned job's tables have:
    /// None for an unpartitioned job; else the JSON object every row
    /// written with this spec gets, bound once per statement. The job's own
    /// spec (which prepares, swaps and completes, but writes no rows) holds
    /// `{}`; each stream writes with [`TableSpec::for_partition`].
    pub partition: Option<String>,
}

impl TableSpec {
    /// The spec of `job`'s table, for preparing it and ending its passes.
    pub fn of_job(job: &JobPlan) -> Self {
        let output = &job.output;
        TableSpec {
            table: output.table.clone(),
            mode: output.mode,
            columns: output.columns.iter().map(|c| c.name.clone()).collect(),
            has_primary_key: !job.records.primary_key.is_empty(),
            partition: job.partitions.as_ref().map(|_| "{}".to_string()),
        }
    }

    /// The spec one stream writes its rows with: `object` (the partition's
    /// [`crate::plan::Partition::object`]) in `_partition`; None when the
    /// table has no such column (an unpartitioned job, also when backfilled
    /// in date slices), so the caller keeps sharing the job's spec.
    pub fn for_partition(&self, object: impl FnOnce() -> String) -> Option<TableSpec> {
        self.partition.as_ref()?;
        Some(TableSpec {
            partition: Some(object()),
            ..self.clone()
        })
    }
}

/// A row of the `runs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

/// What `apisync reset` forgets besides checkpoints, finished partitions
/// and a replace job's staging table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The high-water marks too: the next run starts from `initial`.
    Marks,
    /// Not the marks (`--keep-marks`): each stream starts over from its mark.
    KeepMarks,
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
    /// Not started: a dependency failed or another process holds the job.
    Skipped,
}

impl RunStatus {
    /// The spelling stored in `runs.status` (and shown by `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Interrupted,
            RunStatus::Skipped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub pages: u64,
    pub records: u64,
    /// Already redacted by the caller: the store writes it as given.
    pub error: Option<String>,
}

/// One row of `runs`, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub status: RunStatus,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// None while running, or when the process died before finishing the run.
    pub finished_at: Option<String>,
    pub pages: u64,
    pub records: u64,
    pub error: Option<String>,
}

/// What `apisync status` shows for one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub table: String,
    pub last_run: Option<RunRecord>,
    /// Start of the last succeeded run (RFC 3339, UTC): the base for cron due times.
    pub last_success_started_at: Option<String>,
    /// Rows in the live table; None when it does not exist yet.
    pub rows: Option<u64>,
    /// Partition -> saved position JSON, for streams that have not finished.
    pub checkpoints: BTreeMap<String, String>,
    /// Partition -> incremental high-water mark JSON.
    pub marks: BTreeMap<String, String>,
    /// Partitions already finished in the job's current (incomplete) pass.
    pub finished_partitions: Vec<String>,
}

// What the lease and claim operations answer.

/// The answer to [`super::Store::try_acquire_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// This holder has the lease now. `replaced` names the dead or stale
    /// holder it was taken from, if any (for the log).
    Acquired { replaced: Option<String> },
    /// Another live holder runs the job.
    HeldBy {
        holder: String,
        /// RFC 3339, UTC: the holder's last sign of life.
        heartbeat_at: String,
    },
}

/// The answer to [`super::Store::claim_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamClaim {
    /// This holder runs the stream now. `taken_from` names a dead or stale
    /// holder whose claim it replaced (for the log).
    Claimed { taken_from: Option<String> },
    /// Done in this invocation, finished in the job's current pass, or the
    /// job's pass already completed in this invocation: nothing to do.
    Done,
    /// A live holder runs it.
    Busy { holder: String },
    /// It failed in this invocation and the caller did not ask to retry.
    Failed { holder: String },
}

/// How a claimed stream ended, for [`super::Store::end_claimed_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimEnd {
    /// Its last page committed: never run again in this invocation.
    Done,
    /// It failed: children of its job are skipped; a rerun of the shard
    /// retries it.
    Failed,
    /// Interrupted (SIGTERM) before its end: the claim is dropped so that a
    /// rerun or a stealing shard takes it at once, from its checkpoint.
    Release,
}

/// A stream of an invocation that is not done, as [`super::Store::stream_states`]
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub partition: String,
    /// `running` or `failed`; absent from the answer when never claimed.
    pub status: String,
    pub holder: String,
    /// Whether `holder` is alive: its row is not ended, its heartbeat is
    /// newer than the stale limit, and `is_dead` does not know better.
    pub holder_alive: bool,
}

/// What [`super::Store::close_dead_runs`] found among the other processes'
/// runs still `running` in the invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtherRuns {
    /// Rows of dead or stale processes, now `interrupted`.
    pub interrupted: u64,
    /// Rows of processes that look alive: they finish them themselves,
    /// or go stale and are closed by a later call.
    pub running: u64,
}
