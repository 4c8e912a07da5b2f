//! Job leases, on each backend (moved from the SQLite lease code).

use std::time::Duration;

use crate::store::LeaseOutcome;
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
/// Asking again for a lease one already holds (fresh, holder alive) is not
/// a conflict with oneself: it is granted, and replaces nobody. Killed the
/// mutant that drops `lease_decision`'s own-holder arm.
fn the_holder_of_a_live_lease_is_granted_it_again(db) {
    let mut store = db.store();
    let first = store.try_acquire_lease("orders", "a", MINUTE, alive).unwrap();
    assert_eq!(first, LeaseOutcome::Acquired { replaced: None });
    let again = store.try_acquire_lease("orders", "a", MINUTE, alive).unwrap();
    assert_eq!(again, LeaseOutcome::Acquired { replaced: None });
    assert!(store.renew_lease("orders", "a").unwrap());
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
