//! One job: its run record, its partitions (each a stream with its own
//! checkpoint, run in parallel), and the end of a pass (replace swap, the
//! finished-partition list cleared).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;

use super::partitions::partitions_of;
use super::stream::{StreamEnv, StreamOutcome, run_stream};
use super::summary::{JobStatus, JobSummary};
use super::{RunEnv, RunError};
use crate::plan::{JobPlan, Partition};
use crate::store::{RunOutcome, RunStatus, TableSpec};

/// What kind of pass this is.
#[derive(Debug, Clone, Default)]
pub struct JobMode {
    /// Ignore high-water marks (run --full-refresh).
    pub full_refresh: bool,
    /// Backfill slices instead of the job's own partitions; never moves the mark.
    pub backfill: Option<Vec<Partition>>,
    /// A stream with no completed page for this long fails (`--stall-timeout`;
    /// None: the 10 minute default).
    pub stall_timeout: Option<std::time::Duration>,
}

pub(crate) async fn run_job(env: &RunEnv, job: Arc<JobPlan>, mode: &JobMode) -> JobSummary {
    let started = Instant::now();
    let mut summary = JobSummary::new(&job.name);
    let run_id = match env
        .writer
        .call({
            let name = job.name.clone();
            move |store| store.begin_run(&name)
        })
        .await
    {
        Ok(Ok(id)) => id,
        Ok(Err(err)) => return summary.failed(RunError::Store(err), started),
        Err(err) => return summary.failed(err, started),
    };
    let result = run_partitions(env, &job, mode, run_id, &mut summary).await;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.status = match (&result, summary.interrupted) {
        (Err(_), _) => JobStatus::Failed,
        (Ok(()), true) => JobStatus::Interrupted,
        (Ok(()), false) => JobStatus::Succeeded,
    };
    if let Err(err) = result {
        tracing::error!(job = %job.name, error = %err, "job failed");
        summary.error.get_or_insert_with(|| err.to_string());
    }
    record_outcome(env, run_id, &summary).await;
    summary
}

async fn record_outcome(env: &RunEnv, run_id: crate::store::RunId, summary: &JobSummary) {
    let outcome = RunOutcome {
        status: match summary.status {
            JobStatus::Succeeded => RunStatus::Succeeded,
            JobStatus::Interrupted => RunStatus::Interrupted,
            JobStatus::Failed | JobStatus::Skipped => RunStatus::Failed,
        },
        pages: summary.pages,
        records: summary.records,
        error: summary.error.clone(),
    };
    let recorded = env
        .writer
        .call(move |store| store.finish_run(run_id, &outcome))
        .await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::error!(job = %summary.job, "could not record the end of the run");
    }
}

async fn run_partitions(
    env: &RunEnv,
    job: &Arc<JobPlan>,
    mode: &JobMode,
    run_id: crate::store::RunId,
    summary: &mut JobSummary,
) -> Result<(), RunError> {
    let table = Arc::new(TableSpec::new(
        &job.output,
        !job.records.primary_key.is_empty(),
    ));
    let prepared = table.clone();
    env.writer
        .call(move |store| store.prepare_table(&prepared))
        .await??;
    let partitions = match &mode.backfill {
        Some(slices) => slices.clone(),
        None => partitions_of(env, job).await?,
    };
    let finished: HashSet<String> = {
        let name = job.name.clone();
        env.writer
            .call(move |store| store.finished_partitions(&name))
            .await??
            .into_iter()
            .collect()
    };
    let credential = match job.auth.as_deref().map(|name| env.credentials.get(name)) {
        None => None,
        Some(Some(Ok(credential))) => Some(credential.clone()),
        Some(Some(Err(message))) => {
            return Err(RunError::Credential {
                job: job.name.clone(),
                message: message.clone(),
            });
        }
        Some(None) => {
            let message = "its auth was not prepared (a bug)".to_string();
            return Err(RunError::Credential {
                job: job.name.clone(),
                message,
            });
        }
    };
    let stream_env = StreamEnv {
        writer: env.writer.clone(),
        http: env.http.clone(),
        credential,
        cancel: env.cancel.clone(),
        table: table.clone(),
        run_id,
        ignore_mark: mode.full_refresh || mode.backfill.is_some(),
        keep_mark: mode.backfill.is_none(),
        stall_timeout: mode
            .stall_timeout
            .unwrap_or(super::stream::DEFAULT_STALL_TIMEOUT),
    };
    let todo: Vec<Partition> = partitions
        .into_iter()
        .filter(|p| !finished.contains(&p.key))
        .collect();
    let mut results = futures::stream::iter(todo)
        .map(|partition| {
            let (stream_env, job) = (&stream_env, job.clone());
            async move {
                let label = partition.key.clone();
                let mut counts = StreamOutcome::default();
                let result = run_stream(stream_env, job, partition, &mut counts).await;
                (label, counts, result)
            }
        })
        .buffer_unordered(env.stream_width.max(1));
    let mut first_error: Option<RunError> = None;
    let mut any_failed = false;
    while let Some((partition, counts, result)) = results.next().await {
        summary.pages += counts.pages;
        summary.records += counts.records;
        summary.interrupted |= counts.interrupted;
        if let Err(err) = result {
            any_failed = true;
            tracing::error!(job = %job.name, partition = %partition, error = %err, "stream failed");
            first_error.get_or_insert(err);
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    if !any_failed && !summary.interrupted && !env.cancel.is_cancelled() {
        complete_pass(env, job, table).await?;
    }
    Ok(())
}

/// Every stream of the job finished: swap a replace table in and start the
/// next run from scratch.
async fn complete_pass(env: &RunEnv, job: &JobPlan, table: Arc<TableSpec>) -> Result<(), RunError> {
    // One transaction: the replace swap and the end of the pass.
    let name = job.name.clone();
    env.writer
        .call(move |store| store.complete_job_pass(&name, &table))
        .await??;
    Ok(())
}
