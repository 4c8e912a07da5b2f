//! Running jobs: selection, ordering by `depends_on`, bounded concurrency,
//! one stream per partition, the single writer thread behind a bounded
//! channel, cancellation, and the run summary.

mod due;
mod error;
mod incremental;
mod job;
mod partitions;
mod scheduler;
mod select;
mod stream;
mod summary;
#[cfg(test)]
pub(crate) mod test_support;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use due::{is_due, next_due};
pub use error::RunError;
pub use job::JobMode;
pub use partitions::date_slices;
pub use select::{SelectError, select_jobs};
pub use summary::{JobStatus, JobSummary, RunSummary};
pub use writer::{Writer, WriterThread};

use crate::auth::{Credentials, TokenStore};
use crate::fetch::{HttpClient, HttpOptions};
use crate::plan::{JobPlan, ProjectPlan};
use crate::store::Store;

/// What every job of one invocation shares.
pub(crate) struct RunEnv {
    pub writer: Writer,
    pub http: HttpClient,
    pub credentials: Credentials,
    pub cancel: CancellationToken,
    pub job_concurrency: usize,
    /// Streams of one job in flight at once (requests are limited separately).
    pub stream_width: usize,
    /// Job name -> its table, for `partitions.from_job`.
    pub parent_tables: HashMap<String, String>,
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
    let store = Store::open(&plan.settings.database)?;
    let (writer, thread) = Writer::spawn(store)?;
    let summary = execute_with(plan, jobs, mode, cancel, token_store, writer).await;
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
) -> Result<RunSummary, RunError> {
    let http = HttpClient::new(&HttpOptions {
        concurrency: plan.settings.concurrency,
        user_agent: format!("apisync/{}", env!("CARGO_PKG_VERSION")),
    })?;
    let auth_names = jobs.iter().filter_map(|j| j.auth.as_deref());
    let credentials = Credentials::build(&plan.auths, auth_names, &http.token_client(), token_store)?;
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
    };
    let jobs = jobs.into_iter().map(Arc::new).collect();
    let jobs = scheduler::run_jobs(&env, jobs, &mode).await;
    Ok(RunSummary { jobs })
}
