//! A job's lease is checked inside every write of the job: a process that
//! stalled past the stale limit, and whose lease another process took over,
//! writes nothing more.

use std::time::Duration;

use serde_json::json;

use super::support::{keyed, scalar, spec, stream, values};
use crate::plan::WriteMode;
use crate::store::test_db::backend_test;
use crate::store::{LeaseOutcome, StoreError};

const MINUTE: Duration = Duration::from_secs(60);

fn assert_lease_lost(result: Result<(), StoreError>, what: &str) {
    match result {
        Err(err @ StoreError::LeaseLost { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains("job \"orders\": the lease of this job was taken over by fast:2:b")
                    && text.contains("this process stops writing the job"),
                "{what}: {text}"
            );
        }
        other => panic!("{what}: expected a lost lease, got {other:?}"),
    }
}

backend_test! {
fn a_page_after_the_lease_was_taken_over_is_refused_and_writes_nothing(db) {
    let mut slow = db.store();
    let acquired = slow.try_acquire_lease("orders", "slow:1:a", MINUTE, |_| false).unwrap();
    assert_eq!(acquired, LeaseOutcome::Acquired { replaced: None });
    let run = slow.begin_run("orders").unwrap();
    let table = spec("orders", WriteMode::Merge, &[], true);
    slow.prepare_table(&table).unwrap();
    let s = stream("orders", "");
    slow.apply_page(&s, &table, run, &[keyed(json!(1), "one")], "\"after 1\"").unwrap();

    // The slow process stalls; its heartbeat goes stale and another process
    // takes the lease over, exactly as it would after the stale limit (told
    // here by `is_dead`, not by waiting).
    let mut fast = db.store();
    let taken = fast.try_acquire_lease("orders", "fast:2:b", MINUTE, |_| true).unwrap();
    assert_eq!(taken, LeaseOutcome::Acquired { replaced: Some("slow:1:a".into()) });

    // The slow process wakes up and goes on writing: every write is refused.
    assert_lease_lost(
        slow.apply_page(&s, &table, run, &[keyed(json!(2), "two")], "\"after 2\""),
        "apply_page",
    );
    assert_lease_lost(
        slow.apply_last_page(&s, &table, run, &[keyed(json!(3), "three")], Some("9")),
        "apply_last_page",
    );
    assert_lease_lost(slow.finish_stream(&s, run, Some("9")), "finish_stream");
    assert_lease_lost(slow.complete_job_pass("orders", &table), "complete_job_pass");

    // Nothing of it was written: the rows, checkpoint and mark are the
    // first page's, for the new holder to continue from.
    assert_eq!(values(&slow, "orders"), ["one"]);
    assert_eq!(slow.load_checkpoint(&s).unwrap().as_deref(), Some("\"after 1\""));
    assert_eq!(slow.load_mark(&s).unwrap(), None);
    assert_eq!(
        scalar(&mut slow, "SELECT holder FROM _apisync_job_leases WHERE job = 'orders'").as_deref(),
        Some("fast:2:b")
    );

    // The new holder writes as usual.
    let rerun = fast.begin_run("orders").unwrap();
    fast.prepare_table(&table).unwrap();
    fast.apply_last_page(&s, &table, rerun, &[keyed(json!(2), "two")], Some("2")).unwrap();
    assert_eq!(values(&fast, "orders"), ["one", "two"]);
}
}

backend_test! {
fn a_released_lease_is_no_longer_checked_and_a_lease_released_by_another_is(db) {
    let mut store = db.store();
    store.try_acquire_lease("orders", "me:1:a", MINUTE, |_| false).unwrap();
    let run = store.begin_run("orders").unwrap();
    let table = spec("orders", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    let s = stream("orders", "");
    // Another process deleted the lease row (it released a lease it had
    // taken over): this process no longer holds the lease.
    store.exec_sql("DELETE FROM _apisync_job_leases WHERE job = 'orders'");
    let err = store
        .apply_page(&s, &table, run, &[keyed(json!(1), "one")], "\"cp\"")
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::LeaseLost { now: None, .. })
            && err.to_string().contains("was released by another process"),
        "{err}"
    );
    // Releasing its own lease ends the checks (writes without a lease,
    // such as sharded runs, are not checked).
    store.release_lease("orders", "me:1:a").unwrap();
    store
        .apply_page(&s, &table, run, &[keyed(json!(1), "one")], "\"cp\"")
        .unwrap();
    assert_eq!(values(&store, "orders"), ["one"]);
}
}
