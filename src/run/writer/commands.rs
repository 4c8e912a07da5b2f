//! What the writer thread does: one [`Command`] per store operation the
//! runner needs, each with its arguments and where to send the answer.
//! The runner does not build commands itself: it calls the typed methods
//! of `calls.rs` on the `Writer`.
//!
//! Adding one: a variant, its arm in [`Command::run`], and its method in
//! `calls.rs`.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::record::Record;
use crate::store::{
    ClaimEnd, LeaseOutcome, OtherRuns, RunId, RunOutcome, Store, StoreError, StreamClaim,
    StreamKey, StreamState, TableSpec,
};

/// The store's answer to one command.
pub(crate) type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Whether another process (by its holder name) is known to be dead; runs
/// on the writer thread.
pub(crate) type IsDead = Box<dyn Fn(&str) -> bool + Send>;

/// A heartbeat's renewal: false when what it renews is no longer this
/// process's.
#[derive(Debug, Clone)]
pub(crate) enum Renewal {
    /// A job's lease.
    Lease { job: String, holder: String },
    /// This process's row in a sharded invocation (never lost: true).
    Holder { invocation: String, holder: String },
}

/// Where a run row belongs: a plain run, or a shard's run of an invocation.
#[derive(Debug, Clone)]
pub(crate) enum RunOf {
    Plain,
    Shard {
        invocation: String,
        shard: u32,
        holder: String,
    },
}

/// A sharded job's streams in an invocation, as the waiting and finishing
/// code reads them in one go.
pub(crate) type InvocationState = (bool, Vec<StreamState>, Option<BTreeSet<u32>>);

/// One operation on the writer's store.
pub(crate) enum Command {
    /// Create the table (or add columns); then, for a merge job, one stored
    /// row's key and record.
    PrepareTable {
        table: Arc<TableSpec>,
        reply: Reply<Option<(String, String)>>,
    },
    /// A stream's saved checkpoint and its high-water mark.
    StreamStart {
        stream: StreamKey,
        reply: Reply<(Option<String>, Option<String>)>,
    },
    /// A page and the stream's next position. Skipped when `failed` is set:
    /// an earlier page of the stream failed, and nobody waits for this one.
    /// Sets `failed` when it fails itself.
    ApplyPage {
        stream: StreamKey,
        table: Arc<TableSpec>,
        run_id: RunId,
        records: Vec<Record>,
        position: String,
        /// Set for an incremental window's last page: the window's end,
        /// stored as the mark with the page.
        mark: Option<String>,
        failed: Arc<AtomicBool>,
        reply: Reply<()>,
    },
    ApplyLastPage {
        stream: StreamKey,
        table: Arc<TableSpec>,
        run_id: RunId,
        records: Vec<Record>,
        mark: Option<String>,
        reply: Reply<()>,
    },
    FinishStream {
        stream: StreamKey,
        run_id: RunId,
        mark: Option<String>,
        reply: Reply<()>,
    },
    CompleteJobPass {
        job: String,
        table: Arc<TableSpec>,
        reply: Reply<()>,
    },
    CompleteBackfill {
        job: String,
        reply: Reply<()>,
    },
    BeginPass {
        job: String,
        parent: String,
        parent_table: String,
        reply: Reply<()>,
    },
    BeginRun {
        job: String,
        of: RunOf,
        reply: Reply<RunId>,
    },
    FinishRun {
        run_id: RunId,
        outcome: RunOutcome,
        reply: Reply<()>,
    },
    DiscardEmptyRun {
        run_id: RunId,
        reply: Reply<()>,
    },
    TryAcquireLease {
        job: String,
        holder: String,
        stale_after: Duration,
        is_dead: IsDead,
        reply: Reply<LeaseOutcome>,
    },
    Renew {
        renewal: Renewal,
        reply: Reply<bool>,
    },
    ReleaseLease {
        job: String,
        holder: String,
        reply: Reply<()>,
    },
    RegisterHolder {
        invocation: String,
        holder: String,
        shard: u32,
        steal: bool,
        reply: Reply<String>,
    },
    EndHolder {
        invocation: String,
        holder: String,
        reply: Reply<()>,
    },
    ClaimStream {
        invocation: String,
        stream: StreamKey,
        shard: u32,
        holder: String,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: IsDead,
        reply: Reply<StreamClaim>,
    },
    EndClaimedStream {
        invocation: String,
        stream: StreamKey,
        holder: String,
        end: ClaimEnd,
        reply: Reply<bool>,
    },
    CompleteShardedPass {
        invocation: String,
        job: String,
        table: Arc<TableSpec>,
        reply: Reply<bool>,
    },
    DoneInInvocation {
        invocation: String,
        job: String,
        partitions: Vec<String>,
        reply: Reply<HashSet<String>>,
    },
    CloseDeadRuns {
        invocation: String,
        me: String,
        stale_after: Duration,
        is_dead: IsDead,
        reply: Reply<OtherRuns>,
    },
    JobCompletedIn {
        invocation: String,
        job: String,
        reply: Reply<bool>,
    },
    /// Whether the job completed in the invocation, its streams not done,
    /// and (with `live_shards`) the shards with a live process.
    InvocationState {
        invocation: String,
        job: String,
        stale_after: Duration,
        is_dead: IsDead,
        live_shards: bool,
        reply: Reply<InvocationState>,
    },
}

