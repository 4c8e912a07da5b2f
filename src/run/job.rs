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
use super::shard::Sharding;
use super::sharded::{self, NotReady, Phase, ShardEnv};
use super::stream::{StreamEnv, StreamOutcome, StreamWatch, run_stream};
use super::summary::{JobStatus, JobSummary};
use super::writer::RunOf;
use super::{RunEnv, RunError};
use crate::fetch::{RequestStats, StatsSnapshot};
use crate::plan::{JobPlan, Partition};
use crate::store::{ClaimEnd, RunOutcome, RunStatus, TableSpec};

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
    /// `--shard INDEX/COUNT --invocation ID [--steal]`: run this shard's
    /// streams only (None: every stream, as on one machine).
    pub shard: Option<Sharding>,
}

pub(crate) async fn run_job(env: &RunEnv, job: Arc<JobPlan>, mode: &JobMode) -> JobSummary {
    if let Some(shard) = &env.shard {
        return run_sharded_job(env, shard, job, mode).await;
    }
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
    let mut summary = run_leased(env, &job, mode, &lease.cancel, summary, started, None).await;
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

/// A job of a sharded run: nothing when its pass already completed in the
/// invocation; else once its parents completed on whichever shard, this
/// shard's streams (and others' with `--steal`). No job lease: every
/// stream is claimed instead.
async fn run_sharded_job(
    env: &RunEnv,
    shard: &ShardEnv,
    job: Arc<JobPlan>,
    mode: &JobMode,
) -> JobSummary {
    let started = Instant::now();
    let (invocation, name) = (shard.sharding.invocation.clone(), job.name.clone());
    let completed = env.writer.job_completed_in(invocation, name).await;
    match completed {
        Ok(Ok(true)) => return sharded::already_complete(&job.name),
        Ok(Ok(false)) => {}
        Ok(Err(err)) => return JobSummary::new(&job.name).failed(err.into(), started),
        Err(err) => return JobSummary::new(&job.name).failed(err, started),
    }
    match sharded::wait_for_parents(env, shard, &job, mode).await {
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
    run_sharded_streams(env, job, mode, shard.phases()).await
}

/// The streams of `job` that `phases` take, under a run record of this shard.
pub(crate) async fn run_sharded_streams(
    env: &RunEnv,
    job: Arc<JobPlan>,
    mode: &JobMode,
    phases: &[Phase],
) -> JobSummary {
    let cancel = env.cancel.child_token();
    let summary = JobSummary::new(&job.name);
    run_leased(
        env,
        &job,
        mode,
        &cancel,
        summary,
        Instant::now(),
        Some(phases),
    )
    .await
}

/// The job once this process holds its lease (or, sharded, claims its
/// streams one by one in `phases`).
async fn run_leased(
    env: &RunEnv,
    job: &Arc<JobPlan>,
    mode: &JobMode,
    cancel: &CancellationToken,
    mut summary: JobSummary,
    started: Instant,
    phases: Option<&[Phase]>,
) -> JobSummary {
    // A shard's run is recorded with its shard in one transaction.
    let of = match env.shard.as_ref() {
        Some(shard) => RunOf::Shard {
            invocation: shard.sharding.invocation.clone(),
            shard: shard.index(),
            holder: env.holder.clone(),
        },
        None => RunOf::Plain,
    };
    let begun = env.writer.begin_run(job.name.clone(), of).await;
    let run_id = match begun {
        Ok(Ok(id)) => id,
        Ok(Err(err)) => return summary.failed(RunError::Store(err), started),
        Err(err) => return summary.failed(err, started),
    };
    // Every line logged for this job carries its name and run id (JSON logs).
    // ERROR level so that the span is enabled whatever the filter lets through.
    let span = tracing::error_span!("job", job = %job.name, run_id = run_id.0);
    let token_requests_before = token_requests(env, job);
    let result = run_partitions(env, job, mode, cancel, run_id, &mut summary, phases)
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
        summary
            .error
            .get_or_insert_with(|| super::summary::error_text(&err));
    }
    if summary.status == JobStatus::Succeeded && summary.streams.is_some_and(|s| s.run == 0) {
        let discarded = env.writer.discard_empty_run(run_id).await;
        if !matches!(discarded, Ok(Ok(()))) {
            tracing::warn!(job = %job.name, "could not forget an empty shard run");
        }
    } else {
        record_outcome(env, run_id, &summary).await;
    }
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

/// A merge job's primary key must still make the keys its rows were stored
/// with: after `primary_key` changes in the job file, every record would get
/// a new key and be written a second time beside its old row. One stored
/// row, its key made again from its record, tells.
fn check_key_unchanged(job: &JobPlan, sample: Option<(String, String)>) -> Result<(), RunError> {
    let Some((stored, data)) = sample else {
        return Ok(());
    };
    let now = match crate::fetch::primary_key_of(job, &data) {
        Ok(Some(key)) => key,
        Ok(None) => "(none)".to_string(),
        Err(error) => format!("(none: {})", error.message),
    };
    if now == stored {
        return Ok(());
    }
    Err(RunError::KeyChanged {
        job: job.name.clone(),
        table: job.output.table.clone(),
        stored,
        now,
    })
}

async fn run_partitions(
    env: &RunEnv,
    job: &Arc<JobPlan>,
    mode: &JobMode,
    cancel: &CancellationToken,
    run_id: crate::store::RunId,
    summary: &mut JobSummary,
    phases: Option<&[Phase]>,
) -> Result<(), RunError> {
    let table = Arc::new(TableSpec::new(
        &job.output,
        !job.records.primary_key.is_empty(),
    ));
    let sample = env.writer.prepare_table(table.clone()).await??;
    check_key_unchanged(job, sample)?;
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
        cancel: cancel.clone(),
        table: table.clone(),
        run_id,
        ignore_mark: mode.full_refresh || mode.backfill.is_some(),
        keep_mark: mode.backfill.is_none(),
        stall_timeout: mode
            .stall_timeout
            .unwrap_or(super::stream::DEFAULT_STALL_TIMEOUT),
    };
    let mut first_error: Option<RunError> = None;
    let sharded = match (phases, &env.shard) {
        (Some(phases), Some(shard)) => Some((phases, shard)),
        _ => None,
    };
    match sharded {
        None => {
            let pass = Pass {
                env,
                job,
                mode,
                cancel,
                stream_env: &stream_env,
                claims: None,
            };
            pass.run(summary, &mut first_error).await?;
        }
        Some((phases, shard)) => {
            summary.streams.get_or_insert_default();
            for &phase in phases {
                let pass = Pass {
                    env,
                    job,
                    mode,
                    cancel,
                    stream_env: &stream_env,
                    claims: Some((shard, phase)),
                };
                // Own streams another process holds are waited for: if that
                // process is a dead predecessor on another node (a pod
                // retried after a SIGKILL), its claims go stale and are
                // taken over here, instead of being left undone.
                loop {
                    if cancel.is_cancelled() {
                        summary.interrupted = true;
                        break;
                    }
                    let busy = pass.run(summary, &mut first_error).await?;
                    // A `--steal` shard does not wait here: once through
                    // its jobs it comes back to every job not complete
                    // (`finish.rs`), without a run row open meanwhile.
                    if phase != Phase::Own
                        || shard.sharding.steal
                        || busy == 0
                        || first_error.is_some()
                    {
                        break;
                    }
                    tracing::info!(job = %job.name, streams = busy,
                        "waiting for this shard's streams that another process holds");
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(sharded::POLL_EVERY) => {}
                    }
                }
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    if !summary.interrupted && !cancel.is_cancelled() {
        match sharded {
            None => complete_pass(env, job, mode, table).await?,
            Some((_, shard)) => sharded::complete_if_done(env, shard, job, mode).await?,
        }
    }
    Ok(())
}

/// One trip through a job's unfinished partitions: all of them, or
/// (sharded) those of one phase, each claimed before it runs.
struct Pass<'a> {
    env: &'a RunEnv,
    job: &'a Arc<JobPlan>,
    mode: &'a JobMode,
    cancel: &'a CancellationToken,
    stream_env: &'a StreamEnv,
    claims: Option<(&'a ShardEnv, Phase)>,
}

/// Whether a stream of a pass ran here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// It ran here; `stolen`: it is another shard's.
    Here { stolen: bool },
    /// Nothing to do (done, or failed and not ours to retry).
    Skipped,
    /// Another live process holds it.
    Busy,
}

/// What one stream of a pass did: its partition, counts, result, and
/// whether it ran here.
type StreamRun = (
    String,
    (StreamOutcome, StatsSnapshot),
    Result<(), RunError>,
    Ran,
);

impl Pass<'_> {
    /// Run the pass, adding its counts to `summary` and its first stream
    /// error to `first_error`; the number of streams another live process
    /// held. An `Err` is a failure to list partitions.
    async fn run(
        &self,
        summary: &mut JobSummary,
        first_error: &mut Option<RunError>,
    ) -> Result<usize, RunError> {
        let (env, job, cancel, claims) = (self.env, self.job, self.cancel, self.claims);
        // Partitions arrive in batches, finished ones already left out; no new
        // one starts once the job is cancelled.
        let stopped_early = AtomicBool::new(false);
        let mut results = unfinished_partitions(env, job, self.mode)?
            .filter(move |partition| {
                let wanted = match (claims, partition) {
                    (Some((shard, phase)), Ok(partition)) => {
                        shard.wants(phase, job, &partition.key)
                    }
                    _ => true,
                };
                futures::future::ready(wanted)
            })
            .take_while(|_| {
                let go_on = !cancel.is_cancelled();
                if !go_on {
                    stopped_early.store(true, Ordering::Relaxed);
                }
                futures::future::ready(go_on)
            })
            .map(|partition| {
                let (stream_env, job) = (self.stream_env, job.clone());
                // The whole-job stream has no partition key, and logs none.
                let span = tracing::error_span!("stream", partition = tracing::field::Empty);
                if let Ok(partition) = &partition
                    && !partition.key.is_empty()
                {
                    span.record("partition", partition.key.as_str());
                }
                async move { run_one(env, stream_env, job, partition, claims).await }
                    .instrument(span)
            })
            .buffer_unordered(env.stream_width.max(1))
            .boxed();
        let mut busy = 0;
        while let Some((partition, (counts, requests), result, ran)) = results.next().await {
            summary.add_requests(&requests);
            summary.pages += counts.pages;
            summary.records += counts.records;
            summary.interrupted |= counts.interrupted;
            match (ran, summary.streams.as_mut()) {
                (Ran::Here { stolen }, Some(streams)) => {
                    streams.run += 1;
                    streams.stolen += u64::from(stolen);
                }
                (Ran::Busy, _) => busy += 1,
                _ => {}
            }
            if let Err(err) = result {
                tracing::error!(job = %job.name, partition = %partition, error = %err, "stream failed");
                first_error.get_or_insert(err);
            }
        }
        drop(results);
        summary.interrupted |= stopped_early.load(Ordering::Relaxed);
        Ok(busy)
    }
}

/// One stream: claimed first when sharded, its claim ended after.
async fn run_one(
    env: &RunEnv,
    stream_env: &StreamEnv,
    job: Arc<JobPlan>,
    partition: Result<Partition, RunError>,
    claims: Option<(&ShardEnv, Phase)>,
) -> StreamRun {
    let nothing = || (StreamOutcome::default(), StatsSnapshot::default());
    let partition = match partition {
        Ok(partition) => partition,
        Err(err) => return (String::new(), nothing(), Err(err), Ran::Skipped),
    };
    let label = partition.key.clone();
    if let Some((shard, phase)) = claims {
        match sharded::claim(env, shard, &job, &label, phase).await {
            Ok(sharded::Claimed::Run) => {}
            Ok(sharded::Claimed::Skip) => return (label, nothing(), Ok(()), Ran::Skipped),
            Ok(sharded::Claimed::Busy) => return (label, nothing(), Ok(()), Ran::Busy),
            Err(err) => return (label, nothing(), Err(err), Ran::Skipped),
        }
    }
    // Per-stream counters, so a live display can show each stream's
    // retries; the job adds them up.
    let stats = Arc::new(RequestStats::new());
    let watch = StreamWatch {
        progress: env.progress.stream_started(&job.name, &label, &stats),
        stats,
    };
    let mut counts = StreamOutcome::default();
    let mut result = run_stream(stream_env, &watch, job.clone(), partition, &mut counts).await;
    if let Some((shard, _)) = claims {
        let end = match (&result, counts.interrupted) {
            (Err(_), _) => ClaimEnd::Failed,
            (Ok(()), true) => ClaimEnd::Release,
            (Ok(()), false) => ClaimEnd::Done,
        };
        if let Err(err) = sharded::end_claim(env, shard, &job.name, &label, end).await
            && result.is_ok()
        {
            result = Err(err);
        }
    }
    let stolen = claims.is_some_and(|(shard, _)| !shard.owns(&job, &label));
    (
        label,
        (counts, watch.stats.snapshot()),
        result,
        Ran::Here { stolen },
    )
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
        env.writer.complete_backfill(name).await??;
    } else {
        env.writer.complete_job_pass(name, table).await??;
    }
    Ok(())
}
