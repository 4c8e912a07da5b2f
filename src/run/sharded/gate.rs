//! The sharded gate. A sharded job runs in phases (this shard's own
//! streams, then with `--steal` every other one no live process holds),
//! each a pass through [`Claims`]: a stream is claimed in the invocation
//! before it runs, so no two processes run it, and its claim is ended
//! after. Own streams another live process holds are waited for (polled
//! every [`POLL_EVERY`]). The pass completes once every stream of the job
//! is done in the invocation, whoever ran them.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::env::{POLL_EVERY, Phase, ShardEnv};
use super::undone::complete_if_done;
use crate::plan::JobPlan;
use crate::run::assignment::owner;
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::gate::pass::Pass;
use crate::run::gate::{Ended, Entry, JobGate, StreamGate};
use crate::run::holder::{holder_is_dead, stale_after};
use crate::run::job::run_streams;
use crate::run::mode::JobMode;
use crate::run::outcome::record_outcome;
use crate::run::summary::{JobStatus, JobSummary};
use crate::run::writer::RunOf;
use crate::store::{ClaimEnd, RunId, StreamClaim, StreamKey, TableSpec};

/// The streams of `job` that `phases` take, under a run record of this shard.
pub(crate) async fn run_phases(
    env: &RunEnv,
    shard: &ShardEnv,
    job: Arc<JobPlan>,
    mode: &JobMode,
    phases: &[Phase],
) -> JobSummary {
    let cancel = env.cancel.child_token();
    let summary = JobSummary::new(&job.name);
    let gate = ShardedGate { shard, phases };
    run_streams(env, &job, mode, &cancel, summary, Instant::now(), &gate).await
}

/// A sharded job's run: its run record carries the shard; its passes are
/// its `phases`.
struct ShardedGate<'a> {
    shard: &'a ShardEnv,
    phases: &'a [Phase],
}

impl JobGate for ShardedGate<'_> {
    async fn begin_run(&self, env: &RunEnv, job: &str) -> Result<RunId, RunError> {
        // A shard's run is recorded with its shard in one transaction.
        let (name, invocation, index, holder) = (
            job.to_string(),
            self.shard.sharding.invocation.clone(),
            self.shard.index(),
            env.holder.clone(),
        );
        let of = RunOf::Shard {
            invocation,
            shard: index,
            holder,
        };
        Ok(env.writer.begin_run(name, of).await??)
    }

    async fn run_passes(
        &self,
        pass: &Pass<'_>,
        summary: &mut JobSummary,
        first_error: &mut Option<RunError>,
    ) -> Result<(), RunError> {
        let (shard, job, cancel) = (self.shard, pass.job, pass.cancel);
        summary.streams.get_or_insert_default();
        for &phase in self.phases {
            let claims = Claims { shard, phase };
            // Own streams another process holds are waited for: if that
            // process is a dead predecessor on another node (a pod
            // retried after a SIGKILL), its claims go stale and are
            // taken over here, instead of being left undone.
            loop {
                if cancel.is_cancelled() {
                    summary.interrupted = true;
                    break;
                }
                let busy = pass.run(&claims, summary, first_error).await?;
                // A `--steal` shard does not wait here: once through
                // its jobs it comes back to every job not complete
                // (`finish.rs`), without a run row open meanwhile.
                if phase != Phase::Own || shard.sharding.steal || busy == 0 || first_error.is_some()
                {
                    break;
                }
                tracing::info!(job = %job.name, streams = busy,
                    "waiting for this shard's streams that another process holds");
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        }
        Ok(())
    }

    async fn complete(
        &self,
        env: &RunEnv,
        job: &JobPlan,
        mode: &JobMode,
        _table: Arc<TableSpec>,
    ) -> Result<(), RunError> {
        complete_if_done(env, self.shard, job, mode).await
    }

    /// A run in which no stream ran here (all done or busy elsewhere) is
    /// forgotten rather than recorded.
    async fn end_run(&self, env: &RunEnv, run_id: RunId, summary: &JobSummary) {
        if summary.status == JobStatus::Succeeded && summary.streams.is_some_and(|s| s.run == 0) {
            let discarded = env.writer.discard_empty_run(run_id).await;
            if !matches!(discarded, Ok(Ok(()))) {
                tracing::warn!(job = %summary.job, "could not forget an empty shard run");
            }
        } else {
            record_outcome(env, run_id, summary).await;
        }
    }
}

