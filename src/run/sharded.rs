//! A sharded run (`run --shard INDEX/COUNT --invocation ID [--steal]`):
//! several processes share one database and split the streams of every
//! job between them by [`super::shard::owner`].
//!
//! Per process: register as a holder of the invocation and keep a
//! heartbeat ([`HolderHeartbeat`]). Per job: skip it if its pass already
//! completed in the invocation; wait (through the database) until every
//! selected parent completed in the invocation, whichever shard ran it;
//! then claim and run this shard's streams, and with `--steal` every other
//! stream no live process holds; finally complete the job's pass if every
//! stream of it is done, whoever ran them. Job leases are not used: stream
//! claims take their place.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use super::job::JobMode;
use super::lease::{HEARTBEAT_EVERY, Heartbeat, holder_is_dead, stale_after};
use super::partitions::unfinished_partitions;
use super::shard::{Sharding, owner};
use super::summary::JobSummary;
use super::writer::Renewal;
use super::{RunEnv, RunError, Writer};
use crate::plan::JobPlan;
use crate::store::{ClaimEnd, OtherRuns, StreamClaim, StreamKey, TableSpec};

/// How often a child job looks whether its parents completed elsewhere,
/// and a shard whether its own streams held by others are free again.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// How often a waiting child lists its parent's remaining streams to find
/// orphaned ones (at most; more often with a short stale limit).
pub(crate) const FULL_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Orphaned streams named in an error, at most.
const NAMED: usize = 5;

/// What the jobs of a sharded run share.
pub(crate) struct ShardEnv {
    pub sharding: Sharding,
    /// The invocation's start, the same on every shard: date partitions up
    /// to "now" end there, so every shard lists the same slices.
    pub started_at: DateTime<Utc>,
    /// Every selected job by name, for a child that must finish its
    /// parent's pass or take its orphaned streams.
    pub jobs: HashMap<String, Arc<JobPlan>>,
}

/// Which streams a pass over a job's partitions takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// This shard's own streams; one that failed in this invocation is
    /// retried (a rerun of the shard is how Kubernetes retries an index).
    Own,
    /// Any other stream that is not done and no live process holds.
    Steal,
    /// A `--steal` shard once through its own jobs: any stream of a job
    /// that is not complete in the invocation, whoever owns it, that no
    /// live process holds (failed ones are left to their shard's rerun).
    Finish,
}

impl ShardEnv {
    pub fn index(&self) -> u32 {
        self.sharding.spec.index
    }

    pub fn count(&self) -> u32 {
        self.sharding.spec.count
    }

    pub fn invocation(&self) -> &str {
        &self.sharding.invocation
    }

    /// The phases a job runs on this shard.
    pub fn phases(&self) -> &'static [Phase] {
        if self.sharding.steal {
            &[Phase::Own, Phase::Steal]
        } else {
            &[Phase::Own]
        }
    }

    /// Whether `phase` looks at the stream `partition` of `job` at all.
    pub fn wants(&self, phase: Phase, job: &JobPlan, partition: &str) -> bool {
        let mine = owner(job, partition, self.count()) == self.index();
        match phase {
            Phase::Own => mine,
            Phase::Steal => !mine,
            Phase::Finish => true,
        }
    }

    /// Whether this shard owns the stream `partition` of `job` (else it
    /// is stolen when this shard runs it).
    pub fn owns(&self, job: &JobPlan, partition: &str) -> bool {
        owner(job, partition, self.count()) == self.index()
    }
}

/// This process as a holder of the invocation: registered at the start,
/// renewed every [`HEARTBEAT_EVERY`], ended when the run ends.
pub(crate) struct HolderHeartbeat(Heartbeat);

/// Register `holder` and start its heartbeat. Returns the invocation's
/// start time (the first shard's clock).
pub(crate) async fn register(
    writer: &Writer,
    sharding: &Sharding,
    holder: &str,
) -> Result<(DateTime<Utc>, HolderHeartbeat), RunError> {
    let (invocation, me, index, steal) = (
        sharding.invocation.clone(),
        holder.to_string(),
        sharding.spec.index,
        sharding.steal,
    );
    let started = writer
        .register_holder(invocation, me, index, steal)
        .await??;
    // A killed process of this invocation may have left runs `running`
    // (a rerun of its index finds them here, whatever else it does).
    if let Err(err) = close_dead_runs(writer, sharding, holder).await {
        tracing::warn!(error = %err, "could not close the runs of stopped shards");
    }
    let started_at = DateTime::parse_from_rfc3339(&started)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let (invocation, me) = (sharding.invocation.clone(), holder.to_string());
    let heartbeat = Heartbeat::start(
        writer,
        HEARTBEAT_EVERY,
        "this shard's heartbeat (others take its streams over once it is stale)".into(),
        Renewal::Holder {
            invocation,
            holder: me,
        },
        || {},
    );
    Ok((started_at, HolderHeartbeat(heartbeat)))
}

