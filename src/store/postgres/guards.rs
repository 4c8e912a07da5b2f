//! Checking a write's [`crate::store::guards::Guard`] inside its
//! transaction on PostgreSQL: `FOR SHARE` on the claim's and the lease's
//! rows holds off a takeover until the write commits or rolls back.

use postgres::GenericClient;

use super::errors::job_err;
use crate::store::error::StoreError;
use crate::store::guards::HeldClaim;
use crate::store::rules::lease_held;
use crate::store::types::StreamKey;

/// Inside a page's transaction: fail with [`StoreError::ClaimLost`] unless
/// `claim` still holds `stream`. `FOR SHARE` keeps a takeover (an UPDATE of
/// that row) waiting until this page has committed or rolled back.
pub(crate) fn check_claim(
    tx: &mut postgres::Transaction<'_>,
    stream: &StreamKey,
    claim: Option<&HeldClaim>,
) -> Result<(), StoreError> {
    let Some(claim) = claim else { return Ok(()) };
    let held = tx
        .query_opt(
            "SELECT 1 FROM _apisync.invocation_streams
             WHERE invocation = $1 AND job = $2 AND partition = $3 AND holder = $4
               AND status = 'running'
             FOR SHARE",
            &[
                &claim.invocation,
                &stream.job,
                &stream.partition,
                &claim.holder,
            ],
        )
        .map_err(|source| StoreError::Stream {
            job: stream.job.clone(),
            partition: stream.partition.clone(),
            action: "check its claim",
            source: Box::new(source),
        })?
        .is_some();
    if held {
        Ok(())
    } else {
        Err(StoreError::ClaimLost {
            job: stream.job.clone(),
            partition: stream.partition.clone(),
        })
    }
}

/// Refuse a write for `job` unless `holder` still holds the job's lease
/// (see the SQLite `check_lease`). `FOR SHARE` holds off a takeover (an
/// UPDATE of the row) until this transaction ends, and a takeover that
/// committed first is seen: the page commits before the takeover or not
/// at all.
pub(crate) fn check_lease(
    c: &mut impl GenericClient,
    job: &str,
    holder: Option<&str>,
) -> Result<(), StoreError> {
    let Some(holder) = holder else { return Ok(()) };
    let now: Option<String> = c
        .query_opt(
            "SELECT holder FROM _apisync.job_leases WHERE job = $1 FOR SHARE",
            &[&job],
        )
        .map_err(job_err(job, "check its lease"))?
        .map(|r| r.get(0));
    lease_held(job, holder, now)
}
