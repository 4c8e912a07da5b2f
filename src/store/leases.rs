//! Job leases: two processes never run the same job at once. The holder
//! renews its heartbeat while the job runs and deletes the lease at the end;
//! a lease whose heartbeat is older than `stale_after`, or whose holder the
//! caller knows to be dead, is taken over.
//!
//! Acquiring happens in one `BEGIN IMMEDIATE` transaction, so two processes
//! racing for the same job cannot both win. Runs that a dead holder left
//! `running` are marked `interrupted` in that same transaction: once this
//! process holds the lease, no live process can be running the job.

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::error::StoreError;
use super::open::{SqliteStore, now};

/// The answer to [`Store::try_acquire_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// This holder has the lease now. `replaced` names the dead or stale
    /// holder it was taken from, if any (for the log).
    Acquired { replaced: Option<String> },
    /// Another live holder runs the job.
    HeldBy {
        holder: String,
        /// RFC 3339, UTC: the holder's last sign of life.
        heartbeat_at: String,
    },
}

/// What an interrupted orphan run is told in its `error` column.
pub(crate) const ORPHANED: &str =
    "the process running it stopped (killed or crashed) before it finished";

impl SqliteStore {
    /// Take the lease on `job` for `holder` unless another holder has it
    /// with a heartbeat newer than `stale_after` and `is_dead(holder)` says
    /// it is not known to be dead. On success, runs of `job` still marked
    /// `running` are marked `interrupted` (their process is gone).
    pub fn try_acquire_lease(
        &mut self,
        job: &str,
        holder: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
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
        let replaced = match lease_decision(current, holder, stale_after, &is_dead) {
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
    pub fn renew_lease(&mut self, job: &str, holder: &str) -> Result<bool, StoreError> {
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
    pub fn release_lease(&mut self, job: &str, holder: &str) -> Result<(), StoreError> {
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

/// `Ok` when the lease row names `holder`, else [`StoreError::LeaseLost`].
pub(crate) fn lease_held(job: &str, holder: &str, now: Option<String>) -> Result<(), StoreError> {
    match now {
        Some(now) if now == holder => Ok(()),
        now => Err(StoreError::LeaseLost {
            job: job.to_string(),
            holder: holder.to_string(),
            now,
        }),
    }
}

/// Who may take a job's lease, whichever database keeps it: given the
/// current lease (holder, heartbeat), `Ok(replaced)` when `holder` may take
/// it (naming the dead or stale holder it replaces, if any), or the
/// [`LeaseOutcome::HeldBy`] to answer when a live holder has it.
pub(crate) fn lease_decision(
    current: Option<(String, String)>,
    holder: &str,
    stale_after: Duration,
    is_dead: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, LeaseOutcome> {
    match current {
        None => Ok(None),
        Some((other, _)) if other == holder => Ok(None),
        Some((other, heartbeat_at))
            if heartbeat_at < stale_cutoff(stale_after) || is_dead(&other) =>
        {
            Ok(Some(other))
        }
        Some((holder, heartbeat_at)) => Err(LeaseOutcome::HeldBy {
            holder,
            heartbeat_at,
        }),
    }
}

/// Heartbeats older than this (same RFC 3339 shape as [`now`], so text
/// order is time order) are stale.
pub(crate) fn stale_cutoff(stale_after: Duration) -> String {
    let stale_after = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    let cutoff = chrono::Utc::now()
        .checked_sub_signed(stale_after)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_db::backend_test;

    const MINUTE: Duration = Duration::from_secs(60);

    fn alive(_: &str) -> bool {
        false
    }

    backend_test! {
    fn a_live_lease_is_refused_to_another_holder_and_released_by_its_own(db) {
        let mut store = db.store();
        let first = store
            .try_acquire_lease("orders", "a", MINUTE, alive)
            .unwrap();
        assert_eq!(first, LeaseOutcome::Acquired { replaced: None });
        match store
            .try_acquire_lease("orders", "b", MINUTE, alive)
            .unwrap()
        {
            LeaseOutcome::HeldBy { holder, .. } => assert_eq!(holder, "a"),
            other => panic!("{other:?}"),
        }
        // Other jobs are independent.
        assert!(matches!(
            store
                .try_acquire_lease("customers", "b", MINUTE, alive)
                .unwrap(),
            LeaseOutcome::Acquired { .. }
        ));
        assert!(store.renew_lease("orders", "a").unwrap());
        assert!(!store.renew_lease("orders", "b").unwrap());
        store.release_lease("orders", "b").unwrap();
        assert!(matches!(
            store
                .try_acquire_lease("orders", "b", MINUTE, alive)
                .unwrap(),
            LeaseOutcome::HeldBy { .. }
        ));
        store.release_lease("orders", "a").unwrap();
        assert_eq!(
            store
                .try_acquire_lease("orders", "b", MINUTE, alive)
                .unwrap(),
            LeaseOutcome::Acquired { replaced: None }
        );
    }
    }

    backend_test! {
    fn a_stale_or_dead_holder_is_replaced_and_its_running_run_interrupted(db) {
        let mut store = db.store();
        store.exec_sql(
                "INSERT INTO _apisync_job_leases VALUES ('orders', 'h:1:x', '2020-01-01T00:00:00.000Z',
                                                '2020-01-01T00:00:00.000Z');
                 INSERT INTO _apisync_runs (job, started_at, status) VALUES ('orders', '2020-01-01T00:00:00.000Z', 'running');
                 INSERT INTO _apisync_runs (job, started_at, status) VALUES ('other', '2020-01-01T00:00:00.000Z', 'running');",
        );
        let outcome = store
            .try_acquire_lease("orders", "me", MINUTE, alive)
            .unwrap();
        assert_eq!(
            outcome,
            LeaseOutcome::Acquired {
                replaced: Some("h:1:x".into())
            }
        );
        let statuses = store.query_text("SELECT job, status FROM _apisync_runs ORDER BY id");
        let text = |s: &str| Some(s.to_string());
        assert_eq!(
            statuses,
            [
                [text("orders"), text("interrupted")],
                [text("other"), text("running")]
            ]
        );
        // The old holder learns it lost the lease.
        assert!(!store.renew_lease("orders", "h:1:x").unwrap());

        // A fresh lease whose holder is known dead is taken at once.
        let dead = |holder: &str| holder == "me";
        let outcome = store
            .try_acquire_lease("orders", "next", MINUTE, dead)
            .unwrap();
        assert_eq!(
            outcome,
            LeaseOutcome::Acquired {
                replaced: Some("me".into())
            }
        );
    }
    }

    backend_test! {
    /// Separate connections (separate processes, as far as the database
    /// can tell) racing for one job: exactly one wins.
    fn racing_connections_take_one_lease_once(db) {
        let outcomes: Vec<LeaseOutcome> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..6)
                .map(|i| {
                    let mut store = db.store();
                    scope.spawn(move || {
                        store
                            .try_acquire_lease("orders", &format!("racer-{i}"), MINUTE, alive)
                            .unwrap()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won = outcomes
            .iter()
            .filter(|o| matches!(o, LeaseOutcome::Acquired { .. }))
            .count();
        assert_eq!(won, 1, "{outcomes:?}");
    }
    }
}
