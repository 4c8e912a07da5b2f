//! Running jobs: selection, ordering by `depends_on`, bounded concurrency,
//! one stream per partition, the single writer thread behind a bounded
//! channel, cancellation, and the run summary.

mod dry_run;
mod due;
mod error;
mod finish;
mod incremental;
mod job;
mod lease;
mod partitions;
mod preview;
mod progress;
mod scheduler;
mod select;
mod shard;
mod sharded;
mod stream;
mod summary;
#[cfg(test)]
pub(crate) mod test_support;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use dry_run::dry_run;
pub use due::{is_due, next_due};
pub use error::RunError;
pub use job::JobMode;
pub use lease::STALE_ENV;
pub use partitions::date_slices;
pub use preview::{Preview, PreviewError, PreviewRequest, PreviewStart, PreviewStop, preview};
pub use progress::{NoProgress, Progress, StreamProgress};
pub use select::{SelectError, select_due, select_jobs};
pub use shard::{
    COUNT_ENV, INDEX_ENV, INVOCATION_ENV, ShardSpec, Sharding, job_shard, owner, resolve_sharding,
    stream_shard,
};
pub use summary::{JobStatus, JobSummary, RunSummary, ShardReport, StreamCounts};
pub use writer::{Writer, WriterThread};

use crate::auth::{Credential, TokenStore};
use crate::fetch::{HttpClient, HttpOptions};
use crate::plan::{JobPlan, ProjectPlan};
use crate::store::Store;

/// What every job of one invocation shares.
pub(crate) struct RunEnv {
    pub writer: Writer,
    pub http: HttpClient,
    /// Per auth name: the shared credential, or why it could not be built
    /// (a missing secret fails the jobs that use it, not the whole run).
    pub credentials: HashMap<String, Result<Arc<Credential>, String>>,
    pub cancel: CancellationToken,
    pub job_concurrency: usize,
    /// Streams of one job in flight at once (requests are limited separately).
    pub stream_width: usize,
    /// Job name -> its table, for `partitions.from_job`.
    pub parent_tables: HashMap<String, String>,
    /// The database, for read-only connections beside the writer's.
    pub database: crate::plan::Database,
    /// The read-only connection partition listings share, opened by the
    /// first one: a sharded child polling its parent every second must not
    /// open a connection each time.
    pub reader: std::sync::Mutex<Option<Arc<std::sync::Mutex<crate::store::StoreReader>>>>,
    /// This process's job-lease holder id (`hostname:pid:random@start`).
    pub holder: String,
    /// Told about every stream (a live display on a terminal, else nothing).
    pub progress: Arc<dyn Progress>,
    /// A sharded run's invocation, shard and jobs (None: unsharded).
    pub shard: Option<sharded::ShardEnv>,
}

/// Run `jobs` of `plan` against the database in the plan's settings.
/// Job failures are in the summary; an `Err` means nothing could run.
pub async fn execute(
    plan: &ProjectPlan,
    jobs: Vec<JobPlan>,
    mode: JobMode,
    cancel: CancellationToken,
    token_store: Arc<dyn TokenStore>,
) -> Result<RunSummary, RunError> {
    execute_observed(plan, jobs, mode, cancel, token_store, Arc::new(NoProgress)).await
}

/// `execute`, reporting every stream's start, pages and end to `progress`.
pub async fn execute_observed(
    plan: &ProjectPlan,
    jobs: Vec<JobPlan>,
    mode: JobMode,
    cancel: CancellationToken,
    token_store: Arc<dyn TokenStore>,
    progress: Arc<dyn Progress>,
) -> Result<RunSummary, RunError> {
    let store = Store::open(&plan.settings.database)?;
    let (writer, thread) = Writer::spawn(store)?;
    let summary = execute_with(plan, jobs, mode, cancel, token_store, writer, progress).await;
    // Every Writer handle is gone now: the thread drains its queue and ends.
    thread.join();
    summary
}

