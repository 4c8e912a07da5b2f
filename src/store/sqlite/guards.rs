//! Checking a write's [`Guard`] inside its transaction: the stream's claim
//! and the job's lease must still be this process's (see `store/guards.rs`).

use rusqlite::OptionalExtension;

use super::errors::stream_err;
use crate::store::error::StoreError;
use crate::store::guards::HeldClaim;
use crate::store::rules::lease_held;
use crate::store::types::StreamKey;

/// Inside a page's transaction: fail with [`StoreError::ClaimLost`] unless
/// `claim` still holds `stream` (SQLite: the write lock of the transaction
/// keeps a takeover out until it commits).
pub(crate) fn check_claim(
    tx: &rusqlite::Transaction<'_>,
    stream: &StreamKey,
    claim: Option<&HeldClaim>,
) -> Result<(), StoreError> {
    let Some(claim) = claim else { return Ok(()) };
    let held: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM _apisync_invocation_streams
             WHERE invocation = ?1 AND job = ?2 AND partition = ?3 AND holder = ?4
               AND status = 'running')",
            (
                &claim.invocation,
                &stream.job,
                &stream.partition,
                &claim.holder,
            ),
            |r| r.get(0),
        )
        .map_err(stream_err(stream, "check its claim"))?;
    if held {
        Ok(())
    } else {
        Err(StoreError::ClaimLost {
            job: stream.job.clone(),
            partition: stream.partition.clone(),
        })
    }
}

/// Refuse a write for `job` unless `holder` (this process, when it runs
/// the job under a lease) still holds the job's lease. Called inside the
/// transaction of every page, end of stream and end of pass: a process that
/// stalled past the stale limit and lost its lease cannot append after the
/// process that took it over. Unleased writes (sharded runs, tests) pass.
pub(crate) fn check_lease(
    conn: &rusqlite::Connection,
    job: &str,
    holder: Option<&str>,
) -> Result<(), StoreError> {
    let Some(holder) = holder else { return Ok(()) };
    let now: Option<String> = conn
        .query_row(
            "SELECT holder FROM _apisync_job_leases WHERE job = ?1",
            [job],
            |r| r.get(0),
        )
        .optional()
        .map_err(|source| StoreError::Job {
            job: job.to_string(),
            action: "check its lease",
            source: Box::new(source),
        })?;
    lease_held(job, holder, now)
}
