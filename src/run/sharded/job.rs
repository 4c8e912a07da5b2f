//! A job of a sharded run, from its start: skipped when its pass already
//! completed in the invocation; else, once its parents completed on
//! whichever shard, run in its phases through the sharded gate.

use std::sync::Arc;
use std::time::Instant;

use super::env::ShardEnv;
use super::gate::run_phases;
use super::parents::{NotReady, wait_for_parents};
use crate::plan::JobPlan;
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::mode::JobMode;
use crate::run::summary::{JobStatus, JobSummary};

/// A job of a sharded run: nothing when its pass already completed in the
/// invocation; else once its parents completed on whichever shard, this
/// shard's streams (and others' with `--steal`). No job lease: every
/// stream is claimed instead.
pub(crate) async fn run_job(
    env: &RunEnv,
    shard: &ShardEnv,
    job: Arc<JobPlan>,
    mode: &JobMode,
) -> JobSummary {
    let started = Instant::now();
    let (invocation, name) = (shard.sharding.invocation.clone(), job.name.clone());
    let completed = env.writer.job_completed_in(invocation, name).await;
    match completed {
        Ok(Ok(true)) => return already_complete(&job.name),
        Ok(Ok(false)) => {}
        Ok(Err(err)) => return JobSummary::new(&job.name).failed(err.into(), started),
        Err(err) => return JobSummary::new(&job.name).failed(err, started),
    }
    match wait_for_parents(env, shard, &job, mode).await {
        Ok(()) => {}
        Err(NotReady::Cancelled) => {
            let mut summary = JobSummary::new(&job.name);
            summary.status = JobStatus::Interrupted;
            return summary;
        }
        Err(NotReady::Failed(err @ RunError::DependencyFailed { .. })) => {
            tracing::error!(job = %job.name, error = %err, "job skipped");
            return JobSummary::skipped(&job.name, err);
        }
        Err(NotReady::Failed(err)) => {
            tracing::error!(job = %job.name, error = %err, "job failed");
            return JobSummary::new(&job.name).failed(err, started);
        }
    }
    run_phases(env, shard, job, mode, shard.phases()).await
}

/// The job's summary when its pass already completed in this invocation
/// (a rerun of a shard, or another shard finished it).
fn already_complete(job: &str) -> JobSummary {
    tracing::info!(job, "already complete in this invocation; nothing to do");
    JobSummary::new(job)
}
