//! The end of a shard: what it does once through its own jobs, and what
//! its summary says of jobs it did not finish.
//!
//! A `--steal` shard does not exit while a job of the invocation could
//! still be left half done: it comes back, every [`POLL_EVERY`], to every
//! selected job that is not complete in the invocation, and runs (in
//! [`Phase::Finish`]) any stream of it that no live process holds: never
//! claimed, released by a stopped shard, or held by a dead one (at once on
//! this host, after the stale limit elsewhere). It leaves when every job
//! is complete or cannot complete in this invocation (a stream failed, or
//! a parent's did: a rerun of that shard retries it), and no live process
//! of the invocation has a run open (it ends its own, or goes stale and is
//! closed here). So a survivor waits for as long as the others work, plus
//! at most the stale limit after one of them dies.
//!
//! Every shard, then: runs of stopped processes are marked `interrupted`,
//! and a job this shard's part of succeeded but that is not complete in the
//! invocation is reported `held` ("left to shard N"), never `succeeded`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::env::{FULL_CHECK_EVERY, POLL_EVERY, Phase, ShardEnv, owner_of};
use super::gate::run_phases;
use super::membership::close_dead_runs;
use super::undone::undone_owners;
use crate::plan::JobPlan;
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::holder::{holder_is_dead, stale_after};
use crate::run::mode::JobMode;
use crate::run::summary::{JobStatus, JobSummary};

/// Finish this shard's part of the invocation (see the module doc) and
/// label each job's line by the job's state in the invocation.
pub(crate) async fn finish_shard(
    env: &RunEnv,
    shard: &ShardEnv,
    mode: &JobMode,
    summaries: &mut [JobSummary],
) {
    if shard.sharding.steal {
        finish_invocation(env, shard, mode, summaries).await;
    }
    if let Err(err) = close_dead_runs(&env.writer, &shard.sharding, &env.holder).await {
        tracing::warn!(error = %err, "could not close the runs of stopped shards");
    }
    for summary in summaries.iter_mut() {
        if summary.status != JobStatus::Succeeded {
            continue;
        }
        let Some(job) = shard.jobs.get(&summary.job) else {
            continue;
        };
        match left_unfinished(env, shard, job, mode).await {
            Ok(None) => {}
            Ok(Some(message)) => {
                tracing::info!(job = %job.name, "{message}");
                summary.status = JobStatus::Held;
                summary.error = Some(message);
            }
            Err(err) => {
                tracing::warn!(job = %job.name, error = %err, "could not tell whether the job is complete in this invocation");
            }
        }
    }
}

/// A job as a survivor sees it in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Complete,
    /// A stream of it or of a parent failed in this invocation: it cannot
    /// complete here (a rerun of that shard retries it).
    Stuck,
    /// A selected parent is not complete yet.
    Blocked,
    /// Runnable; `dead_holder`: a stream of it is held by a dead process.
    Open {
        dead_holder: bool,
    },
}

/// What the database says of one job this round.
struct Facts {
    completed: bool,
    failed: bool,
    dead_holder: bool,
}

