//! One stream: a job, or one partition of it, from its checkpoint to its
//! last page. Fetching the next page overlaps with writing the current one;
//! every page commits with the position that follows it.
//!
//! A stall watchdog bounds the wait for each page: retries, slow bodies and
//! a server that accepts the connection and says nothing all count, so a
//! stuck stream fails (keeping its checkpoint) instead of holding the run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::incremental;
use super::{RunError, Writer};
use crate::auth::Credential;
use crate::fetch::{HttpClient, NextRequest, Page, StreamFetcher, StreamPosition};
use crate::plan::{JobPlan, Partition};
use crate::store::{RunId, StoreError, StreamKey, TableSpec};

/// `--stall-timeout` when not given: far above any sane page time, so it
/// only ends streams that are really stuck.
pub(crate) const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A key added to the checkpoint JSON of a stream's last page. Between that
/// commit and `finish_stream` a crash leaves a position that would fetch the
/// last page again (the position after a last page is that page's own
/// request), which appends it twice in append mode; with the marker the
/// rerun only finishes the stream. `StreamPosition` ignores unknown keys.
const LAST_PAGE_KEY: &str = "last_page_committed";

/// Everything a stream needs that outlives it.
#[derive(Clone)]
pub(crate) struct StreamEnv {
    pub writer: Writer,
    pub http: HttpClient,
    pub credential: Option<Arc<Credential>>,
    pub cancel: CancellationToken,
    pub table: Arc<TableSpec>,
    pub run_id: RunId,
    /// Ignore the saved high-water mark (run --full-refresh, backfill).
    pub ignore_mark: bool,
    /// Store the new high-water mark when the stream finishes (not for backfills).
    pub keep_mark: bool,
    /// Longest wait for one page (zero: no limit).
    pub stall_timeout: Duration,
}

/// How a stream ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StreamOutcome {
    pub pages: u64,
    pub records: u64,
    pub interrupted: bool,
}

/// A page written or being written: its commit is awaited before the next
/// page is handed over, so at most one page per stream waits in memory.
type PendingCommit = oneshot::Receiver<Result<(), StoreError>>;

pub(crate) async fn run_stream(
    env: &StreamEnv,
    job: Arc<JobPlan>,
    partition: Partition,
    counts: &mut StreamOutcome,
) -> Result<(), RunError> {
    let key = StreamKey {
        job: job.name.clone(),
        partition: partition.key.clone(),
    };
    let (position, last_page_committed) = starting_position(env, &job, &key).await?;
    if last_page_committed {
        tracing::info!(job = %job.name, partition = %partition.key,
            "the last page was committed before a crash; finishing the stream");
        return finish(env, &job, &key, position).await;
    }
    let resumed = position.next != NextRequest::Start;
    let result = fetch_and_write(env, &job, &partition, &key, position.clone(), counts).await;
    match result {
        Err(RunError::Fetch(err)) if resumed && counts.pages == 0 && err.is_client_error() => {
            tracing::warn!(job = %job.name, partition = %partition.key, error = %err,
                "the API rejected the saved position; dropping it and starting the stream over from its high-water mark");
            let restart = StreamPosition {
                max_seen: position.max_seen.clone(),
                ..StreamPosition::start(position.since.clone())
            };
            fetch_and_write(env, &job, &partition, &key, restart, counts).await
        }
        other => other,
    }
}

/// The saved checkpoint, or a fresh start from the high-water mark; true
/// when the checkpoint is that of the stream's last page.
async fn starting_position(
    env: &StreamEnv,
    job: &JobPlan,
    key: &StreamKey,
) -> Result<(StreamPosition, bool), RunError> {
    let lookup = key.clone();
    let (checkpoint, mark) = env
        .writer
        .call(move |store| {
            Ok::<_, StoreError>((store.load_checkpoint(&lookup)?, store.load_mark(&lookup)?))
        })
        .await??;
    if let Some(text) = checkpoint {
        return read_checkpoint(&text).map_err(|err| RunError::BadCheckpoint {
            job: job.name.clone(),
            message: err.to_string(),
        });
    }
    let mark = if env.ignore_mark { None } else { mark };
    let since = incremental::since(job, mark.as_deref());
    Ok((StreamPosition::start(since), false))
}

