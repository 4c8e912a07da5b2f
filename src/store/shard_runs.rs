//! The `runs` rows of a sharded invocation's processes that stopped
//! without finishing them (SIGKILL, OOM, a lost node): marked
//! `interrupted` by whichever process of the invocation notices, so that
//! `status` never shows a run `running` whose process is gone, even when
//! nobody had to take a stream over from it (its streams were done, or
//! another shard held them while it waited).

use std::time::Duration;

use rusqlite::TransactionBehavior;

use super::error::StoreError;
use super::open::{SqliteStore, now};
use super::shards::{TAKEN_OVER, holder_alive};

/// What [`SqliteStore::close_dead_runs`] found among the other processes'
/// runs still `running` in the invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtherRuns {
    /// Rows of dead or stale processes, now `interrupted`.
    pub interrupted: u64,
    /// Rows of processes that look alive: they finish them themselves,
    /// or go stale and are closed by a later call.
    pub running: u64,
}

impl SqliteStore {
    /// Mark `interrupted` every `running` run of `invocation` whose process
    /// (not `me`) is dead: its holder row ended, its heartbeat is older than
    /// `stale_after`, or `is_dead` says so. One `BEGIN IMMEDIATE`
    /// transaction.
    pub fn close_dead_runs(
        &mut self,
        invocation: &str,
        me: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<OtherRuns, StoreError> {
        let err = |source| StoreError::Database {
            action: "close the runs of stopped processes of the invocation",
            source: Box::new(source),
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let holders: Vec<(String, i64)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT s.holder, count(*) FROM _apisync_runs r JOIN _apisync_run_shards s ON s.run_id = r.id
                     WHERE s.invocation = ?1 AND r.status = 'running' AND s.holder <> ?2
                     GROUP BY s.holder",
                )
                .map_err(err)?;
            stmt.query_map((invocation, me), |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?
        };
        let mut found = OtherRuns::default();
        let at = now();
        for (holder, running) in holders {
            if holder_alive(&tx, invocation, &holder, stale_after, &is_dead).map_err(err)? {
                found.running += u64::try_from(running).unwrap_or(0);
                continue;
            }
            let closed = tx
                .execute(
                    "UPDATE _apisync_runs SET status = 'interrupted', finished_at = ?3,
                         error = coalesce(error, ?4)
                     WHERE status = 'running'
                       AND id IN (SELECT run_id FROM _apisync_run_shards WHERE invocation = ?1 AND holder = ?2)",
                    (invocation, &holder, &at, TAKEN_OVER),
                )
                .map_err(err)?;
            found.interrupted += closed as u64;
        }
        tx.commit().map_err(err)?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::test_db::backend_test;

    const MINUTE: Duration = Duration::from_secs(60);

    fn statuses(store: &mut Store) -> Vec<String> {
        store
            .query_text("SELECT status FROM _apisync_runs ORDER BY id")
            .into_iter()
            .map(|row| row[0].clone().unwrap_or_default())
            .collect()
    }

    backend_test! {
    /// A process killed while it waited (no stream of it to take over)
    /// leaves its run `running`: whoever looks closes it once the process
    /// is dead, and counts the live ones' runs without touching them.
    fn runs_of_dead_processes_are_closed_and_live_ones_left(db) {
        let mut store = db.store();
        for (holder, shard) in [("a", 0), ("b", 1), ("me", 2)] {
            store.register_holder("inv", holder, shard, true).unwrap();
        }
        store.begin_shard_run("orders", "inv", 0, "a").unwrap();
        store.begin_shard_run("orders", "inv", 1, "b").unwrap();
        store.begin_shard_run("items", "inv", 2, "me").unwrap();
        // Another invocation's dead process is not this one's business.
        store.register_holder("other", "c", 0, true).unwrap();
        store.begin_shard_run("orders", "other", 0, "c").unwrap();
        let alive = |_: &str| false;
        assert_eq!(
            store.close_dead_runs("inv", "me", MINUTE, alive).unwrap(),
            OtherRuns { interrupted: 0, running: 2 }
        );
        // "a" was killed on this host.
        let a_is_dead = |h: &str| h == "a" || h == "c";
        assert_eq!(
            store.close_dead_runs("inv", "me", MINUTE, a_is_dead).unwrap(),
            OtherRuns { interrupted: 1, running: 1 }
        );
        // "b" recorded its end without finishing its run.
        store.end_holder("inv", "b").unwrap();
        assert_eq!(
            store.close_dead_runs("inv", "me", MINUTE, alive).unwrap(),
            OtherRuns { interrupted: 1, running: 0 }
        );
        assert_eq!(
            statuses(&mut store),
            ["interrupted", "interrupted", "running", "running"],
            "its own run and another invocation's are left"
        );
    }
    }
}
