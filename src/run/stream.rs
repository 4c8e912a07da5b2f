//! One stream: a job, or one partition of it, from its checkpoint to its
//! last page. Fetching the next page overlaps with writing the current one;
//! every page commits with the position that follows it. Offset and page
//! streams with a known total fetch several pages ahead at once
//! (`fetch::ahead`), but `next_page` still hands them over strictly in
//! order, so this loop, its checkpoints and its append-mode guarantee are
//! the same for every pagination type.
//!
//! A stall watchdog bounds the wait for each page: retries, slow bodies and
//! a server that accepts the connection and says nothing all count, so a
//! stuck stream fails (keeping its checkpoint) instead of holding the run.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::error::RunError;
use super::incremental;
use super::progress::StreamProgress;
use super::windows;
use super::writer::Writer;
use crate::auth::Credential;
use crate::fetch::{HttpClient, NextRequest, Page, RequestStats, StreamFetcher, StreamPosition};
use crate::plan::WriteMode;
use crate::plan::{JobPlan, Partition};
use crate::store::{RunId, StoreError, StreamKey, TableSpec, upserts};

/// `--stall-timeout` when not given: far above any sane page time, so it
/// only ends streams that are really stuck.
pub(crate) const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything a stream needs that outlives it.
#[derive(Clone)]
pub(crate) struct StreamEnv {
    pub writer: Writer,
    pub http: HttpClient,
    pub credential: Option<Arc<Credential>>,
    /// The values of the job's `{secret.*}` placeholders.
    pub secrets: Arc<std::collections::BTreeMap<String, crate::secret::Secret>>,
    pub cancel: CancellationToken,
    pub table: Arc<TableSpec>,
    pub run_id: RunId,
    /// Ignore the saved high-water mark (run --full-refresh, backfill).
    pub ignore_mark: bool,
    /// Store the new high-water mark when the stream finishes (not for backfills).
    pub keep_mark: bool,
    /// Longest wait for one page (zero: no limit).
    pub stall_timeout: Duration,
    /// The run's start: what `{now}` stands for in streams that begin here.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// What watches one stream: made per stream, unlike [`StreamEnv`].
pub(crate) struct StreamWatch {
    /// This stream's request counters (the job adds them up at its end).
    pub stats: Arc<RequestStats>,
    /// Hears about this stream's pages (a live display, or nothing).
    pub progress: Arc<dyn StreamProgress>,
}

/// How a stream ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StreamOutcome {
    pub pages: u64,
    pub records: u64,
    pub interrupted: bool,
}

/// A page handed to the writer: its answer comes once it is committed (or
/// skipped, behind a failed one).
type PendingCommit = oneshot::Receiver<Result<(), StoreError>>;

/// Pages of a stream that may be with the writer (queued or being written)
/// while the stream fetches the next one. Handing over one more makes the
/// stream wait for the oldest commit first, so at most four pages of a
/// stream are in memory here (besides the fetch-ahead window of offset and
/// page streams, at most `fetch::ahead::MAX_WIDTH` pages).
///
/// One was enough to overlap a fetch with a write, but left the writer idle
/// whenever a fetch took longer than a commit (a CPU busy elsewhere, a WAL
/// checkpoint): the writer bounds a sequential stream, and three measured
/// +15% records/s on 1M records (docs/benchmarks.md); four and five
/// measured no more.
const PAGES_AHEAD_OF_COMMIT: usize = 3;

pub(crate) async fn run_stream(
    env: &StreamEnv,
    watch: &StreamWatch,
    job: Arc<JobPlan>,
    partition: Partition,
    counts: &mut StreamOutcome,
) -> Result<(), RunError> {
    let key = StreamKey {
        job: job.name.clone(),
        partition: partition.key.clone(),
    };
    // A windowed stream goes through its windows one after another: each
    // window's last page leaves the next window as the checkpoint, so the
    // loop (or a rerun after a crash) reads where to go on from there.
    loop {
        let Some(position) = starting_position(env, &job, &partition, &key).await? else {
            // A windowed stream whose mark has reached the end: nothing
            // to fetch this run, the stream is done.
            return finish(env, &key, None).await;
        };
        match run_from(env, watch, &job, &partition, &key, position, counts).await? {
            Ended::Window => continue,
            Ended::Stream => return Ok(()),
        }
    }
}

/// How `fetch_and_write` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// An incremental window committed and another follows.
    Window,
    /// The stream finished, failed or was interrupted.
    Stream,
}