impl Command {
    /// Run on the writer thread. A caller that stopped waiting drops its
    /// answer: sending it then fails, which is fine.
    pub(crate) fn run(self, store: &mut Store) {
        match self {
            Command::PrepareTable { table, reply } => {
                let sample = store.prepare_table(&table).and_then(|()| match table.mode {
                    crate::plan::WriteMode::Merge => store.key_sample(&table.table),
                    _ => Ok(None),
                });
                let _ = reply.send(sample);
            }
            Command::StreamStart { stream, reply } => {
                let start = store
                    .load_checkpoint(&stream)
                    .and_then(|checkpoint| Ok((checkpoint, store.load_mark(&stream)?)));
                let _ = reply.send(start);
            }
            Command::ApplyPage {
                stream,
                table,
                run_id,
                records,
                position,
                mark,
                failed,
                reply,
            } => {
                // The writer runs commands in order on one thread: the pages
                // before this one are done. If one failed, nobody waits for
                // this answer (the stream stopped at that failure).
                if failed.load(Ordering::Relaxed) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let written = match &mark {
                    None => store.apply_page(&stream, &table, run_id, &records, &position),
                    Some(mark) => store.apply_window_end(
                        &stream,
                        &table,
                        run_id,
                        &records,
                        &position,
                        Some(mark),
                    ),
                };
                if written.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                let _ = reply.send(written);
            }
            Command::ApplyLastPage {
                stream,
                table,
                run_id,
                records,
                mark,
                reply,
            } => {
                let written =
                    store.apply_last_page(&stream, &table, run_id, &records, mark.as_deref());
                let _ = reply.send(written);
            }
            Command::FinishStream {
                stream,
                run_id,
                mark,
                reply,
            } => {
                let _ = reply.send(store.finish_stream(&stream, run_id, mark.as_deref()));
            }
            Command::CompleteJobPass { job, table, reply } => {
                let _ = reply.send(store.complete_job_pass(&job, &table));
            }
            Command::CompleteBackfill { job, reply } => {
                let _ = reply.send(store.complete_backfill(&job));
            }
            Command::BeginPass {
                job,
                parent,
                parent_table,
                reply,
            } => {
                let _ = reply.send(store.begin_pass(&job, &parent, &parent_table));
            }
            Command::BeginRun { job, of, reply } => {
                let begun = match of {
                    RunOf::Plain => store.begin_run(&job),
                    RunOf::Shard {
                        invocation,
                        shard,
                        holder,
                    } => store.begin_shard_run(&job, &invocation, shard, &holder),
                };
                let _ = reply.send(begun);
            }
            Command::FinishRun {
                run_id,
                outcome,
                reply,
            } => {
                let _ = reply.send(store.finish_run(run_id, &outcome));
            }
            Command::DiscardEmptyRun { run_id, reply } => {
                let _ = reply.send(store.discard_empty_run(run_id));
            }
            Command::TryAcquireLease {
                job,
                holder,
                stale_after,
                is_dead,
                reply,
            } => {
                let _ = reply.send(store.try_acquire_lease(&job, &holder, stale_after, is_dead));
            }
            Command::Renew { renewal, reply } => {
                let renewed = match renewal {
                    Renewal::Lease { job, holder } => store.renew_lease(&job, &holder),
                    Renewal::Holder { invocation, holder } => {
                        store.renew_holder(&invocation, &holder).map(|()| true)
                    }
                };
                let _ = reply.send(renewed);
            }
            Command::ReleaseLease { job, holder, reply } => {
                let _ = reply.send(store.release_lease(&job, &holder));
            }
            Command::RegisterHolder {
                invocation,
                holder,
                shard,
                steal,
                reply,
            } => {
                let _ = reply.send(store.register_holder(&invocation, &holder, shard, steal));
            }
            Command::EndHolder {
                invocation,
                holder,
                reply,
            } => {
                let _ = reply.send(store.end_holder(&invocation, &holder));
            }
            Command::ClaimStream {
                invocation,
                stream,
                shard,
                holder,
                retry_failed,
                stale_after,
                is_dead,
                reply,
            } => {
                let claim = store.claim_stream(
                    &invocation,
                    &stream,
                    shard,
                    &holder,
                    retry_failed,
                    stale_after,
                    is_dead,
                );
                let _ = reply.send(claim);
            }
            Command::EndClaimedStream {
                invocation,
                stream,
                holder,
                end,
                reply,
            } => {
                let _ = reply.send(store.end_claimed_stream(&invocation, &stream, &holder, end));
            }
            Command::CompleteShardedPass {
                invocation,
                job,
                table,
                reply,
            } => {
                let _ = reply.send(store.complete_sharded_pass(&invocation, &job, &table));
            }
            Command::DoneInInvocation {
                invocation,
                job,
                partitions,
                reply,
            } => {
                let keys: Vec<&str> = partitions.iter().map(String::as_str).collect();
                let _ = reply.send(store.done_in_invocation(&invocation, &job, &keys));
            }
            Command::CloseDeadRuns {
                invocation,
                me,
                stale_after,
                is_dead,
                reply,
            } => {
                let _ = reply.send(store.close_dead_runs(&invocation, &me, stale_after, is_dead));
            }
            Command::JobCompletedIn {
                invocation,
                job,
                reply,
            } => {
                let _ = reply.send(store.job_completed_in(&invocation, &job));
            }
            Command::InvocationState {
                invocation,
                job,
                stale_after,
                is_dead,
                live_shards,
                reply,
            } => {
                let state = (|| {
                    let completed = store.job_completed_in(&invocation, &job)?;
                    let states = store.stream_states(&invocation, &job, stale_after, &is_dead)?;
                    let live = match live_shards {
                        true => Some(store.live_shards(&invocation, stale_after, &is_dead)?),
                        false => None,
                    };
                    Ok((completed, states, live))
                })();
                let _ = reply.send(state);
            }
        }
    }
}
