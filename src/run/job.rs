//! One job: its lease, its run record, its partitions (each a stream with
//! its own checkpoint, run in parallel and read in batches), and the end of
//! a pass (replace swap, the finished-partition list cleared).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::lease::{self, Acquired};
use super::partitions::unfinished_partitions;
use super::stream::{StreamEnv, StreamOutcome, run_stream};
use super::summary::{JobStatus, JobSummary};
use super::{NoProgress, RunEnv, RunError};
use crate::fetch::{RequestStats, StatsSnapshot};
use crate::plan::{JobPlan, Partition};
use crate::store::{RunOutcome, RunStatus, TableSpec};

/// What kind of pass this is.
#[derive(Debug, Clone, Default)]
pub struct JobMode {
    /// Ignore high-water marks (run --full-refresh).
    pub full_refresh: bool,
    /// Backfill slices instead of the job's own partitions; never moves the mark.
    pub backfill: Option<Vec<Partition>>,
    /// `--wait`: wait for a job another process runs instead of skipping it.
    pub wait_for_lease: bool,
    /// A stream with no completed page for this long fails (`--stall-timeout`;
    /// None: the 10 minute default).
    pub stall_timeout: Option<std::time::Duration>,
}

pub(crate) async fn run_job(env: &RunEnv, job: Arc<JobPlan>, mode: &JobMode) -> JobSummary {
    let started = Instant::now();
    let summary = JobSummary::new(&job.name);
    let lease = match lease::acquire(env, &job.name, mode.wait_for_lease).await {
        Ok(Acquired::Lease(lease)) => lease,
        Ok(Acquired::Busy(message)) => return JobSummary::held(&job.name, message),
        Ok(Acquired::Cancelled) => {
            let mut summary = summary;
            summary.status = JobStatus::Interrupted;
            return summary;
        }
        Err(err) => return summary.failed(err, started),
    };
    let mut summary = run_leased(env, &job, mode, &lease.cancel, summary, started).await;
    if lease.release(env).await {
        summary.status = JobStatus::Failed;
        summary.error.get_or_insert_with(|| {
            format!(
                "job \"{}\": stopped because another process took its lease over \
                 (this one did not renew it in time; is the database on a slow or shared disk?)",
                job.name
            )
        });
    }
    summary
}

/// The job once this process holds its lease.
async fn run_leased(
    env: &RunEnv,
    job: &Arc<JobPlan>,
    mode: &JobMode,
    cancel: &CancellationToken,
    mut summary: JobSummary,
    started: Instant,
) -> JobSummary {
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
    // Every line logged for this job carries its name and run id (JSON logs).
    // ERROR level so that the span is enabled whatever the filter lets through.
    let span = tracing::error_span!("job", job = %job.name, run_id = run_id.0);
    let token_requests_before = token_requests(env, job);
    let result = run_partitions(env, job, mode, cancel, run_id, &mut summary)
        .instrument(span.clone())
        .await;
    summary.token_requests = token_requests(env, job).saturating_sub(token_requests_before);
    summary.seconds = started.elapsed().as_secs_f64();
    summary.status = match (&result, summary.interrupted) {
        (Err(_), _) => JobStatus::Failed,
        (Ok(()), true) => JobStatus::Interrupted,
        (Ok(()), false) => JobStatus::Succeeded,
    };
    if let Err(err) = result {
        span.in_scope(|| tracing::error!(job = %job.name, error = %err, "job failed"));
        summary.error.get_or_insert_with(|| err.to_string());
    }
    record_outcome(env, run_id, &summary).await;
    summary
}

/// Token requests made so far by the job's credential (0 without OAuth2).
/// The credential is shared, so jobs running at the same time on one auth
/// each count the refreshes made while they ran.
fn token_requests(env: &RunEnv, job: &JobPlan) -> u64 {
    job.auth
        .as_deref()
        .and_then(|name| env.credentials.get(name))
        .and_then(|built| built.as_ref().ok())
        .map_or(0, |credential| credential.token_requests())
}

