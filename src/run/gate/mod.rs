//! The stream gate: what a job's run asks around its streams, so that the
//! run itself (`job.rs`, [`pass`]) is the same with or without sharding.
//!
//! A [`JobGate`] opens the job's run record, runs its passes and ends
//! them; each pass goes through a [`StreamGate`], asked before and after
//! every stream. Two gates exist:
//! - [`plain::PlainGate`]: one pass, and every stream may run. The job
//!   lease (`job_lease.rs`) is taken around it, by `job::run_job`.
//! - the sharded gate (`sharded/gate.rs`): a pass per phase (this shard's
//!   own streams, then others' with `--steal`), each stream claimed in the
//!   invocation before it runs and its claim ended after; it waits for its
//!   own streams that another live process holds. It lives with the rest
//!   of the sharded run, which builds on this module, so that dependencies
//!   run one way: `sharded/` -> `job.rs` -> `gate/` -> `partitions.rs`,
//!   `stream.rs`.

pub(crate) mod pass;
pub(crate) mod plain;

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use self::pass::Pass;
use super::env::RunEnv;
use super::error::RunError;
use super::mode::JobMode;
use super::summary::JobSummary;
use crate::plan::JobPlan;
use crate::store::{RunId, TableSpec};

/// How a job's run goes around its streams: its run record, its passes,
/// the end of its pass.
pub(crate) trait JobGate: Sync {
    /// Open the job's run record.
    fn begin_run(
        &self,
        env: &RunEnv,
        job: &str,
    ) -> impl Future<Output = Result<RunId, RunError>> + Send;

    /// Run the job's passes, adding their counts to `summary` and the first
    /// stream error to `first_error`. An `Err` is a failure to list
    /// partitions.
    fn run_passes(
        &self,
        pass: &Pass<'_>,
        summary: &mut JobSummary,
        first_error: &mut Option<RunError>,
    ) -> impl Future<Output = Result<(), RunError>> + Send;

    /// The passes ran without error and were not interrupted: complete the
    /// job's pass (as far as this process can tell it is complete).
    fn complete(
        &self,
        env: &RunEnv,
        job: &JobPlan,
        mode: &JobMode,
        table: Arc<TableSpec>,
    ) -> impl Future<Output = Result<(), RunError>> + Send;

    /// Close the run record with the job's outcome.
    fn end_run(
        &self,
        env: &RunEnv,
        run_id: RunId,
        summary: &JobSummary,
    ) -> impl Future<Output = ()> + Send;
}

/// What a pass asks before and after each stream.
pub(crate) trait StreamGate: Sync {
    /// What "now" means in a date range: the slices a pass lists end there.
    fn now(&self) -> DateTime<Utc>;

    /// Whether this pass looks at the stream `partition` of `job` at all.
    fn wants(&self, job: &JobPlan, partition: &str) -> bool;

    /// Whether the stream may run here now.
    fn enter(
        &self,
        env: &RunEnv,
        job: &JobPlan,
        partition: &str,
    ) -> impl Future<Output = Result<Entry, RunError>> + Send;

    /// Record how a stream that entered ended. An `Err` fails the stream.
    fn leave(
        &self,
        env: &RunEnv,
        job: &str,
        partition: &str,
        ended: Ended,
    ) -> impl Future<Output = Result<(), RunError>> + Send;
}

/// What [`StreamGate::enter`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The stream runs here; `stolen`: it belongs to another shard.
    Run { stolen: bool },
    /// Nothing to do here (done, or failed and not ours to retry).
    Skip,
    /// Another live process runs it.
    Busy,
}

/// How a stream that entered the gate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Its last page is in.
    Done,
    /// Stopped early (cancelled); it resumes from its checkpoint.
    Interrupted,
    Failed,
}
