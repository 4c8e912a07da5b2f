//! Running the selected jobs of one invocation: the writer thread and the
//! credentials set up, then either every job behind its lease (a plain
//! run) or this process's part of a sharded invocation; the run summary.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::env::RunEnv;
use super::error::RunError;
use super::mode::JobMode;
use super::progress::{NoProgress, Progress};
use super::sharded::ShardedRun;
use super::summary::RunSummary;
use super::writer::Writer;
use super::{holder, job, scheduler};
use crate::auth::{Credential, TokenStore};
use crate::fetch::{HttpClient, HttpOptions};
use crate::plan::{JobPlan, ProjectPlan};
use crate::store::Store;

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
    let holder = holder::holder_id();
    let jobs: Vec<Arc<JobPlan>> = jobs.into_iter().map(Arc::new).collect();
    let sharded = match &mode.shard {
        None => None,
        Some(sharding) => Some(ShardedRun::join(&writer, sharding, &holder, &jobs).await?),
    };
    let env = RunEnv {
        writer,
        http,
        credentials,
        secrets: plan.secrets.clone(),
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
        reader: std::sync::Mutex::new(None),
    };
    let jobs = match &sharded {
        None => {
            let (env, mode) = (&env, &mode);
            scheduler::run_jobs(env, jobs, move |job| job::run_job(env, job, mode)).await
        }
        Some(sharded) => sharded.run_jobs(&env, jobs, &mode).await,
    };
    settle_credentials(&env.credentials).await;
    let report = sharded.as_ref().map(ShardedRun::report);
    if let Some(sharded) = sharded {
        sharded.leave(&env).await;
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
