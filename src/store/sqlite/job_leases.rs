//! Job leases: two processes never run the same job at once. The holder
//! renews its heartbeat while the job runs and deletes the lease at the end;
//! a lease whose heartbeat is older than `stale_after`, or whose holder the
//! caller knows to be dead, is taken over (`rules::lease_decision`).
//!
//! Acquiring happens in one `BEGIN IMMEDIATE` transaction, so two processes
//! racing for the same job cannot both win. Runs that a dead holder left
//! `running` are marked `interrupted` in that same transaction: once this
//! process holds the lease, no live process can be running the job.

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::store::backend::{IsDead, JobLeases};
use crate::store::error::StoreError;
use crate::store::rules::{ORPHANED, lease_decision, now};
use crate::store::types::LeaseOutcome;

impl JobLeases for SqliteStore {
    /// Take the lease on `job` for `holder` unless another holder has it
    /// with a heartbeat newer than `stale_after` and `is_dead(holder)` says
    /// it is not known to be dead. On success, runs of `job` still marked
    /// `running` are marked `interrupted` (their process is gone).
    fn try_acquire_lease(
        &mut self,
        job: &str,
        holder: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<LeaseOutcome, StoreError> {
        let err = |source| StoreError::Job {
            job: job.to_string(),
            action: "take its lease",
            source: Box::new(source),
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let current: Option<(String, String)> = tx
            .query_row(
                "SELECT holder, heartbeat_at FROM _apisync_job_leases WHERE job = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        let replaced = match lease_decision(current, holder, stale_after, is_dead) {
            Ok(replaced) => replaced,
            Err(held) => return Ok(held),
        };
        let at = now();
        tx.execute(
            "INSERT INTO _apisync_job_leases (job, holder, acquired_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder,
                 acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at",
            (job, holder, &at),
        )
        .map_err(err)?;
        tx.execute(
            "UPDATE _apisync_runs SET status = 'interrupted', finished_at = ?2,
                 error = coalesce(error, ?3)
             WHERE job = ?1 AND status = 'running'",
            (job, &at, ORPHANED),
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(LeaseOutcome::Acquired { replaced })
    }

    /// Refresh the heartbeat. False when `holder` no longer has the lease
    /// (another process took it over after this one looked dead).
    fn renew_lease(&mut self, job: &str, holder: &str) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE _apisync_job_leases SET heartbeat_at = ?3 WHERE job = ?1 AND holder = ?2",
                (job, holder, now()),
            )
            .map(|changed| changed == 1)
            .map_err(|source| StoreError::Job {
                job: job.to_string(),
                action: "renew its lease",
                source: Box::new(source),
            })
    }

    /// Give the lease up; a lease taken over by someone else is left alone.
    fn release_lease(&mut self, job: &str, holder: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM _apisync_job_leases WHERE job = ?1 AND holder = ?2",
                (job, holder),
            )
            .map(drop)
            .map_err(|source| StoreError::Job {
                job: job.to_string(),
                action: "release its lease",
                source: Box::new(source),
            })
    }
}
