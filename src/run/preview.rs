//! `apisync preview`: a job's first pages fetched exactly as `run` would
//! fetch them (its credential, host limits, retry rules and pagination,
//! from where a run would start), kept in memory and handed back: nothing
//! is written, and no database is created.
//!
//! The database is read when it exists (the checkpoint and high-water mark
//! a run would start from, `from_job` partition values, rotated refresh
//! tokens). When it does not, the stream starts from `initial`, and an
//! `oauth2_refresh_token` auth is refused: its server may rotate the
//! refresh token on use, and a rotated token that is not stored is lost
//! (the configured one is then spent, and the next run cannot sign in).

use std::sync::Arc;

use super::dry_run::planned_partitions;
use super::incremental;
use super::partitions::{fields_partition, value_partition};
use crate::auth::{Credential, NoTokenStore, TokenStore};
use crate::fetch::{FetchError, HttpClient, HttpOptions, Record, StreamFetcher, StreamPosition};
use crate::plan::{AuthPlan, JobPlan, Partition, PartitionsPlan, ProjectPlan};
use crate::store::{StoreError, StoreReader, StreamKey};
use crate::token_store::{DbTokenStore, TokensError};

/// What to preview.
#[derive(Debug, Clone)]
pub struct PreviewRequest {
    /// Most pages to fetch (at least 1).
    pub pages: u64,
    /// The partition key (None: the job's first stream).
    pub partition: Option<String>,
}

/// Why the preview stopped fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewStop {
    /// The last page arrived: a run would complete the stream here.
    Complete,
    /// `--pages` pages arrived and the API has more.
    PageLimit,
}

/// Where the preview's stream started, as a run would start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewStart {
    /// No database yet: from the job's first request (and `initial`).
    NoDatabase,
    /// From the first request, with the stored high-water mark (if any).
    Fresh,
    /// From a checkpoint a run left, after this many committed pages.
    Resumed(u64),
}

/// The pages a preview fetched and what a run would do next.
#[derive(Debug)]
pub struct Preview {
    pub partition: String,
    pub start: PreviewStart,
    /// The incremental lower bound the stream asked with.
    pub since: Option<String>,
    /// Per page: its URL (secrets redacted) and its records.
    pub pages: Vec<(String, Vec<Record>)>,
    pub stop: PreviewStop,
    /// The request a run would send next (secrets redacted); None when complete.
    pub next: Option<String>,
    /// The high-water mark the stream would store from the pages seen (JSON
    /// text); None when the job is not incremental or no record had one.
    pub mark: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error("job \"{job}\": {message}")]
    Job { job: String, message: String },
}

/// Fetch up to `request.pages` pages of `job`'s stream.
pub async fn preview(
    plan: &ProjectPlan,
    job: &JobPlan,
    request: &PreviewRequest,
) -> Result<Preview, PreviewError> {
    // Looked at, never changed: no file created, nothing migrated.
    let reader = StoreReader::open_to_peek(&plan.settings.database)?;
    let exists = reader.is_some();
    let store = match reader {
        Some(reader) if reader.has_state()? => Some(reader),
        _ => None,
    };
    let partition = pick_partition(plan, job, store.as_ref(), request.partition.as_deref())?;
    let (position, start) = starting_position(job, store.as_ref(), &partition)?;
    let tokens: Arc<dyn TokenStore> = match exists {
        true => Arc::new(DbTokenStore::open(&plan.settings.database)?),
        false => {
            refuse_rotating_auth(plan, job)?;
            Arc::new(NoTokenStore)
        }
    };
    drop(store);
    let http = HttpClient::new(&HttpOptions {
        concurrency: plan.settings.concurrency,
        user_agent: format!("apisync/{}", env!("CARGO_PKG_VERSION")),
        hosts: plan.hosts.clone(),
    })?;
    let credential = credential(plan, job, &http, tokens)?;
    let secrets =
        super::job::request_secrets(&plan.secrets, job).map_err(|message| PreviewError::Job {
            job: job.name.clone(),
            message,
        })?;
    let since = position.since.clone();
    let mut fetcher = StreamFetcher::new(
        http,
        Arc::new(job.clone()),
        partition.clone(),
        credential,
        position,
    )?
    .with_secrets(secrets);
    let mut pages = Vec::new();
    let mut stop = PreviewStop::PageLimit;
    while (pages.len() as u64) < request.pages {
        let Some(page) = fetcher.next_page().await? else {
            stop = PreviewStop::Complete;
            break;
        };
        let last = page.last;
        pages.push((page.url, page.records));
        if last {
            stop = PreviewStop::Complete;
            break;
        }
    }
    let next = match stop {
        PreviewStop::Complete => None,
        PreviewStop::PageLimit => Some(fetcher.first_request_url()),
    };
    Ok(Preview {
        partition: partition.key,
        start,
        since,
        pages,
        stop,
        next,
        mark: incremental::next_mark(job, fetcher.position().max_seen.as_ref()),
    })
}

