//! Sharded runs on PostgreSQL: the same surface as `store/shards.rs`.
//! Not ported yet: every call refuses with a clear error, so a sharded run
//! against PostgreSQL stops before it syncs anything.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use super::PgStore;
use crate::store::error::StoreError;
use crate::store::shards::{ClaimEnd, StreamClaim, StreamState};
use crate::store::types::{RunId, StreamKey, TableSpec};

fn not_yet() -> StoreError {
    StoreError::Database {
        action: "run a sharded invocation (sharded runs need a SQLite database for now)",
        source: "not supported on PostgreSQL yet".into(),
    }
}

#[allow(clippy::too_many_arguments, unused_variables)]
impl PgStore {
    pub(crate) fn register_holder(
        &mut self,
        invocation: &str,
        holder: &str,
        shard: u32,
        steal: bool,
    ) -> Result<String, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn invocation_started_at(&mut self, invocation: &str) -> Result<String, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn last_success_starts_before(
        &self,
        jobs: &[&str],
        invocation: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn discard_empty_run(&mut self, run_id: RunId) -> Result<(), StoreError> {
        Err(not_yet())
    }

    pub(crate) fn renew_holder(
        &mut self,
        invocation: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        Err(not_yet())
    }

    pub(crate) fn end_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        Err(not_yet())
    }

    pub(crate) fn claim_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        shard: u32,
        holder: &str,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<StreamClaim, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn end_claimed_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        holder: &str,
        end: ClaimEnd,
    ) -> Result<bool, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn done_in_invocation(
        &self,
        invocation: &str,
        job: &str,
        partitions: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<StreamState>, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<BTreeSet<u32>, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn job_completed_in(&self, invocation: &str, job: &str) -> Result<bool, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn complete_sharded_pass(
        &mut self,
        invocation: &str,
        job: &str,
        table: &TableSpec,
    ) -> Result<bool, StoreError> {
        Err(not_yet())
    }

    pub(crate) fn tag_run(
        &mut self,
        run_id: RunId,
        invocation: &str,
        shard: u32,
        holder: &str,
    ) -> Result<(), StoreError> {
        Err(not_yet())
    }
}