/// The stream from `position` to the end of its window (or of the stream).
async fn run_from(
    env: &StreamEnv,
    watch: &StreamWatch,
    job: &Arc<JobPlan>,
    partition: &Partition,
    key: &StreamKey,
    position: StreamPosition,
    counts: &mut StreamOutcome,
) -> Result<Ended, RunError> {
    let resumed = position.next != NextRequest::Start;
    let pages_before = counts.pages;
    let result = fetch_and_write(env, watch, job, partition, key, position.clone(), counts).await;
    match result {
        Err(RunError::Fetch(err))
            if resumed && counts.pages == pages_before && err.is_client_error() =>
        {
            // Starting over writes this pass's pages again: harmless where
            // rows upsert on their key, doubled records where they do not.
            if !upserts(&env.table) {
                return Err(RunError::PositionRejected {
                    job: job.name.clone(),
                    partition: partition.key.clone(),
                    mode: match env.table.mode == WriteMode::Replace {
                        true => "replace mode without a primary_key",
                        false => "append mode",
                    },
                    refused: Box::new(err),
                });
            }
            tracing::warn!(job = %job.name, partition = %partition.key, error = %err,
                "the API rejected the saved position; dropping it and starting the stream over from its high-water mark");
            // A windowed stream starts its window over.
            let restart = StreamPosition {
                max_seen: position.max_seen.clone(),
                now: position.now.clone(),
                window: position.window.clone(),
                ..StreamPosition::start(position.since.clone())
            };
            fetch_and_write(env, watch, job, partition, key, restart, counts).await
        }
        other => other,
    }
}

/// The saved checkpoint, or a fresh start from the high-water mark; for a
/// windowed job, None when no window is left before its end.
async fn starting_position(
    env: &StreamEnv,
    job: &JobPlan,
    partition: &Partition,
    key: &StreamKey,
) -> Result<Option<StreamPosition>, RunError> {
    let (checkpoint, mark) = env.writer.stream_start(key.clone()).await??;
    let position = match checkpoint {
        Some(text) => {
            let saved: StreamPosition =
                serde_json::from_str(&text).map_err(|err| RunError::BadCheckpoint {
                    job: job.name.clone(),
                    message: err.to_string(),
                })?;
            incremental::resumed_position(job, partition, saved, env.now)
        }
        None => {
            let mark = if env.ignore_mark { None } else { mark };
            incremental::fresh_position(job, partition, mark.as_deref(), env.now)
        }
    };
    position.map_err(RunError::window(&job.name, &key.partition))
}

async fn fetch_and_write(
    env: &StreamEnv,
    watch: &StreamWatch,
    job: &Arc<JobPlan>,
    partition: &Partition,
    key: &StreamKey,
    position: StreamPosition,
    counts: &mut StreamOutcome,
) -> Result<Ended, RunError> {
    let mut last_position = position.clone();
    // Whether this window brought any record (an open integer window that
    // brought none ends the run's windows).
    let empty_before = position.pages == 0;
    let records_before = counts.records;
    let mut fetcher = StreamFetcher::new(
        env.http.clone(),
        job.clone(),
        partition.clone(),
        env.credential.clone(),
        position,
    )?
    .with_secrets(env.secrets.clone())
    .with_stats(watch.stats.clone());
    let mut pending: VecDeque<PendingCommit> = VecDeque::new();
    // Set on the writer thread when a page fails to commit: a page queued
    // behind it must not commit, or its checkpoint would skip those rows.
    let failed = Arc::new(AtomicBool::new(false));
    loop {
        // Cancelling or timing out drops `next_page` mid-wait; it is
        // cancel-safe, and dropping the fetcher on return aborts any
        // requests it had in flight ahead.
        let next = tokio::select! {
            biased;
            _ = env.cancel.cancelled() => None,
            page = watched(env.stall_timeout, fetcher.next_page()) => Some(page),
        };
        let page = match next {
            Some(Ok(Ok(Some(page)))) if !page.last => page,
            other => {
                // Whatever happens next, the pages already handed over must commit.
                await_commits(&mut pending).await?;
                let page = match other {
                    None => {
                        counts.interrupted = true;
                        return Ok(Ended::Stream);
                    }
                    Some(Ok(page)) => page?,
                    Some(Err(Stalled)) => {
                        // `next_page` is cancel-safe: the dropped fetch left the
                        // fetcher on the request it was waiting for.
                        return Err(RunError::Stalled {
                            job: job.name.clone(),
                            partition: partition.key.clone(),
                            url: fetcher.first_request_url(),
                            after: env.stall_timeout,
                        });
                    }
                };
                let Some(page) = page else { break };
                // The last page and the end of the stream (or window)
                // commit together.
                counted(watch, counts, &page);
                let empty = empty_before && counts.records == records_before;
                return finish_with(env, job, partition, key, page, empty, &failed).await;
            }
        };
        counted(watch, counts, &page);
        last_position = page.position.clone();
        // Queue this page behind the ones being written, so the writer goes
        // straight on from one commit to the next without a round trip
        // through this task; wait for the oldest only when the queue is full.
        pending.push_back(submit_page(env, key, page, None, &failed).await?);
        if pending.len() > PAGES_AHEAD_OF_COMMIT {
            await_commit(pending.pop_front()).await?;
        }
    }
    await_commits(&mut pending).await?;
    let mark = end_mark(env, job, &last_position);
    finish(env, key, mark).await?;
    Ok(Ended::Stream)
}