impl HolderHeartbeat {
    /// Stop the heartbeat and record that this process ended, so other
    /// shards know at once that it runs nothing any more.
    pub(crate) async fn end(self, writer: &Writer, sharding: &Sharding, holder: &str) {
        self.0.stop().await;
        let (invocation, me) = (sharding.invocation.clone(), holder.to_string());
        let ended = writer.end_holder(invocation, me).await;
        if !matches!(ended, Ok(Ok(()))) {
            tracing::warn!(
                "could not record the end of this shard; its heartbeat goes stale instead"
            );
        }
    }
}

/// What [`claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// This process runs the stream now.
    Run,
    /// Nothing to do here: done, or failed in this invocation (not stolen).
    Skip,
    /// Another process that looks alive holds it.
    Busy,
}

/// Claim the stream `partition` of `job` for this process.
pub(crate) async fn claim(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &JobPlan,
    partition: &str,
    phase: Phase,
) -> Result<Claimed, RunError> {
    let key = StreamKey::new(&job.name, partition);
    let (invocation, holder, index) = (
        shard.invocation().to_string(),
        env.holder.clone(),
        owner(job, partition, shard.count()),
    );
    let claimed = env
        .writer
        .claim_stream(
            invocation,
            key,
            index,
            holder.clone(),
            phase == Phase::Own,
            stale_after(),
            Box::new(move |other| holder_is_dead(other, &holder)),
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
            Claimed::Run
        }
        StreamClaim::Done => Claimed::Skip,
        StreamClaim::Busy { holder } => {
            tracing::debug!(job = %job.name, partition, %holder, "another process runs this stream");
            Claimed::Busy
        }
        StreamClaim::Failed { holder } => {
            tracing::debug!(job = %job.name, partition, %holder, "failed in this invocation; not stolen");
            Claimed::Skip
        }
    })
}

/// Record how a claimed stream ended. An error when the claim had been
/// taken over meanwhile (this process looked dead to another one).
pub(crate) async fn end_claim(
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

async fn complete(env: &RunEnv, shard: &ShardEnv, job: &JobPlan) -> Result<(), RunError> {
    let table = TableSpec::new(&job.output, !job.records.primary_key.is_empty());
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
struct Remaining {
    any: bool,
    orphaned: usize,
    /// The first few orphaned streams and their shards, for the error.
    named: Vec<(String, u32)>,
}

/// Walk the job's partitions (finished ones are left out by the listing)
/// and check them against this invocation. With `live`, classify each
/// remaining stream: it is orphaned when no live process holds it and its
/// shard has no live process either (this shard counts as gone: it has
/// already been through the job).
async fn remaining_with(
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
    let mut partitions = unfinished_partitions(env, job, &listing_mode(mode))?
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

/// The shard that owns the stream `partition` of `job`.
pub(crate) fn owner_of(shard: &ShardEnv, job: &JobPlan, partition: &str) -> u32 {
    owner(job, partition, shard.count())
}

/// Mark `interrupted` the runs of this invocation whose process stopped
/// (see `store/shard_runs.rs`); what is still running elsewhere.
pub(crate) async fn close_dead_runs(
    writer: &Writer,
    sharding: &Sharding,
    holder: &str,
) -> Result<OtherRuns, RunError> {
    let (invocation, me) = (sharding.invocation.clone(), holder.to_string());
    let found = writer
        .close_dead_runs(
            invocation,
            me.clone(),
            stale_after(),
            Box::new(move |other| holder_is_dead(other, &me)),
        )
        .await??;
    if found.interrupted > 0 {
        tracing::warn!(
            runs = found.interrupted,
            "marked interrupted the runs of shards whose process stopped before finishing them"
        );
    }
    Ok(found)
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
struct Liveness {
    /// Claimed (running) streams of the parent: whether the holder lives.
    claims: HashMap<String, bool>,
    /// Shards with a live process.
    shards: BTreeSet<u32>,
}

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
            let stolen = Box::pin(super::job::run_sharded_streams(
                env,
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

/// The job's summary when its pass already completed in this invocation
/// (a rerun of a shard, or another shard finished it).
pub(crate) fn already_complete(job: &str) -> JobSummary {
    tracing::info!(job, "already complete in this invocation; nothing to do");
    JobSummary::new(job)
}
