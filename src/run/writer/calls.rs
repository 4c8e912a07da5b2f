//! The typed calls the runner makes on the [`Writer`]
//! (`writer.finish_run(run_id, outcome)`): each queues one
//! [`Command`] and hands back the store's answer, as
//! `Result<Result<T, StoreError>, RunError>`: the outer error when the
//! writer is gone, the inner one from the store.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Writer;
use super::commands::{Answer, Command, IsDead, Renewal, Reply, RunOf};
use crate::record::Record;
use crate::run::RunError;
use crate::store::{
    ClaimEnd, LeaseOutcome, OtherRuns, RunId, RunOutcome, StoreError, StreamClaim, StreamKey,
    StreamState, TableSpec,
};

/// The typed calls: queue the command, wait for the store's answer.
impl Writer {
    /// Create `table` (or add columns); for a merge job, one stored row's
    /// key and record (see `run::job`'s key check).
    pub(crate) async fn prepare_table(
        &self,
        table: Arc<TableSpec>,
    ) -> Result<Result<Option<(String, String)>, StoreError>, RunError> {
        self.ask(|reply| Command::PrepareTable { table, reply })
            .await
    }

    /// A stream's saved checkpoint and high-water mark.
    pub(crate) async fn stream_start(
        &self,
        stream: StreamKey,
    ) -> Result<Result<(Option<String>, Option<String>), StoreError>, RunError> {
        self.ask(|reply| Command::StreamStart { stream, reply })
            .await
    }

