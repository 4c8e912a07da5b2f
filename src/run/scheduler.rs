//! Running the selected jobs: at most `job_concurrency` at once, each after
//! the selected jobs it depends on; a job whose dependency failed is skipped.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

use super::env::RunEnv;
use super::error::RunError;
use super::summary::{JobStatus, JobSummary};
use crate::plan::JobPlan;

/// Run `jobs` with `run_job` (a plain or a sharded job) and gather their
/// summaries.
pub(crate) async fn run_jobs<F, Fut>(
    env: &RunEnv,
    jobs: Vec<Arc<JobPlan>>,
    run_job: F,
) -> Vec<JobSummary>
where
    F: Fn(Arc<JobPlan>) -> Fut,
    Fut: Future<Output = JobSummary>,
{
    let selected: HashMap<String, Arc<JobPlan>> =
        jobs.iter().map(|j| (j.name.clone(), j.clone())).collect();
    let mut waiting: Vec<Arc<JobPlan>> = jobs;
    let mut done: BTreeMap<String, JobSummary> = BTreeMap::new();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < env.job_concurrency.max(1) && !env.cancel.is_cancelled() {
            let Some(index) = waiting.iter().position(|job| ready(job, &selected, &done)) else {
                break;
            };
            let job = waiting.remove(index);
            if let Some(dependency) = held_dependency(&job, &done) {
                let message = format!(
                    "job \"{}\": skipped: job \"{dependency}\", which it depends on, is being run by another process",
                    job.name
                );
                tracing::warn!("{message}");
                done.insert(job.name.clone(), JobSummary::held(&job.name, message));
                continue;
            }
            if let Some(dependency) = failed_dependency(&job, &done) {
                let err = RunError::DependencyFailed {
                    job: job.name.clone(),
                    dependency,
                };
                tracing::error!(job = %job.name, error = %err, "job skipped");
                done.insert(job.name.clone(), JobSummary::skipped(&job.name, err));
                continue;
            }
            running.push(run_job(job));
        }
        match running.next().await {
            Some(summary) => {
                done.insert(summary.job.clone(), summary);
            }
            None => break,
        }
    }
    // Jobs never started (cancelled before their turn) are reported as interrupted.
    for job in waiting {
        let mut summary = JobSummary::new(&job.name);
        summary.status = JobStatus::Interrupted;
        done.insert(job.name.clone(), summary);
    }
    done.into_values().collect()
}

/// All selected dependencies have ended (one way or another).
fn ready(
    job: &JobPlan,
    selected: &HashMap<String, Arc<JobPlan>>,
    done: &BTreeMap<String, JobSummary>,
) -> bool {
    job.depends_on
        .iter()
        .all(|dep| !selected.contains_key(dep) || done.contains_key(dep))
}

fn failed_dependency(job: &JobPlan, done: &BTreeMap<String, JobSummary>) -> Option<String> {
    job.depends_on
        .iter()
        .find(|dep| {
            done.get(*dep)
                .is_some_and(|s| s.status != JobStatus::Succeeded)
        })
        .cloned()
}

/// A dependency another process is running: the job is left to that
/// process's next pass too, and it is not a failure.
fn held_dependency(job: &JobPlan, done: &BTreeMap<String, JobSummary>) -> Option<String> {
    job.depends_on
        .iter()
        .find(|dep| done.get(*dep).is_some_and(|s| s.status == JobStatus::Held))
        .cloned()
}
