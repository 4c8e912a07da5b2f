//! What the jobs of a sharded run share ([`ShardEnv`]), the phases a job
//! runs in on this shard, and how often a sharded run polls the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::plan::JobPlan;
use crate::run::assignment::{Sharding, owner};

/// How often a child job looks whether its parents completed elsewhere,
/// and a shard whether its own streams held by others are free again.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// How often a waiting child lists its parent's remaining streams to find
/// orphaned ones (at most; more often with a short stale limit).
pub(crate) const FULL_CHECK_EVERY: Duration = Duration::from_secs(10);

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

/// The shard that owns the stream `partition` of `job`.
pub(crate) fn owner_of(shard: &ShardEnv, job: &JobPlan, partition: &str) -> u32 {
    owner(job, partition, shard.count())
}
