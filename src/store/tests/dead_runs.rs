//! The runs of a sharded invocation's stopped processes, on each backend.

use std::time::Duration;

use crate::store::test_db::backend_test;
use crate::store::{OtherRuns, Store};

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
