//! The streams of a job not done yet in the invocation, whoever owns
//! them, and completing a job's pass once none is left (by whichever
//! shard gets there first).

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt as _;

use super::env::ShardEnv;
use crate::plan::JobPlan;
use crate::run::assignment::owner;
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::mode::JobMode;
use crate::run::partitions::unfinished_partitions;
use crate::store::TableSpec;

/// Orphaned streams named in an error, at most.
const NAMED: usize = 5;

/// Every stream of `job` done in this invocation? Then complete its pass
/// (once, whoever gets there first). Every shard calls this after its
/// last stream of the job, so the last one to finish a stream sees them
/// all done.
pub(crate) async fn complete_if_done(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    mode: &JobMode,
) -> Result<(), RunError> {
    let left = remaining(env, shard, job, mode).await?;
    if left.any {
        tracing::debug!(job = %job.name, "streams of other shards are not done yet; the last one completes the pass");
        return Ok(());
    }
    complete(env, shard, job).await
}

pub(super) async fn complete(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
) -> Result<(), RunError> {
    let table = TableSpec::of_job(job);
    let (invocation, name) = (shard.invocation().to_string(), job.name.clone());
    let completed = env
        .writer
        .complete_sharded_pass(invocation, name, table)
        .await??;
    if completed {
        tracing::info!(job = %job.name, "every stream of the job is done in this invocation; pass completed");
    }
    Ok(())
}

/// The streams of a job not done in this invocation, as far as a waiting
/// child needs them: whether there is any, and the orphaned ones.
#[derive(Default)]
pub(super) struct Remaining {
    pub any: bool,
    pub orphaned: usize,
    /// The first few orphaned streams and their shards, for the error.
    pub named: Vec<(String, u32)>,
}

/// Walk the job's partitions (finished ones are left out by the listing)
/// and check them against this invocation. With `live`, classify each
/// remaining stream: it is orphaned when no live process holds it and its
/// shard has no live process either (this shard counts as gone: it has
/// already been through the job).
pub(super) async fn remaining_with(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    mode: &JobMode,
    live: Option<&Liveness>,
) -> Result<Remaining, RunError> {
    let mut left = Remaining::default();
    for_each_undone(env, shard, job, mode, |key| {
        left.any = true;
        let Some(live) = live else {
            // Only whether any is left was asked.
            return false;
        };
        let index = owner(job, &key, shard.count());
        let orphaned = match live.claims.get(&key) {
            Some(alive) => !alive,
            None => index == shard.index() || !live.shards.contains(&index),
        };
        if orphaned {
            left.orphaned += 1;
            if left.named.len() < NAMED {
                left.named.push((key, index));
            }
        }
        true
    })
    .await?;
    Ok(left)
}

/// Call `each` with every stream of `job` that is not done in this
/// invocation (the job's own partitions, not yet finished in its pass),
/// until it answers false.
async fn for_each_undone(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    mode: &JobMode,
    mut each: impl FnMut(String) -> bool,
) -> Result<(), RunError> {
    let mut partitions = unfinished_partitions(env, job, &listing_mode(mode), shard.started_at)?
        .chunks(500)
        .boxed();
    while let Some(chunk) = partitions.next().await {
        let keys = chunk
            .into_iter()
            .map(|p| p.map(|p| p.key))
            .collect::<Result<Vec<_>, _>>()?;
        let (invocation, name, asked) = (
            shard.invocation().to_string(),
            job.name.clone(),
            keys.clone(),
        );
        let done = env
            .writer
            .done_in_invocation(invocation, name, asked)
            .await??;
        for key in keys.into_iter().filter(|k| !done.contains(k)) {
            if !each(key) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// How many streams of `job` are not done in this invocation, and the
/// shards they belong to: whom a job this shard leaves unfinished is
/// left to.
pub(crate) async fn undone_owners(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    mode: &JobMode,
) -> Result<(u64, BTreeSet<u32>), RunError> {
    let (mut count, mut owners) = (0, BTreeSet::new());
    for_each_undone(env, shard, job, mode, |key| {
        count += 1;
        owners.insert(owner(job, &key, shard.count()));
        true
    })
    .await?;
    Ok((count, owners))
}

async fn remaining(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    mode: &JobMode,
) -> Result<Remaining, RunError> {
    remaining_with(env, shard, job, mode, None).await
}

/// The job's own partitions, never a backfill's slices.
fn listing_mode(mode: &JobMode) -> JobMode {
    JobMode {
        backfill: None,
        ..mode.clone()
    }
}

/// Who is alive in the invocation, read once per poll.
pub(super) struct Liveness {
    /// Claimed (running) streams of the parent: whether the holder lives.
    pub claims: HashMap<String, bool>,
    /// Shards with a live process.
    pub shards: BTreeSet<u32>,
}
