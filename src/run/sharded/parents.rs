//! A child job of a sharded run waits, through the database, until each
//! selected parent has completed its pass in the invocation, whichever
//! shard ran it; it takes over (with `--steal`) or gives up on parent
//! streams that no live process will run.

use std::sync::Arc;
use std::time::Instant;

use super::env::{FULL_CHECK_EVERY, POLL_EVERY, Phase, ShardEnv};
use super::gate::run_phases;
use super::undone::{Liveness, Remaining, complete, remaining_with};
use crate::plan::JobPlan;
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::holder::{holder_is_dead, stale_after};
use crate::run::mode::JobMode;

/// How waiting for the parents ended, when the child may not run.
pub(crate) enum NotReady {
    Failed(RunError),
    Cancelled,
}

/// Wait until every selected parent of `job` has completed its pass in
/// this invocation, whichever shard ran it. A parent stream that failed in
/// this invocation skips the child. Parent streams nobody will run (their
/// shard is gone, or their holder died) are taken over with `--steal`, and
/// fail the child after the stale limit without it.
pub(crate) async fn wait_for_parents(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    mode: &JobMode,
) -> Result<(), NotReady> {
    for dependency in &job.depends_on {
        let Some(parent) = shard.jobs.get(dependency) else {
            // Not selected in this invocation: not waited for.
            continue;
        };
        wait_for_parent(env, shard, job, parent, mode).await?;
    }
    Ok(())
}

async fn wait_for_parent(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    parent: &Arc<JobPlan>,
    mode: &JobMode,
) -> Result<(), NotReady> {
    let failed = |err: RunError| NotReady::Failed(err);
    let mut orphaned_since: Option<Instant> = None;
    let mut announced = false;
    // Listing the parent's partitions is the costly part (a `from_job`
    // parent may have 100,000): done at most every few seconds, while the
    // cheap completion check runs every poll.
    let list_every = FULL_CHECK_EVERY.min(stale_after() / 2);
    let mut listed: Option<Instant> = None;
    loop {
        if env.cancel.is_cancelled() {
            return Err(NotReady::Cancelled);
        }
        let (invocation, name, me) = (
            shard.invocation().to_string(),
            parent.name.clone(),
            env.holder.clone(),
        );
        let (completed, states, shards) = env
            .writer
            .invocation_state_and_shards(
                invocation,
                name,
                stale_after(),
                Box::new(move |other| holder_is_dead(other, &me)),
            )
            .await
            .map_err(failed)?
            .map_err(|err| failed(err.into()))?;
        if completed {
            if announced {
                tracing::info!(job = %job.name, parent = %parent.name, "parent completed in this invocation");
            }
            return Ok(());
        }
        if states.iter().any(|s| s.status == "failed") {
            return Err(failed(RunError::DependencyFailed {
                job: job.name.clone(),
                dependency: parent.name.clone(),
            }));
        }
        if listed.is_some_and(|at| at.elapsed() < list_every) {
            tokio::select! {
                _ = env.cancel.cancelled() => return Err(NotReady::Cancelled),
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
            continue;
        }
        listed = Some(Instant::now());
        let live = Liveness {
            claims: states
                .into_iter()
                .map(|s| (s.partition, s.holder_alive))
                .collect(),
            shards,
        };
        let left = remaining_with(env, shard, parent, mode, Some(&live))
            .await
            .map_err(failed)?;
        if !left.any {
            // Every stream is done but nobody completed the pass (its last
            // process stopped in between): complete it here.
            complete(env, shard, parent).await.map_err(failed)?;
            continue;
        }
        if !announced {
            tracing::info!(job = %job.name, parent = %parent.name,
                "waiting for the parent job to complete on the other shards");
            announced = true;
        }
        if left.orphaned == 0 {
            orphaned_since = None;
        } else if shard.sharding.steal {
            tracing::warn!(job = %job.name, parent = %parent.name, streams = left.orphaned,
                "taking over parent streams that no live shard will run");
            let stolen = Box::pin(run_phases(
                env,
                shard,
                parent.clone(),
                mode,
                &[Phase::Own, Phase::Steal],
            ))
            .await;
            tracing::info!(job = %parent.name, status = ?stolen.status, pages = stolen.pages,
                records = stolen.records, "took over parent streams");
        } else {
            let since = *orphaned_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= stale_after() {
                return Err(failed(orphaned_error(shard, job, parent, &left)));
            }
        }
        tokio::select! {
            _ = env.cancel.cancelled() => return Err(NotReady::Cancelled),
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

fn orphaned_error(shard: &ShardEnv, job: &JobPlan, parent: &JobPlan, left: &Remaining) -> RunError {
    let mut shards: Vec<u32> = left.named.iter().map(|(_, s)| *s).collect();
    shards.sort_unstable();
    shards.dedup();
    let streams: Vec<String> = left
        .named
        .iter()
        .map(|(p, s)| format!("{p:?} (shard {s})"))
        .collect();
    RunError::Partitions {
        job: job.name.clone(),
        message: format!(
            "gave up waiting for job \"{}\" in invocation {:?}: {} of its streams, e.g. {}, belong to \
             shards with no live process for {} (hint: rerun shard(s) {} with the same --invocation, \
             or run a shard with --steal to take them over)",
            parent.name,
            shard.invocation(),
            left.orphaned,
            streams.join(", "),
            humantime::format_duration(stale_after()),
            shards
                .iter()
                .map(|s| format!("{s}/{}", shard.count()))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}
