//! The end of a job's run record: its status, counts and error, written
//! once the job's passes are over.

use super::env::RunEnv;
use super::summary::{JobStatus, JobSummary};
use crate::store::{RunOutcome, RunStatus};

/// Close the run record `run_id` with what `summary` says.
pub(crate) async fn record_outcome(
    env: &RunEnv,
    run_id: crate::store::RunId,
    summary: &JobSummary,
) {
    let outcome = RunOutcome {
        status: match summary.status {
            JobStatus::Succeeded => RunStatus::Succeeded,
            JobStatus::Interrupted => RunStatus::Interrupted,
            JobStatus::Held => RunStatus::Skipped,
            JobStatus::Failed | JobStatus::Skipped => RunStatus::Failed,
        },
        pages: summary.pages,
        records: summary.records,
        // Scrubbed again: `held` messages and any later source.
        error: summary
            .error
            .as_deref()
            .map(|text| crate::secret::scrub(text).into_owned()),
    };
    let recorded = env.writer.finish_run(run_id, outcome).await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::error!(job = %summary.job, "could not record the end of the run");
    }
}
