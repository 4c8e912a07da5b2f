//! Job leases on PostgreSQL: as `sqlite/job_leases.rs`, with the advisory
//! lock `lease:JOB` serialising racing processes (the first to commit
//! wins, the next sees its lease).

use std::time::Duration;

use super::PgStore;
use super::errors::job_err;
use super::locks::xact_lock;
use super::open_tx::OpenTx;
use crate::store::backend::{IsDead, JobLeases};
use crate::store::error::StoreError;
use crate::store::rules::{ORPHANED, lease_decision, now};
use crate::store::types::LeaseOutcome;

impl JobLeases for PgStore {
    /// As on SQLite; the advisory lock on `lease:JOB` serialises racing
    /// processes (the first to commit wins, the next sees its lease).
    fn try_acquire_lease(
        &mut self,
        job: &str,
        holder: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<LeaseOutcome, StoreError> {
        let err = || job_err(job, "take its lease");
        let (name, me) = (job.to_string(), holder.to_string());
        // Read under the lock; `is_dead` runs here, on the caller's thread.
        let (tx, current) = OpenTx::begin(&self.conn, err(), move |s| {
            xact_lock(&mut s.client, &format!("lease:{name}"))?;
            s.client
                .query_opt(
                    "SELECT holder, heartbeat_at FROM _apisync.job_leases WHERE job = $1",
                    &[&name],
                )
                .map(|row| row.map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))))
        })?;
        let replaced = match lease_decision(current, &me, stale_after, is_dead) {
            Ok(replaced) => replaced,
            Err(held) => {
                tx.rollback(err())?;
                return Ok(held);
            }
        };
        // Write the lease and interrupt the job's orphaned runs.
        let name = job.to_string();
        tx.commit_after(err(), move |s| {
            let at = now();
            s.client.execute(
                "INSERT INTO _apisync.job_leases (job, holder, acquired_at, heartbeat_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (job) DO UPDATE SET holder = excluded.holder,
                     acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at",
                &[&name, &me, &at],
            )?;
            s.client
                .execute(
                    "UPDATE _apisync.runs SET status = 'interrupted', finished_at = $2,
                         error = coalesce(error, $3)
                     WHERE job = $1 AND status = 'running'",
                    &[&name, &at, &ORPHANED],
                )
                .map(drop)
        })?;
        Ok(LeaseOutcome::Acquired { replaced })
    }

    fn renew_lease(&mut self, job: &str, holder: &str) -> Result<bool, StoreError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.conn.run(move |s| {
            s.client
                .execute(
                    "UPDATE _apisync.job_leases SET heartbeat_at = $3 WHERE job = $1 AND holder = $2",
                    &[&job, &holder, &now()],
                )
                .map(|changed| changed == 1)
                .map_err(job_err(&job, "renew its lease"))
        })?
    }

    fn release_lease(&mut self, job: &str, holder: &str) -> Result<(), StoreError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.conn.run(move |s| {
            s.client
                .execute(
                    "DELETE FROM _apisync.job_leases WHERE job = $1 AND holder = $2",
                    &[&job, &holder],
                )
                .map(drop)
                .map_err(job_err(&job, "release its lease"))
        })?
    }
}
