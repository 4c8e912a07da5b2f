//! This process's part of a sharded invocation, start to end: it joins
//! (registers as a holder, with a heartbeat), runs the selected jobs as
//! sharded jobs, finishes its part (`finish.rs`), and leaves.

use std::sync::Arc;

use super::env::ShardEnv;
use super::finish::finish_shard;
use super::job::run_job;
use super::membership::{HolderHeartbeat, register};
use crate::plan::JobPlan;
use crate::run::assignment::{ASSIGNMENT, Sharding};
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::mode::JobMode;
use crate::run::scheduler::run_jobs;
use crate::run::summary::{JobSummary, ShardReport};
use crate::run::writer::Writer;

/// A sharded run of this process, from [`ShardedRun::join`] to
/// [`ShardedRun::leave`].
pub(crate) struct ShardedRun {
    shard: ShardEnv,
    heartbeat: HolderHeartbeat,
}

impl ShardedRun {
    /// Join the invocation as `holder`, to run `jobs` (every selected job).
    pub(crate) async fn join(
        writer: &Writer,
        sharding: &Sharding,
        holder: &str,
        jobs: &[Arc<JobPlan>],
    ) -> Result<ShardedRun, RunError> {
        let (started_at, heartbeat) = register(writer, sharding, holder).await?;
        tracing::info!(shard = %sharding.spec, invocation = %sharding.invocation,
            steal = sharding.steal, assignment = ASSIGNMENT,
            version = env!("CARGO_PKG_VERSION"), "sharded run");
        let shard = ShardEnv {
            sharding: sharding.clone(),
            started_at,
            jobs: jobs.iter().map(|j| (j.name.clone(), j.clone())).collect(),
        };
        Ok(ShardedRun { shard, heartbeat })
    }

    /// Run `jobs` in `depends_on` order as sharded jobs, then finish this
    /// shard's part of the invocation and label each job by its state in it.
    pub(crate) async fn run_jobs(
        &self,
        env: &RunEnv,
        jobs: Vec<Arc<JobPlan>>,
        mode: &JobMode,
    ) -> Vec<JobSummary> {
        let shard = &self.shard;
        let mut summaries = run_jobs(env, jobs, move |job| run_job(env, shard, job, mode)).await;
        finish_shard(env, shard, mode, &mut summaries).await;
        summaries
    }

    /// The summary's line on this shard.
    pub(crate) fn report(&self) -> ShardReport {
        let sharding = &self.shard.sharding;
        ShardReport {
            index: sharding.spec.index,
            count: sharding.spec.count,
            invocation: sharding.invocation.clone(),
            steal: sharding.steal,
        }
    }

    /// Leave the invocation: stop the heartbeat and record the end, so
    /// other shards know at once that this process runs nothing any more.
    pub(crate) async fn leave(self, env: &RunEnv) {
        self.heartbeat
            .end(&env.writer, &self.shard.sharding, &env.holder)
            .await;
    }
}