async fn finish_invocation(
    env: &RunEnv,
    shard: &ShardEnv,
    mode: &JobMode,
    summaries: &mut [JobSummary],
) {
    // A full pass lists the job's partitions: at most this often per job,
    // unless a holder died.
    let pass_every = FULL_CHECK_EVERY.min(stale_after() / 2);
    let mut passed: HashMap<String, Instant> = HashMap::new();
    // Complete and stuck are final within this process's life.
    let mut settled: HashMap<String, State> = HashMap::new();
    let mut announced = false;
    loop {
        if env.cancel.is_cancelled() {
            return;
        }
        let mut waiting = match close_dead_runs(&env.writer, &shard.sharding, &env.holder).await {
            Ok(others) => others.running > 0,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the runs of the other shards");
                false
            }
        };
        let states = match round_states(env, shard, &mut settled).await {
            Ok(states) => states,
            Err(err) => {
                tracing::error!(error = %err, "could not read the invocation's jobs; this shard ends here");
                return;
            }
        };
        for summary in summaries.iter_mut() {
            // A job that failed here (its credential, its listing) is not
            // taken up again, nor waited for: this shard cannot help it.
            let Some(job) = shard.jobs.get(&summary.job) else {
                continue;
            };
            if summary.status != JobStatus::Succeeded {
                continue;
            }
            // Complete and stuck jobs are left; a blocked one is waited for
            // through its parent, which is open (or blocked in turn).
            let Some(State::Open { dead_holder }) = states.get(&job.name).copied() else {
                continue;
            };
            waiting = true;
            let due = dead_holder
                || passed
                    .get(&job.name)
                    .is_none_or(|at| at.elapsed() >= pass_every);
            if !due {
                continue;
            }
            passed.insert(job.name.clone(), Instant::now());
            let later = run_phases(env, shard, job.clone(), mode, &[Phase::Finish]).await;
            summary.absorb(later);
        }
        if !waiting {
            return;
        }
        if !announced {
            tracing::info!(
                "waiting for the other shards to complete the invocation; streams whose process stops are taken over"
            );
            announced = true;
        }
        tokio::select! {
            _ = env.cancel.cancelled() => return,
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

/// Every selected job's state this round. Facts are read per job; states
/// follow `depends_on` (a parent stuck makes its children stuck).
async fn round_states(
    env: &RunEnv,
    shard: &ShardEnv,
    settled: &mut HashMap<String, State>,
) -> Result<HashMap<String, State>, RunError> {
    let mut facts = HashMap::new();
    for name in shard.jobs.keys() {
        if settled.contains_key(name) {
            continue;
        }
        facts.insert(name.clone(), read_facts(env, shard, name).await?);
    }
    let mut states = settled.clone();
    let names: Vec<&String> = shard.jobs.keys().collect();
    for name in names {
        let state = state_of(name, shard, &facts, &mut states, 0);
        if matches!(state, State::Complete | State::Stuck) {
            settled.insert(name.clone(), state);
        }
    }
    Ok(states)
}

async fn read_facts(env: &RunEnv, shard: &ShardEnv, job: &str) -> Result<Facts, RunError> {
    let (invocation, name, me) = (
        shard.invocation().to_string(),
        job.to_string(),
        env.holder.clone(),
    );
    let (completed, states) = env
        .writer
        .invocation_state(
            invocation,
            name,
            stale_after(),
            Box::new(move |other| holder_is_dead(other, &me)),
        )
        .await??;
    Ok(Facts {
        completed,
        failed: states.iter().any(|s| s.status == "failed"),
        dead_holder: states
            .iter()
            .any(|s| s.status == "running" && !s.holder_alive),
    })
}

/// The state of `name`, its parents' first. `depth` bounds the walk (the
/// plan has no cycles; this only keeps a bug from recursing forever).
fn state_of(
    name: &str,
    shard: &ShardEnv,
    facts: &HashMap<String, Facts>,
    states: &mut HashMap<String, State>,
    depth: usize,
) -> State {
    if let Some(state) = states.get(name) {
        return *state;
    }
    let state = match (facts.get(name), shard.jobs.get(name)) {
        (Some(f), _) if f.completed => State::Complete,
        (Some(f), _) if f.failed => State::Stuck,
        (Some(f), Some(job)) if depth <= shard.jobs.len() => {
            let parents: Vec<State> = job
                .depends_on
                .iter()
                .filter(|p| shard.jobs.contains_key(*p))
                .map(|p| state_of(p, shard, facts, states, depth + 1))
                .collect();
            if parents.contains(&State::Stuck) {
                State::Stuck
            } else if parents.iter().any(|p| *p != State::Complete) {
                State::Blocked
            } else {
                State::Open {
                    dead_holder: f.dead_holder,
                }
            }
        }
        _ => State::Stuck,
    };
    states.insert(name.to_string(), state);
    state
}

/// Why `job` is not complete in the invocation as this shard ends, for
/// its summary line; None when it is complete.
async fn left_unfinished(
    env: &RunEnv,
    shard: &ShardEnv,
    job: &Arc<JobPlan>,
    mode: &JobMode,
) -> Result<Option<String>, RunError> {
    let (invocation, name, me) = (
        shard.invocation().to_string(),
        job.name.clone(),
        env.holder.clone(),
    );
    let (completed, states) = env
        .writer
        .invocation_state(
            invocation,
            name,
            stale_after(),
            Box::new(move |other| holder_is_dead(other, &me)),
        )
        .await??;
    if completed {
        return Ok(None);
    }
    let (count, owners) = undone_owners(env, shard, job, mode).await?;
    let failed: BTreeSet<u32> = states
        .iter()
        .filter(|s| s.status == "failed")
        .map(|s| owner_of(shard, job, &s.partition))
        .collect();
    let shards = |set: &BTreeSet<u32>| {
        set.iter()
            .map(|s| format!("{s}/{}", shard.count()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hint = if failed.is_empty() {
        "they finish it; a shard run with --steal waits for them and takes over \
         the streams of a process that stops"
            .to_string()
    } else {
        format!(
            "streams of shard(s) {} failed: rerun those shards with the same --invocation",
            shards(&failed)
        )
    };
    let left = if count == 0 {
        "every stream is done; the shard that finished the last one completes the pass".to_string()
    } else {
        format!(
            "{count} stream(s) left to shard(s) {} (hint: {hint})",
            shards(&owners)
        )
    };
    Ok(Some(format!(
        "job \"{}\": not complete in invocation {:?} when this shard ended: {left}",
        job.name,
        shard.invocation(),
    )))
}