async fn record_outcome(env: &RunEnv, run_id: crate::store::RunId, summary: &JobSummary) {
    let outcome = RunOutcome {
        status: match summary.status {
            JobStatus::Succeeded => RunStatus::Succeeded,
            JobStatus::Interrupted => RunStatus::Interrupted,
            JobStatus::Held => RunStatus::Skipped,
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
    cancel: &CancellationToken,
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
    // Each stream gets its own counters and observer below.
    let stream_env = StreamEnv {
        writer: env.writer.clone(),
        http: env.http.clone(),
        credential,
        stats: Arc::new(RequestStats::new()),
        progress: Arc::new(NoProgress),
        cancel: cancel.clone(),
        table: table.clone(),
        run_id,
        ignore_mark: mode.full_refresh || mode.backfill.is_some(),
        keep_mark: mode.backfill.is_none(),
        stall_timeout: mode
            .stall_timeout
            .unwrap_or(super::stream::DEFAULT_STALL_TIMEOUT),
    };
    // Partitions arrive in batches, finished ones already left out; no new
    // one starts once the job is cancelled.
    let stopped_early = AtomicBool::new(false);
    let mut results = unfinished_partitions(env, job, mode)?
        .take_while(|_| {
            let go_on = !cancel.is_cancelled();
            if !go_on {
                stopped_early.store(true, Ordering::Relaxed);
            }
            futures::future::ready(go_on)
        })
        .map(|partition| {
            let (stream_env, job) = (&stream_env, job.clone());
            // The whole-job stream has no partition key, and logs none.
            let span = tracing::error_span!("stream", partition = tracing::field::Empty);
            if let Ok(partition) = &partition
                && !partition.key.is_empty()
            {
                span.record("partition", partition.key.as_str());
            }
            async move {
                let partition = match partition {
                    Ok(partition) => partition,
                    Err(err) => {
                        let nothing = (StreamOutcome::default(), StatsSnapshot::default());
                        return (String::new(), nothing, Err(err));
                    }
                };
                let label = partition.key.clone();
                // Per-stream counters, so a live display can show each
                // stream's retries; the job adds them up below.
                let stats = Arc::new(RequestStats::new());
                let progress = env.progress.stream_started(&job.name, &label, &stats);
                let stream_env = StreamEnv {
                    stats: stats.clone(),
                    progress,
                    ..stream_env.clone()
                };
                let mut counts = StreamOutcome::default();
                let result = run_stream(&stream_env, job, partition, &mut counts).await;
                (label, (counts, stats.snapshot()), result)
            }
            .instrument(span)
        })
        .buffer_unordered(env.stream_width.max(1))
        .boxed();
    let mut first_error: Option<RunError> = None;
    while let Some((partition, (counts, requests), result)) = results.next().await {
        summary.add_requests(&requests);
        summary.pages += counts.pages;
        summary.records += counts.records;
        summary.interrupted |= counts.interrupted;
        if let Err(err) = result {
            tracing::error!(job = %job.name, partition = %partition, error = %err, "stream failed");
            first_error.get_or_insert(err);
        }
    }
    drop(results);
    summary.interrupted |= stopped_early.load(Ordering::Relaxed);
    if let Some(err) = first_error {
        return Err(err);
    }
    if !summary.interrupted && !cancel.is_cancelled() {
        complete_pass(env, job, mode, table).await?;
    }
    Ok(())
}

/// Every stream of the pass finished: swap a replace table in and start the
/// next run from scratch. A backfill only forgets its own finished slices.
async fn complete_pass(
    env: &RunEnv,
    job: &JobPlan,
    mode: &JobMode,
    table: Arc<TableSpec>,
) -> Result<(), RunError> {
    // One transaction: the replace swap and the end of the pass.
    let name = job.name.clone();
    if mode.backfill.is_some() {
        env.writer
            .call(move |store| store.complete_backfill(&name))
            .await??;
    } else {
        env.writer
            .call(move |store| store.complete_job_pass(&name, &table))
            .await??;
    }
    Ok(())
}
