//! Plain data the store takes and gives back. No SQLite types, so a second
//! store (PostgreSQL) can offer the same surface.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::plan::{OutputPlan, WriteMode};

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
}

impl TableSpec {
    pub fn new(output: &OutputPlan, has_primary_key: bool) -> Self {
        TableSpec {
            table: output.table.clone(),
            mode: output.mode,
            columns: output.columns.iter().map(|c| c.name.clone()).collect(),
            has_primary_key,
        }
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
