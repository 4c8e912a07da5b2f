//! What kind of pass a run makes over its jobs: a full refresh, a
//! backfill, waiting for leases, the stall limit, and (sharded) which
//! shard this process is. The command line builds it; every layer of the
//! run reads it, so it sits below them all.

use super::assignment::Sharding;
use crate::plan::Partition;

/// What kind of pass this is.
#[derive(Debug, Clone, Default)]
pub struct JobMode {
    /// Ignore high-water marks (run --full-refresh).
    pub full_refresh: bool,
    /// Backfill slices instead of the job's own partitions; never moves the mark.
    pub backfill: Option<Vec<Partition>>,
    /// `--wait`: wait for a job another process runs instead of skipping it.
    pub wait_for_lease: bool,
    /// A stream with no completed page for this long fails (`--stall-timeout`;
    /// None: the 10 minute default).
    pub stall_timeout: Option<std::time::Duration>,
    /// `--shard INDEX/COUNT --invocation ID [--steal]`: run this shard's
    /// streams only (None: every stream, as on one machine).
    pub shard: Option<Sharding>,
}
