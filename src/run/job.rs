//! One job's run through a gate (`gate/`): its run record, its table
//! prepared and its primary key checked, its credential, its passes over
//! its partitions (each a stream with its own checkpoint, run in parallel
//! and read in batches), the end of its pass (replace swap, the
//! finished-partition list cleared) and its outcome. A plain job holds its
//! lease around all that ([`run_job`]); a sharded job starts in
//! `sharded/job.rs` and comes here through the same [`run_streams`].

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::env::RunEnv;
use super::error::RunError;
use super::gate::JobGate;
use super::gate::pass::Pass;
use super::gate::plain::PlainGate;
use super::job_lease::{self, Acquired};
use super::mode::JobMode;
use super::stream::{DEFAULT_STALL_TIMEOUT, StreamEnv};
use super::summary::{JobStatus, JobSummary};
use crate::plan::JobPlan;
use crate::store::{RunId, TableSpec};

/// A job of a plain (unsharded) run: its lease taken (or, with `--wait`,
/// waited for), its streams run through the [`PlainGate`], its lease given
/// back.
pub(crate) async fn run_job(env: &RunEnv, job: Arc<JobPlan>, mode: &JobMode) -> JobSummary {
    let started = Instant::now();
    let summary = JobSummary::new(&job.name);
    let lease = match job_lease::acquire(env, &job.name, mode.wait_for_lease).await {
        Ok(Acquired::Lease(lease)) => lease,
        Ok(Acquired::Busy(message)) => return JobSummary::held(&job.name, message),
        Ok(Acquired::Cancelled) => {
            let mut summary = summary;
            summary.status = JobStatus::Interrupted;
            return summary;
        }
        Err(err) => return summary.failed(err, started),
    };
    let mut summary =
        run_streams(env, &job, mode, &lease.cancel, summary, started, &PlainGate).await;
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

/// The job's streams, through `gate`, under a run record of their own.
pub(crate) async fn run_streams<G: JobGate>(
    env: &RunEnv,
    job: &Arc<JobPlan>,
    mode: &JobMode,
    cancel: &CancellationToken,
    mut summary: JobSummary,
    started: Instant,
    gate: &G,
) -> JobSummary {
    let run_id = match gate.begin_run(env, &job.name).await {
        Ok(id) => id,
        Err(err) => return summary.failed(err, started),
    };
    // Every line logged for this job carries its name and run id (JSON logs).
    // ERROR level so that the span is enabled whatever the filter lets through.
    let span = tracing::error_span!("job", job = %job.name, run_id = run_id.0);
    let token_requests_before = token_requests(env, job);
    let result = run_partitions(env, job, mode, cancel, run_id, &mut summary, gate)
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
    gate.end_run(env, run_id, &summary).await;
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
    // A key with partition values in it: the record alone makes only its
    // pointer parts, so those are what is compared.
    let positions: Vec<usize> = job
        .records
        .partition_key
        .iter()
        .map(|(at, _)| *at)
        .collect();
    let comparable = match positions.is_empty() {
        true => Some(stored.clone()),
        false => {
            let total = job.records.primary_key.len() + positions.len();
            crate::fetch::without_parts(&stored, &positions, total)
        }
    };
    if comparable.as_deref() == Some(now.as_str()) {
        return Ok(());
    }
    Err(RunError::KeyChanged {
        job: job.name.clone(),
        table: job.output.table.clone(),
        stored,
        now,
    })
}

/// What the job's requests need besides its auth, before any is sent:
/// every `{env.*}` set, and each `{secret.*}` resolved (and registered with
/// the scrubber). Err says which is missing, and where the job names it.
pub(crate) fn request_secrets(
    sources: &std::collections::BTreeMap<String, crate::plan::SecretSource>,
    job: &JobPlan,
) -> Result<Arc<std::collections::BTreeMap<String, crate::secret::Secret>>, String> {
    if let Some(problem) = job.request.missing_env.first() {
        // The caller names the job.
        let located = crate::plan::Diagnostic {
            job: None,
            ..problem.clone()
        };
        return Err(located.to_string());
    }
    let (names, _) = crate::plan::secrets_used(&job.request);
    crate::auth::resolve_named(sources, &names).map(Arc::new)
}

async fn run_partitions<G: JobGate>(
    env: &RunEnv,
    job: &Arc<JobPlan>,
    mode: &JobMode,
    cancel: &CancellationToken,
    run_id: RunId,
    summary: &mut JobSummary,
    gate: &G,
) -> Result<(), RunError> {
    let table = Arc::new(TableSpec::of_job(job));
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
    let secrets = request_secrets(&env.secrets, job).map_err(|message| RunError::Credential {
        job: job.name.clone(),
        message,
    })?;
    let stream_env = StreamEnv {
        secrets,
        writer: env.writer.clone(),
        http: env.http.clone(),
        credential,
        cancel: cancel.clone(),
        table: table.clone(),
        run_id,
        ignore_mark: mode.full_refresh || mode.backfill.is_some(),
        keep_mark: mode.backfill.is_none(),
        stall_timeout: mode.stall_timeout.unwrap_or(DEFAULT_STALL_TIMEOUT),
        now: chrono::Utc::now(),
    };
    let mut first_error: Option<RunError> = None;
    let pass = Pass {
        env,
        job,
        mode,
        cancel,
        stream_env: &stream_env,
    };
    gate.run_passes(&pass, summary, &mut first_error).await?;
    if let Some(err) = first_error {
        return Err(err);
    }
    if !summary.interrupted && !cancel.is_cancelled() {
        gate.complete(env, job, mode, table).await?;
    }
    Ok(())
}