/// A saved checkpoint: the position, and whether it follows the last page.
fn read_checkpoint(text: &str) -> Result<(StreamPosition, bool), serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let last = value.get(LAST_PAGE_KEY) == Some(&serde_json::Value::Bool(true));
    Ok((serde_json::from_value(value)?, last))
}

/// The checkpoint text saved with `page`.
fn checkpoint_text(page: &Page) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(&page.position)?;
    if let (true, Some(map)) = (page.last, value.as_object_mut()) {
        map.insert(LAST_PAGE_KEY.into(), serde_json::Value::Bool(true));
    }
    serde_json::to_string(&value)
}

async fn fetch_and_write(
    env: &StreamEnv,
    job: &Arc<JobPlan>,
    partition: &Partition,
    key: &StreamKey,
    position: StreamPosition,
    counts: &mut StreamOutcome,
) -> Result<(), RunError> {
    // A stream resumed after its last page committed (but before it was
    // finished) fetches nothing; its saved position still holds the mark.
    let mut last_position = position.clone();
    let mut fetcher = StreamFetcher::new(
        env.http.clone(),
        job.clone(),
        partition.clone(),
        env.credential.clone(),
        position,
    )?;
    let mut pending: Option<PendingCommit> = None;
    loop {
        let waiting_on = fetcher.first_request_url();
        let next = tokio::select! {
            biased;
            _ = env.cancel.cancelled() => None,
            page = watched(env.stall_timeout, fetcher.next_page()) => Some(page),
        };
        // Whatever happens next, the page already handed over must commit.
        await_commit(pending.take()).await?;
        let page = match next {
            None => {
                counts.interrupted = true;
                return Ok(());
            }
            Some(Ok(page)) => page?,
            Some(Err(Stalled)) => {
                return Err(RunError::Stalled {
                    job: job.name.clone(),
                    partition: partition.key.clone(),
                    url: waiting_on,
                    after: env.stall_timeout,
                });
            }
        };
        let Some(page) = page else { break };
        counts.pages += 1;
        counts.records += page.records.len() as u64;
        let last = page.last;
        last_position = page.position.clone();
        pending = Some(submit_page(env, key, page).await?);
        if last {
            break;
        }
    }
    await_commit(pending.take()).await?;
    finish(env, job, key, last_position).await
}

/// The stall watchdog fired.
struct Stalled;

/// `fetch`, unless it takes longer than `limit` (zero: no limit).
async fn watched<T>(limit: Duration, fetch: impl Future<Output = T>) -> Result<T, Stalled> {
    if limit.is_zero() {
        return Ok(fetch.await);
    }
    tokio::time::timeout(limit, fetch)
        .await
        .map_err(|_| Stalled)
}

async fn await_commit(pending: Option<PendingCommit>) -> Result<(), RunError> {
    match pending {
        None => Ok(()),
        Some(answer) => Ok(answer.await.map_err(|_| RunError::WriterGone)??),
    }
}

async fn submit_page(
    env: &StreamEnv,
    key: &StreamKey,
    page: Page,
) -> Result<PendingCommit, RunError> {
    let position = checkpoint_text(&page).map_err(|err| RunError::BadCheckpoint {
        job: key.job.clone(),
        message: err.to_string(),
    })?;
    let (key, table, run_id) = (key.clone(), env.table.clone(), env.run_id);
    env.writer
        .submit(move |store| store.apply_page(&key, &table, run_id, &page.records, &position))
        .await
}