/// Without a database a rotated refresh token would have nowhere to go.
fn refuse_rotating_auth(plan: &ProjectPlan, job: &JobPlan) -> Result<(), PreviewError> {
    let Some(name) = job.auth.as_deref() else {
        return Ok(());
    };
    if let Some(AuthPlan::RefreshToken { .. }) = plan.auths.get(name) {
        return Err(PreviewError::Job {
            job: job.name.clone(),
            message: format!(
                "auth \"{name}\" is an oauth2_refresh_token grant, and the database {} does not exist yet to keep a refresh token the server may rotate on use (the configured one would then be spent and lost) (hint: `apisync run {}` once, which creates the database and stores the rotated token; preview uses it afterwards)",
                plan.settings.database, job.name
            ),
        });
    }
    Ok(())
}

fn credential(
    plan: &ProjectPlan,
    job: &JobPlan,
    http: &HttpClient,
    tokens: Arc<dyn TokenStore>,
) -> Result<Option<Arc<Credential>>, PreviewError> {
    let Some(name) = job.auth.as_deref() else {
        return Ok(None);
    };
    let failed = |message: String| PreviewError::Job {
        job: job.name.clone(),
        message,
    };
    let auth = plan
        .auths
        .get(name)
        .ok_or_else(|| failed(format!("auth \"{name}\" is not defined")))?;
    Credential::new(name, auth, &http.token_client(), tokens)
        .map(|c| Some(Arc::new(c)))
        .map_err(|err| failed(err.to_string()))
}

/// The stream to preview: the one named, else the job's first.
fn pick_partition(
    plan: &ProjectPlan,
    job: &JobPlan,
    store: Option<&StoreReader>,
    wanted: Option<&str>,
) -> Result<Partition, PreviewError> {
    let failed = |message: String| PreviewError::Job {
        job: job.name.clone(),
        message,
    };
    let Some(partitions) = &job.partitions else {
        return match wanted {
            None => Ok(Partition::whole()),
            Some(_) => Err(failed(
                "--partition: the job has no partitions (hint: leave it out)".into(),
            )),
        };
    };
    // Values of another job's table are only known once it ran; a key
    // given by hand stands for itself.
    if let (PartitionsPlan::FromJob { .. }, Some(key)) = (partitions, wanted) {
        return Ok(value_partition(key));
    }
    // With `fields` the key is the JSON object of the values by name, as
    // `status` shows it: `--partition '{"id":"42"}'`.
    if let (PartitionsPlan::FromJobFields { fields, .. }, Some(key)) = (partitions, wanted) {
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        let row = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(key)
            .ok()
            .map(|values| {
                let values: Vec<_> = names.iter().map(|n| values.get(*n).cloned()).collect();
                serde_json::Value::from_iter(values.into_iter().map(Option::unwrap_or_default))
                    .to_string()
            });
        return row
            .and_then(|row| fields_partition(&names, &row))
            .filter(|p| p.key == key)
            .ok_or_else(|| {
                failed(format!(
                    "--partition {key:?} is not a partition of this job (hint: write the values by name as JSON text, such as '{{\"{}\":\"42\"}}')",
                    names.first().copied().unwrap_or("id")
                ))
            });
    }
    let all = planned_partitions(store, plan, job, false).map_err(|e| failed(e.to_string()))?;
    let found = match wanted {
        None => all.first(),
        Some(key) => all.iter().find(|p| p.key == key),
    };
    found.cloned().ok_or_else(|| {
        let shown: Vec<&str> = all.iter().take(5).map(|p| p.key.as_str()).collect();
        match (wanted, shown.is_empty()) {
            (_, true) => failed(
                "the job has no partitions to preview yet (hint: run the job its partitions come from, or name one with --partition)".into(),
            ),
            (Some(key), false) => failed(format!(
                "--partition {key:?} is not one of the job's partitions (hint: one of {})",
                shown.join(", ")
            )),
            (None, false) => failed("the job has no partitions".into()),
        }
    })
}

/// Where a run would start the stream: its checkpoint, else its mark.
fn starting_position(
    job: &JobPlan,
    store: Option<&StoreReader>,
    partition: &Partition,
) -> Result<(StreamPosition, PreviewStart), PreviewError> {
    let now = chrono::Utc::now();
    let failed = |message: String| PreviewError::Job {
        job: job.name.clone(),
        message,
    };
    let placed = |position: Result<Option<StreamPosition>, String>| {
        position.map_err(failed)?.ok_or_else(|| {
            failed("nothing to fetch: the stream's mark has reached the end of its last window (incremental.end); a run would fetch nothing now".into())
        })
    };
    let Some(store) = store else {
        let position = placed(incremental::fresh_position(job, partition, None, now))?;
        return Ok((position, PreviewStart::NoDatabase));
    };
    let key = StreamKey::new(job.name.clone(), partition.key.clone());
    if let Some(text) = store.checkpoint(&key)? {
        let position: StreamPosition = serde_json::from_str(&text).map_err(|err| {
            failed(format!(
                "the saved checkpoint cannot be read ({err}) (hint: `apisync reset {}` forgets it)",
                job.name
            ))
        })?;
        let pages = position.pages;
        let position = placed(incremental::resumed_position(job, partition, position, now))?;
        return Ok((position, PreviewStart::Resumed(pages)));
    }
    let mark = store.mark(&key)?;
    let position = placed(incremental::fresh_position(
        job,
        partition,
        mark.as_deref(),
        now,
    ))?;
    Ok((position, PreviewStart::Fresh))
}
