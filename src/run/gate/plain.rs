//! The plain gate: a run on one machine (or several without `--shard`,
//! each job behind its lease). One pass over the job's unfinished
//! streams, every one of them let through; at the end the pass completes.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::pass::Pass;
use super::{Ended, Entry, JobGate, StreamGate};
use crate::plan::JobPlan;
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::mode::JobMode;
use crate::run::outcome::record_outcome;
use crate::run::summary::JobSummary;
use crate::run::writer::RunOf;
use crate::store::{RunId, TableSpec};

/// Lets every stream through, once.
pub(crate) struct PlainGate;

impl JobGate for PlainGate {
    async fn begin_run(&self, env: &RunEnv, job: &str) -> Result<RunId, RunError> {
        Ok(env
            .writer
            .begin_run(job.to_string(), RunOf::Plain)
            .await??)
    }

    async fn run_passes(
        &self,
        pass: &Pass<'_>,
        summary: &mut JobSummary,
        first_error: &mut Option<RunError>,
    ) -> Result<(), RunError> {
        pass.run(self, summary, first_error).await?;
        Ok(())
    }

    /// Every stream of the pass finished: swap a replace table in and start
    /// the next run from scratch. A backfill only forgets its own finished
    /// slices.
    async fn complete(
        &self,
        env: &RunEnv,
        job: &JobPlan,
        mode: &JobMode,
        table: Arc<TableSpec>,
    ) -> Result<(), RunError> {
        // One transaction: the replace swap and the end of the pass.
        let name = job.name.clone();
        if mode.backfill.is_some() {
            env.writer.complete_backfill(name).await??;
        } else {
            env.writer.complete_job_pass(name, table).await??;
        }
        Ok(())
    }

    async fn end_run(&self, env: &RunEnv, run_id: RunId, summary: &JobSummary) {
        record_outcome(env, run_id, summary).await;
    }
}

impl StreamGate for PlainGate {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn wants(&self, _job: &JobPlan, _partition: &str) -> bool {
        true
    }

    async fn enter(
        &self,
        _env: &RunEnv,
        _job: &JobPlan,
        _partition: &str,
    ) -> Result<Entry, RunError> {
        Ok(Entry::Run { stolen: false })
    }

    async fn leave(
        &self,
        _env: &RunEnv,
        _job: &str,
        _partition: &str,
        _ended: Ended,
    ) -> Result<(), RunError> {
        Ok(())
    }
}