/// The stream is complete: clear its cursor and keep its high-water mark.
async fn finish(
    env: &StreamEnv,
    job: &JobPlan,
    key: &StreamKey,
    last: StreamPosition,
) -> Result<(), RunError> {
    let mark = if env.keep_mark {
        incremental::next_mark(job, last.max_seen.as_ref())
    } else {
        None
    };
    let (key, table, run_id) = (key.clone(), env.table.clone(), env.run_id);
    env.writer
        .call(move |store| store.finish_stream(&key, &table, run_id, mark.as_deref()))
        .await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::HttpOptions;
    use crate::store::Store;

    fn last_page(position: StreamPosition) -> Page {
        Page {
            url: "http://127.0.0.1:9/items?page=3".into(),
            records: Vec::new(),
            position,
            last: true,
            bytes: 0,
        }
    }

    #[test]
    fn only_the_last_page_is_marked_and_the_mark_reads_back() {
        let position = StreamPosition {
            next: NextRequest::Page { page: 3 },
            pages: 3,
            since: Some("5".into()),
            max_seen: Some(serde_json::json!(42)),
        };
        let mut page = last_page(position.clone());
        let text = checkpoint_text(&page).unwrap();
        assert_eq!(read_checkpoint(&text).unwrap(), (position.clone(), true));
        page.last = false;
        let text = checkpoint_text(&page).unwrap();
        assert!(!text.contains(LAST_PAGE_KEY), "{text}");
        assert_eq!(read_checkpoint(&text).unwrap(), (position, false));
    }

    /// A crash between the last page's commit and the end of the stream:
    /// the rerun finishes the stream (mark stored, checkpoint cleared)
    /// without fetching, so an append table never gets that page twice.
    #[tokio::test]
    async fn a_checkpoint_after_the_last_page_finishes_without_fetching() {
        let mut job = crate::run::test_support::job("items");
        // Its URL is port 9 (discard), which refuses connections: any fetch
        // would fail the stream.
        job.retry.max_attempts = 1;
        job.incremental = Some(crate::plan::IncrementalPlan {
            cursor_field: "/id".into(),
            cursor_type: crate::plan::CursorType::Integer,
            param: "since".into(),
            param_in: crate::plan::ParamLocation::Query,
            initial: None,
            lookback: None,
            on_missing_cursor: crate::plan::OnMissingCursor::Error,
        });
        let table = TableSpec::new(&job.output, true);
        let key = StreamKey::new("items", "");
        let mut store = Store::open_in_memory().unwrap();
        store.prepare_table(&table).unwrap();
        let run_id = store.begin_run("items").unwrap();
        let position = StreamPosition {
            next: NextRequest::Start,
            pages: 1,
            since: None,
            max_seen: Some(serde_json::json!(7)),
        };
        let text = checkpoint_text(&last_page(position)).unwrap();
        store.apply_page(&key, &table, run_id, &[], &text).unwrap();
        let (writer, thread) = super::super::Writer::spawn(store).unwrap();
        let env = StreamEnv {
            writer: writer.clone(),
            http: HttpClient::new(&HttpOptions {
                concurrency: 1,
                user_agent: "apisync-test".into(),
            })
            .unwrap(),
            credential: None,
            cancel: CancellationToken::new(),
            table: Arc::new(table),
            run_id,
            ignore_mark: false,
            keep_mark: true,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        };
        let mut counts = StreamOutcome::default();
        run_stream(&env, Arc::new(job), Partition::whole(), &mut counts)
            .await
            .unwrap();
        assert_eq!(counts, StreamOutcome::default(), "nothing was fetched");
        let lookup = key.clone();
        let (checkpoint, mark) = writer
            .call(move |store| {
                (
                    store.load_checkpoint(&lookup).unwrap(),
                    store.load_mark(&lookup).unwrap(),
                )
            })
            .await
            .unwrap();
        assert_eq!(checkpoint, None, "the stream finished");
        assert_eq!(mark.as_deref(), Some("7"), "with the mark of its pages");
        drop((env, writer));
        thread.join();
    }

    #[test]
    fn the_stall_error_names_job_partition_url_and_the_flag() {
        let stalled = |partition: &str| {
            RunError::Stalled {
                job: "orders".into(),
                partition: partition.into(),
                url: "https://api.example.com/v1/orders?page=3&api_key=[redacted]".into(),
                after: Duration::from_secs(90),
            }
            .to_string()
        };
        insta::assert_snapshot!([stalled(""), stalled("eu")].join("\n"));
    }
}