fn counted(watch: &StreamWatch, counts: &mut StreamOutcome, page: &Page) {
    counts.pages += 1;
    counts.records += page.records.len() as u64;
    watch.progress.page(counts.pages, counts.records);
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

/// Every page handed over, oldest first; the first failure is the answer
/// (the pages behind it were skipped on the writer thread).
async fn await_commits(pending: &mut VecDeque<PendingCommit>) -> Result<(), RunError> {
    while let Some(answer) = pending.pop_front() {
        await_commit(Some(answer)).await?;
    }
    Ok(())
}

/// `mark`: the page ends an incremental window, whose end it stores.
async fn submit_page(
    env: &StreamEnv,
    key: &StreamKey,
    page: Page,
    mark: Option<String>,
    failed: &Arc<AtomicBool>,
) -> Result<PendingCommit, RunError> {
    let position =
        serde_json::to_string(&page.position).map_err(|err| RunError::BadCheckpoint {
            job: key.job.clone(),
            message: err.to_string(),
        })?;
    // Skipped by the writer once a page before it failed (nobody waits
    // for its answer then: the stream stopped at that failure).
    let (key, table, run_id) = (key.clone(), env.table.clone(), env.run_id);
    env.writer
        .submit_page(
            key,
            table,
            run_id,
            page.records,
            position,
            mark,
            failed.clone(),
        )
        .await
}

/// The high-water mark a finished stream stores (none for a backfill).
fn end_mark(env: &StreamEnv, job: &JobPlan, last: &StreamPosition) -> Option<String> {
    if env.keep_mark {
        incremental::next_mark(job, last.max_seen.as_ref())
    } else {
        None
    }
}

/// The last page: its rows, the cleared cursor and the new high-water mark
/// in one transaction; or, for a window another window follows, its rows,
/// the next window's start and this window's end as the mark. `empty`:
/// the window brought no record.
async fn finish_with(
    env: &StreamEnv,
    job: &JobPlan,
    partition: &Partition,
    key: &StreamKey,
    page: Page,
    empty: bool,
    failed: &Arc<AtomicBool>,
) -> Result<Ended, RunError> {
    let mut mark = end_mark(env, job, &page.position);
    if let (Some((incremental, plan)), Some(window)) = (windows::of(job), &page.position.window) {
        if page.cut_short {
            // `max_pages` stopped the window short: the page commits with
            // the window's next page as the checkpoint and the mark where
            // it is; a later run goes on inside the window.
            commit_now(env, key, page, None, failed).await?;
            return Ok(Ended::Stream);
        }
        let slice = windows::Slice::of(job, partition);
        let seen = windows::Seen {
            empty,
            max: page.position.max_seen.as_ref(),
        };
        let after = windows::after(incremental, plan, window, seen, env.now, slice)
            .map_err(RunError::window(&job.name, &key.partition))?;
        mark = after.mark.filter(|_| env.keep_mark);
        if let Some(next) = after.next {
            let position = StreamPosition {
                next: NextRequest::Start,
                pages: 0,
                max_seen: None,
                window: Some(next),
                ..page.position.clone()
            };
            commit_now(env, key, Page { position, ..page }, mark, failed).await?;
            return Ok(Ended::Window);
        }
    }
    let (key, table, run_id) = (key.clone(), env.table.clone(), env.run_id);
    env.writer
        .apply_last_page(key, table, run_id, page.records, mark)
        .await??;
    Ok(Ended::Stream)
}

/// `page` with its position (and `mark`), committed before this returns.
async fn commit_now(
    env: &StreamEnv,
    key: &StreamKey,
    page: Page,
    mark: Option<String>,
    failed: &Arc<AtomicBool>,
) -> Result<(), RunError> {
    let answer = submit_page(env, key, page, mark, failed).await?;
    await_commit(Some(answer)).await
}

/// The stream is complete: clear its cursor and keep its high-water mark.
async fn finish(env: &StreamEnv, key: &StreamKey, mark: Option<String>) -> Result<(), RunError> {
    let (key, run_id) = (key.clone(), env.run_id);
    env.writer.finish_stream(key, run_id, mark).await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