/// One phase of a sharded job: the streams it wants, each claimed.
struct Claims<'a> {
    shard: &'a ShardEnv,
    phase: Phase,
}

impl StreamGate for Claims<'_> {
    /// The invocation's start: every shard lists the same date slices.
    fn now(&self) -> DateTime<Utc> {
        self.shard.started_at
    }

    fn wants(&self, job: &JobPlan, partition: &str) -> bool {
        self.shard.wants(self.phase, job, partition)
    }

    async fn enter(&self, env: &RunEnv, job: &JobPlan, partition: &str) -> Result<Entry, RunError> {
        claim(env, self.shard, job, partition, self.phase).await
    }

    async fn leave(
        &self,
        env: &RunEnv,
        job: &str,
        partition: &str,
        ended: Ended,
    ) -> Result<(), RunError> {
        let end = match ended {
            Ended::Done => ClaimEnd::Done,
            Ended::Interrupted => ClaimEnd::Release,
            Ended::Failed => ClaimEnd::Failed,
        };
        end_claim(env, self.shard, job, partition, end).await
    }
}

/// Claim the stream `partition` of `job` for this process: whether it
/// runs here (and whether it is stolen), is done, or is busy elsewhere.
async fn claim(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    partition: &str,
    phase: Phase,
) -> Result<Entry, RunError> {
    let key = StreamKey::new(&job.name, partition);
    let (invocation, holder, index) = (
        shard.invocation().to_string(),
        env.holder.clone(),
        owner(job, partition, shard.count()),
    );
    let me = holder.clone();
    let claimed = env
        .writer
        .claim_stream(
            invocation,
            key,
            index,
            holder,
            phase == Phase::Own,
            stale_after(),
            Box::new(move |other| holder_is_dead(other, &me)),
        )
        .await??;
    Ok(match claimed {
        StreamClaim::Claimed { taken_from } => {
            if let Some(old) = taken_from {
                tracing::warn!(job = %job.name, partition, previous_holder = %old,
                    "took over a stream whose process stopped; it resumes from its checkpoint");
            } else if phase == Phase::Steal {
                tracing::debug!(job = %job.name, partition, shard = index, "stealing a stream of another shard");
            }
            Entry::Run {
                stolen: !shard.owns(job, partition),
            }
        }
        StreamClaim::Done => Entry::Skip,
        StreamClaim::Busy { holder } => {
            tracing::debug!(job = %job.name, partition, %holder, "another process runs this stream");
            Entry::Busy
        }
        StreamClaim::Failed { holder } => {
            tracing::debug!(job = %job.name, partition, %holder, "failed in this invocation; not stolen");
            Entry::Skip
        }
    })
}

/// Record how a claimed stream ended. An error when the claim had been
/// taken over meanwhile (this process looked dead to another one).
async fn end_claim(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &str,
    partition: &str,
    end: ClaimEnd,
) -> Result<(), RunError> {
    let key = StreamKey::new(job, partition);
    let (invocation, holder) = (shard.invocation().to_string(), env.holder.clone());
    let ours = env
        .writer
        .end_claimed_stream(invocation, key, holder, end)
        .await??;
    if ours {
        return Ok(());
    }
    Err(RunError::Partitions {
        job: job.to_string(),
        message: format!(
            "stream {partition:?} was taken over by another process while this one ran it \
             (this process did not renew its heartbeat in time; is the database slow or \
             unreachable?); the other process finishes it"
        ),
    })
}