    /// Queue a page and return at once with the receiver of its answer, so
    /// the caller can fetch the next page while this one is written.
    /// `mark`: this page ends an incremental window (see
    /// [`crate::store::Store::apply_window_end`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn submit_page(
        &self,
        stream: StreamKey,
        table: Arc<TableSpec>,
        run_id: RunId,
        records: Vec<Record>,
        position: String,
        mark: Option<String>,
        failed: Arc<AtomicBool>,
    ) -> Result<Answer<()>, RunError> {
        self.queue(|reply| Command::ApplyPage {
            stream,
            table,
            run_id,
            records,
            position,
            mark,
            failed,
            reply,
        })
        .await
    }

    pub(crate) async fn apply_last_page(
        &self,
        stream: StreamKey,
        table: Arc<TableSpec>,
        run_id: RunId,
        records: Vec<Record>,
        mark: Option<String>,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::ApplyLastPage {
            stream,
            table,
            run_id,
            records,
            mark,
            reply,
        })
        .await
    }

    pub(crate) async fn finish_stream(
        &self,
        stream: StreamKey,
        run_id: RunId,
        mark: Option<String>,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::FinishStream {
            stream,
            run_id,
            mark,
            reply,
        })
        .await
    }

    pub(crate) async fn complete_job_pass(
        &self,
        job: String,
        table: Arc<TableSpec>,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::CompleteJobPass { job, table, reply })
            .await
    }

    /// Record the start of `job`'s pass unless one is under way, before
    /// its `changed_only` partitions are read from `parent`'s table.
    pub(crate) async fn begin_pass(
        &self,
        job: String,
        parent: String,
        parent_table: String,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::BeginPass {
            job,
            parent,
            parent_table,
            reply,
        })
        .await
    }

    pub(crate) async fn complete_backfill(
        &self,
        job: String,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::CompleteBackfill { job, reply })
            .await
    }

    pub(crate) async fn begin_run(
        &self,
        job: String,
        of: RunOf,
    ) -> Result<Result<RunId, StoreError>, RunError> {
        self.ask(|reply| Command::BeginRun { job, of, reply }).await
    }

    pub(crate) async fn finish_run(
        &self,
        run_id: RunId,
        outcome: RunOutcome,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::FinishRun {
            run_id,
            outcome,
            reply,
        })
        .await
    }

    pub(crate) async fn discard_empty_run(
        &self,
        run_id: RunId,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::DiscardEmptyRun { run_id, reply })
            .await
    }

    pub(crate) async fn try_acquire_lease(
        &self,
        job: String,
        holder: String,
        stale_after: Duration,
        is_dead: IsDead,
    ) -> Result<Result<LeaseOutcome, StoreError>, RunError> {
        self.ask(|reply| Command::TryAcquireLease {
            job,
            holder,
            stale_after,
            is_dead,
            reply,
        })
        .await
    }

    pub(crate) async fn renew(
        &self,
        renewal: Renewal,
    ) -> Result<Result<bool, StoreError>, RunError> {
        self.ask(|reply| Command::Renew { renewal, reply }).await
    }

    pub(crate) async fn release_lease(
        &self,
        job: String,
        holder: String,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::ReleaseLease { job, holder, reply })
            .await
    }

    pub(crate) async fn register_holder(
        &self,
        invocation: String,
        holder: String,
        shard: u32,
        steal: bool,
    ) -> Result<Result<String, StoreError>, RunError> {
        self.ask(|reply| Command::RegisterHolder {
            invocation,
            holder,
            shard,
            steal,
            reply,
        })
        .await
    }

    pub(crate) async fn end_holder(
        &self,
        invocation: String,
        holder: String,
    ) -> Result<Result<(), StoreError>, RunError> {
        self.ask(|reply| Command::EndHolder {
            invocation,
            holder,
            reply,
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn claim_stream(
        &self,
        invocation: String,
        stream: StreamKey,
        shard: u32,
        holder: String,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: IsDead,
    ) -> Result<Result<StreamClaim, StoreError>, RunError> {
        self.ask(|reply| Command::ClaimStream {
            invocation,
            stream,
            shard,
            holder,
            retry_failed,
            stale_after,
            is_dead,
            reply,
        })
        .await
    }

    pub(crate) async fn end_claimed_stream(
        &self,
        invocation: String,
        stream: StreamKey,
        holder: String,
        end: ClaimEnd,
    ) -> Result<Result<bool, StoreError>, RunError> {
        self.ask(|reply| Command::EndClaimedStream {
            invocation,
            stream,
            holder,
            end,
            reply,
        })
        .await
    }

    pub(crate) async fn complete_sharded_pass(
        &self,
        invocation: String,
        job: String,
        table: impl Into<Arc<TableSpec>>,
    ) -> Result<Result<bool, StoreError>, RunError> {
        let table = table.into();
        self.ask(|reply| Command::CompleteShardedPass {
            invocation,
            job,
            table,
            reply,
        })
        .await
    }

    pub(crate) async fn done_in_invocation(
        &self,
        invocation: String,
        job: String,
        partitions: Vec<String>,
    ) -> Result<Result<HashSet<String>, StoreError>, RunError> {
        self.ask(|reply| Command::DoneInInvocation {
            invocation,
            job,
            partitions,
            reply,
        })
        .await
    }

    pub(crate) async fn close_dead_runs(
        &self,
        invocation: String,
        me: String,
        stale_after: Duration,
        is_dead: IsDead,
    ) -> Result<Result<OtherRuns, StoreError>, RunError> {
        self.ask(|reply| Command::CloseDeadRuns {
            invocation,
            me,
            stale_after,
            is_dead,
            reply,
        })
        .await
    }

    pub(crate) async fn job_completed_in(
        &self,
        invocation: String,
        job: String,
    ) -> Result<Result<bool, StoreError>, RunError> {
        self.ask(|reply| Command::JobCompletedIn {
            invocation,
            job,
            reply,
        })
        .await
    }

    /// Whether `job` completed in `invocation`, and its claimed streams
    /// that are not done.
    pub(crate) async fn invocation_state(
        &self,
        invocation: String,
        job: String,
        stale_after: Duration,
        is_dead: IsDead,
    ) -> Result<Result<(bool, Vec<StreamState>), StoreError>, RunError> {
        let state = self
            .ask(|reply| Command::InvocationState {
                invocation,
                job,
                stale_after,
                is_dead,
                live_shards: false,
                reply,
            })
            .await?;
        Ok(state.map(|(completed, states, _)| (completed, states)))
    }

    /// [`Writer::invocation_state`] and the shards with a live process.
    pub(crate) async fn invocation_state_and_shards(
        &self,
        invocation: String,
        job: String,
        stale_after: Duration,
        is_dead: IsDead,
    ) -> Result<Result<(bool, Vec<StreamState>, BTreeSet<u32>), StoreError>, RunError> {
        let state = self
            .ask(|reply| Command::InvocationState {
                invocation,
                job,
                stale_after,
                is_dead,
                live_shards: true,
                reply,
            })
            .await?;
        Ok(state.map(|(completed, states, live)| (completed, states, live.unwrap_or_default())))
    }

    /// Queue a command and wait for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Result<T, StoreError>, RunError> {
        let answer = self.queue(command).await?;
        answer.await.map_err(|_| RunError::WriterGone)
    }

    /// Queue a command; the receiver of its answer.
    async fn queue<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Answer<T>, RunError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| RunError::WriterGone)?;
        Ok(answer)
    }
}