async fn execute_with(
    plan: &ProjectPlan,
    jobs: Vec<JobPlan>,
    mode: JobMode,
    cancel: CancellationToken,
    token_store: Arc<dyn TokenStore>,
    writer: Writer,
    progress: Arc<dyn Progress>,
) -> Result<RunSummary, RunError> {
    let http = HttpClient::new(&HttpOptions {
        concurrency: plan.settings.concurrency,
        user_agent: format!("apisync/{}", env!("CARGO_PKG_VERSION")),
        hosts: plan.hosts.clone(),
    })?;
    let credentials = build_credentials(plan, &jobs, &http, token_store);
    let holder = lease::holder_id();
    let jobs: Vec<Arc<JobPlan>> = jobs.into_iter().map(Arc::new).collect();
    let (shard, heartbeat) = match &mode.shard {
        None => (None, None),
        Some(sharding) => {
            let (started_at, heartbeat) = sharded::register(&writer, sharding, &holder).await?;
            tracing::info!(shard = %sharding.spec, invocation = %sharding.invocation,
                steal = sharding.steal, assignment = shard::ASSIGNMENT,
                version = env!("CARGO_PKG_VERSION"), "sharded run");
            let shard = sharded::ShardEnv {
                sharding: sharding.clone(),
                started_at,
                jobs: jobs.iter().map(|j| (j.name.clone(), j.clone())).collect(),
            };
            (Some(shard), Some(heartbeat))
        }
    };
    let env = RunEnv {
        writer,
        http,
        credentials,
        cancel,
        job_concurrency: plan.settings.job_concurrency,
        stream_width: plan.settings.concurrency,
        parent_tables: plan
            .jobs
            .iter()
            .map(|j| (j.name.clone(), j.output.table.clone()))
            .collect(),
        database: plan.settings.database.clone(),
        holder,
        progress,
        shard,
        reader: std::sync::Mutex::new(None),
    };
    let mut jobs = scheduler::run_jobs(&env, jobs, &mode).await;
    if let Some(shard) = &env.shard {
        finish::finish_shard(&env, shard, &mode, &mut jobs).await;
    }
    settle_credentials(&env.credentials).await;
    let report = mode.shard.as_ref().map(|s| ShardReport {
        index: s.spec.index,
        count: s.spec.count,
        invocation: s.invocation.clone(),
        steal: s.steal,
    });
    if let (Some(heartbeat), Some(sharding)) = (heartbeat, &mode.shard) {
        heartbeat.end(&env.writer, sharding, &env.holder).await;
    }
    Ok(RunSummary {
        jobs,
        shard: report,
    })
}

/// Before the run returns and the process exits: a token refresh still in
/// flight (the requests waiting on it were dropped by SIGTERM, a timeout or
/// the stall watchdog) is let finish, up to `auth::SETTLE_TIMEOUT`, so a
/// refresh token the server already rotated is stored, not lost.
async fn settle_credentials(credentials: &HashMap<String, Result<Arc<Credential>, String>>) {
    let settling = credentials.values().flatten().map(|credential| async move {
        if !credential.settle(crate::auth::SETTLE_TIMEOUT).await {
            tracing::warn!(
                auth = %credential.name(),
                "a token refresh was still running when the run ended; a refresh token the provider rotated may be lost (hint: if the next run fails with invalid_grant, authorize again)"
            );
        }
    });
    futures::future::join_all(settling).await;
}

/// One credential per auth name used by `jobs`, shared by all of them.
fn build_credentials(
    plan: &ProjectPlan,
    jobs: &[JobPlan],
    http: &HttpClient,
    token_store: Arc<dyn TokenStore>,
) -> HashMap<String, Result<Arc<Credential>, String>> {
    let mut credentials = HashMap::new();
    let token_client = http.token_client();
    for name in jobs.iter().filter_map(|j| j.auth.as_deref()) {
        if credentials.contains_key(name) {
            continue;
        }
        let built = match plan.auths.get(name) {
            Some(auth) => Credential::new(name, auth, &token_client, token_store.clone())
                .map(Arc::new)
                .map_err(|err| err.to_string()),
            None => Err(format!("auth \"{name}\" is not defined")),
        };
        credentials.insert(name.to_string(), built);
    }
    credentials
}
