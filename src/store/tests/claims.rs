//! Stream claims and the processes of a sharded invocation, on each
//! backend.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::plan::WriteMode;
use crate::store::rules::{BACKFILL_PREFIX, TAKEN_OVER};
use crate::store::test_db::backend_test;
use crate::store::{ClaimEnd, Store, StoreError, StreamClaim, StreamKey, StreamState, TableSpec};

const MINUTE: Duration = Duration::from_secs(60);

fn alive(_: &str) -> bool {
    false
}

fn spec(mode: WriteMode) -> TableSpec {
    TableSpec {
        table: "orders".into(),
        mode,
        columns: Vec::new(),
        has_primary_key: false,
        partition: None,
    }
}

fn succeeded() -> crate::store::RunOutcome {
    crate::store::RunOutcome {
        status: crate::store::RunStatus::Succeeded,
        pages: 0,
        records: 0,
        error: None,
    }
}

fn claim(store: &mut Store, holder: &str, dead: &dyn Fn(&str) -> bool) -> StreamClaim {
    store
        .claim_stream(
            "inv",
            &StreamKey::new("orders", "eu"),
            0,
            holder,
            false,
            MINUTE,
            dead,
        )
        .unwrap()
}

backend_test! {
fn a_stream_is_claimed_once_until_its_holder_dies_and_done_is_final(db) {
    let mut store = db.store();
    let key = StreamKey::new("orders", "eu");
    let first = store.register_holder("inv", "a", 0, false).unwrap();
    let second = store.register_holder("inv", "b", 1, true).unwrap();
    assert_eq!(first, second, "one start time per invocation");
    assert_eq!(store.invocation_started_at("inv").unwrap(), first);
    assert_eq!(
        claim(&mut store, "a", &alive),
        StreamClaim::Claimed { taken_from: None }
    );
    assert_eq!(
        claim(&mut store, "b", &alive),
        StreamClaim::Busy { holder: "a".into() }
    );
    assert_eq!(
        claim(&mut store, "a", &alive),
        StreamClaim::Claimed { taken_from: None },
        "its own live claim is not busy for its holder"
    );
    let states = store.stream_states("inv", "orders", MINUTE, alive).unwrap();
    assert_eq!(
        states,
        [StreamState {
            partition: "eu".into(),
            status: "running".into(),
            holder: "a".into(),
            holder_alive: true,
        }]
    );
    assert_eq!(store.live_shards("inv", MINUTE, alive).unwrap(), BTreeSet::from([0, 1]));
    // "a" dies (kill -9): "b" takes the stream over.
    let a_is_dead = |h: &str| h == "a";
    assert!(!store.stream_states("inv", "orders", MINUTE, a_is_dead).unwrap()[0].holder_alive);
    assert_eq!(store.live_shards("inv", MINUTE, a_is_dead).unwrap(), BTreeSet::from([1]));
    assert_eq!(
        claim(&mut store, "b", &a_is_dead),
        StreamClaim::Claimed {
            taken_from: Some("a".into())
        }
    );
    assert!(
        !store
            .end_claimed_stream("inv", &key, "a", ClaimEnd::Done)
            .unwrap(),
        "the old holder no longer owns it"
    );
    assert!(
        store
            .end_claimed_stream("inv", &key, "b", ClaimEnd::Done)
            .unwrap()
    );
    assert_eq!(claim(&mut store, "a", &alive), StreamClaim::Done);
    assert!(store.stream_states("inv", "orders", MINUTE, alive).unwrap().is_empty());
    // Another invocation is a new pass of its own.
    assert_eq!(
        store
            .claim_stream("next", &key, 0, "a", false, MINUTE, alive)
            .unwrap(),
        StreamClaim::Claimed { taken_from: None }
    );
}
}

backend_test! {
/// A process whose stream was taken over while it still ran (it looked
/// dead: a stalled writer, a frozen VM) cannot write another page of it:
/// the page is refused inside its transaction, and the new holder's
/// checkpoint and rows stay as they are.
fn a_page_of_a_stream_taken_over_is_refused_and_writes_nothing(db) {
    let (mut a, mut b) = (db.store(), db.store());
    let table = spec(WriteMode::Append);
    a.prepare_table(&table).unwrap();
    let run = a.begin_run("orders").unwrap();
    let stream = StreamKey::new("orders", "eu");
    let page = |id: u32| {
        vec![crate::record::Record {
            json: format!(r#"{{"id":{id}}}"#),
            pk: None,
            columns: Vec::new(),
        }]
    };
    assert_eq!(claim(&mut a, "a", &alive), StreamClaim::Claimed { taken_from: None });
    a.apply_page(&stream, &table, run, &page(1), "{\"offset\":1}").unwrap();
    assert_eq!(
        claim(&mut b, "b", &|h: &str| h == "a"),
        StreamClaim::Claimed { taken_from: Some("a".into()) }
    );
    b.apply_page(&stream, &table, run, &page(2), "{\"offset\":2}").unwrap();
    let refused = a
        .apply_page(&stream, &table, run, &page(3), "{\"offset\":3}")
        .unwrap_err();
    assert!(matches!(refused, StoreError::ClaimLost { .. }), "{refused}");
    assert!(refused.to_string().contains("another process took this stream over"), "{refused}");
    let last = a.apply_last_page(&stream, &table, run, &page(4), None).unwrap_err();
    assert!(matches!(last, StoreError::ClaimLost { .. }), "{last}");
    let end = a.finish_stream(&stream, run, None).unwrap_err();
    assert!(matches!(end, StoreError::ClaimLost { .. }), "{end}");
    assert_eq!(b.count_rows("orders").unwrap(), 2, "pages 1 and 2 only");
    assert_eq!(b.load_checkpoint(&stream).unwrap().as_deref(), Some("{\"offset\":2}"));
    assert!(b.finished_partitions("orders").unwrap().is_empty());
    // The new holder finishes the stream as usual.
    b.apply_last_page(&stream, &table, run, &page(5), None).unwrap();
    assert_eq!(b.count_rows("orders").unwrap(), 3);
}
}

backend_test! {
/// Taking a dead holder's stream over marks that holder's running run of
/// the job interrupted (with why), and leaves other runs alone.
fn taking_a_stream_over_interrupts_the_dead_holders_run(db) {
    let mut store = db.store();
    store.register_holder("inv", "a", 0, false).unwrap();
    store.begin_shard_run("orders", "inv", 0, "a").unwrap();
    store.begin_shard_run("items", "inv", 0, "a").unwrap();
    claim(&mut store, "a", &alive);
    assert_eq!(
        claim(&mut store, "b", &|h: &str| h == "a"),
        StreamClaim::Claimed {
            taken_from: Some("a".into())
        }
    );
    let runs = store.query_text("SELECT job, status, error FROM _apisync_runs ORDER BY id");
    assert_eq!(
        runs,
        [
            [
                Some("orders".to_string()),
                Some("interrupted".to_string()),
                Some(TAKEN_OVER.to_string())
            ],
            [Some("items".to_string()), Some("running".to_string()), None]
        ]
    );
}
}

backend_test! {
fn an_ended_holder_frees_its_claims_and_failed_streams_are_retried_only_on_request(db) {
    let mut store = db.store();
    let key = StreamKey::new("orders", "");
    store.register_holder("inv", "a", 0, false).unwrap();
    store.renew_holder("inv", "a").unwrap();
    store
        .claim_stream("inv", &key, 0, "a", false, MINUTE, alive)
        .unwrap();
    store.end_holder("inv", "a").unwrap();
    assert_eq!(store.live_shards("inv", MINUTE, alive).unwrap(), BTreeSet::new());
    assert_eq!(
        store
            .claim_stream("inv", &key, 0, "b", false, MINUTE, alive)
            .unwrap(),
        StreamClaim::Claimed {
            taken_from: Some("a".into())
        }
    );
    store
        .end_claimed_stream("inv", &key, "b", ClaimEnd::Failed)
        .unwrap();
    assert_eq!(
        store
            .claim_stream("inv", &key, 0, "c", false, MINUTE, alive)
            .unwrap(),
        StreamClaim::Failed { holder: "b".into() }
    );
    assert_eq!(
        store.stream_states("inv", "orders", MINUTE, alive).unwrap(),
        [StreamState {
            partition: String::new(),
            status: "failed".into(),
            holder: "b".into(),
            holder_alive: false,
        }],
        "b never registered"
    );
    assert_eq!(
        store
            .claim_stream("inv", &key, 0, "c", true, MINUTE, alive)
            .unwrap(),
        StreamClaim::Claimed { taken_from: None }
    );
    assert!(
        store
            .end_claimed_stream("inv", &key, "c", ClaimEnd::Release)
            .unwrap()
    );
    assert!(
        store
            .stream_states("inv", "orders", MINUTE, alive)
            .unwrap()
            .is_empty()
    );
}
}

backend_test! {
/// A holder whose heartbeat is older than the limit is stale even when
/// `is_dead` cannot tell (it ran on another node).
fn a_stale_heartbeat_frees_a_claim(db) {
    let mut store = db.store();
    store.exec_sql(
        "INSERT INTO _apisync_invocation_holders VALUES ('inv', 'far', 1, FALSE,
             '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z', NULL);
         INSERT INTO _apisync_invocation_streams VALUES ('inv', 'orders', 'eu', 1, 'running', 'far',
             '2020-01-01T00:00:00.000Z', NULL);",
    );
    assert_eq!(store.live_shards("inv", MINUTE, alive).unwrap(), BTreeSet::new());
    assert_eq!(
        claim(&mut store, "near", &alive),
        StreamClaim::Claimed {
            taken_from: Some("far".into())
        }
    );
}
}

backend_test! {
fn registering_prunes_stream_rows_of_old_invocations_but_keeps_their_jobs(db) {
    let mut store = db.store();
    store.exec_sql(
        "INSERT INTO _apisync_invocations VALUES ('old', '2020-01-01T00:00:00.000Z');
         INSERT INTO _apisync_invocation_streams VALUES ('old', 'orders', 'eu', 0, 'done', 'h',
             '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:01.000Z');
         INSERT INTO _apisync_invocation_jobs VALUES ('old', 'orders', '2020-01-01T00:00:02.000Z');",
    );
    // Rows are kept for a week: an invocation six days old keeps its own.
    let six_days_ago = (chrono::Utc::now() - chrono::Duration::days(6))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    store.exec_sql(&format!(
        "INSERT INTO _apisync_invocations VALUES ('recent', '{six_days_ago}');
         INSERT INTO _apisync_invocation_streams VALUES ('recent', 'orders', 'eu', 0, 'done', 'h',
             '{six_days_ago}', '{six_days_ago}');"
    ));
    store.register_holder("new", "a", 0, false).unwrap();
    assert_eq!(
        store.query_text("SELECT invocation FROM _apisync_invocation_streams"),
        [[Some("recent".to_string())]],
        "only the stream rows of invocations over a week old are pruned"
    );
    store.exec_sql("DELETE FROM _apisync_invocation_streams WHERE invocation = 'recent'");
    store
        .claim_stream(
            "new",
            &StreamKey::new("orders", "eu"),
            0,
            "a",
            false,
            MINUTE,
            alive,
        )
        .unwrap();
    assert_eq!(
        store.query_text("SELECT invocation FROM _apisync_invocation_streams"),
        [[Some("new".to_string())]]
    );
    assert!(store.job_completed_in("old", "orders").unwrap());
    // An old invocation still running (a long backfill, a pod retried a
    // week later) never prunes its own rows.
    store.exec_sql(
        "INSERT INTO _apisync_invocations VALUES ('late', '2020-01-01T00:00:00.000Z');
         INSERT INTO _apisync_invocation_streams VALUES ('late', 'orders', 'us', 0, 'running', 'b',
             '2020-01-01T00:00:00.000Z', NULL);",
    );
    store.register_holder("late", "c", 1, false).unwrap();
    assert_eq!(
        store.query_text(
            "SELECT invocation, partition FROM _apisync_invocation_streams ORDER BY invocation"
        ),
        [
            [Some("late".to_string()), Some("us".to_string())],
            [Some("new".to_string()), Some("eu".to_string())]
        ]
    );
    let starts = store
        .last_success_starts_before(&["orders"], "new")
        .unwrap();
    assert_eq!(starts["orders"], "2020-01-01T00:00:00.000Z");
    assert!(
        store
            .last_success_starts_before(&["orders"], "old")
            .unwrap()
            .is_empty(),
        "an invocation's own completion is left out"
    );
}
}

backend_test! {
/// An unsharded success counts for `--due`; a shard's run does not (its
/// invocation's completion does), and an empty shard run is forgotten.
fn last_successes_count_unsharded_runs_and_empty_shard_runs_are_discarded(db) {
    let mut store = db.store();
    let plain = store.begin_run("orders").unwrap();
    store.finish_run(plain, &succeeded()).unwrap();
    let sharded = store.begin_shard_run("orders", "inv", 0, "a").unwrap();
    store.finish_run(sharded, &succeeded()).unwrap();
    let started = store.query_text(&format!("SELECT started_at FROM _apisync_runs WHERE id = {}", plain.0));
    assert_eq!(
        store.last_success_starts_before(&["orders", "never"], "inv").unwrap(),
        std::collections::BTreeMap::from([("orders".to_string(), started[0][0].clone().unwrap())])
    );
    store.discard_empty_run(sharded).unwrap();
    assert_eq!(store.query_text("SELECT count(*) FROM _apisync_runs"), [[Some("1".to_string())]]);
    assert_eq!(store.query_text("SELECT count(*) FROM _apisync_run_shards"), [[Some("0".to_string())]]);
}
}

backend_test! {
fn completing_a_pass_marks_finished_streams_done_once(db) {
    let mut store = db.store();
    let table = spec(WriteMode::Append);
    store.prepare_table(&table).unwrap();
    let run = store.begin_shard_run("orders", "inv", 0, "a").unwrap();
    store
        .finish_stream(&StreamKey::new("orders", "eu"), run, None)
        .unwrap();
    let backfill = format!("{BACKFILL_PREFIX}2024-01");
    store
        .finish_stream(&StreamKey::new("orders", &backfill), run, None)
        .unwrap();
    // A non-empty run of a shard is kept.
    store.discard_empty_run(run).unwrap();
    assert!(
        store
            .complete_sharded_pass("inv", "orders", &table)
            .unwrap()
    );
    assert!(
        !store
            .complete_sharded_pass("inv", "orders", &table)
            .unwrap()
    );
    assert!(store.job_completed_in("inv", "orders").unwrap());
    assert!(!store.job_completed_in("other", "orders").unwrap());
    assert_eq!(store.finished_partitions("orders").unwrap(), [backfill], "a backfill's set is left");
    let done = store
        .done_in_invocation("inv", "orders", &["eu", "us"])
        .unwrap();
    assert_eq!(done, HashSet::from(["eu".to_string()]));
    assert_eq!(
        store
            .claim_stream(
                "inv",
                &StreamKey::new("orders", "us"),
                0,
                "a",
                true,
                MINUTE,
                alive
            )
            .unwrap(),
        StreamClaim::Done,
        "a completed job has nothing left in its invocation"
    );
    assert_eq!(
        store.live_shards("inv", MINUTE, alive).unwrap(),
        BTreeSet::new(),
        "nobody registered"
    );
    assert_eq!(store.query_text("SELECT count(*) FROM _apisync_runs"), [[Some("1".to_string())]]);
}
}

backend_test! {
/// The shard that finishes a replace job's last stream swaps the table in
/// with the completion, once.
fn completing_a_replace_pass_swaps_its_table_in(db) {
    let mut store = db.store();
    let table = spec(WriteMode::Replace);
    store.prepare_table(&table).unwrap();
    let run = store.begin_run("orders").unwrap();
    let stream = StreamKey::new("orders", "eu");
    let record = crate::record::Record {
        json: r#"{"id":1}"#.into(),
        pk: None,
        columns: Vec::new(),
    };
    store
        .apply_last_page(&stream, &table, run, &[record], None)
        .unwrap();
    assert_eq!(store.count_rows("orders").unwrap_or(0), 0, "staged, not live");
    assert!(store.complete_sharded_pass("inv", "orders", &table).unwrap());
    assert_eq!(store.count_rows("orders").unwrap(), 1);
    assert!(!store.complete_sharded_pass("inv", "orders", &table).unwrap());
}
}

backend_test! {
/// Processes racing for one stream, or to complete one pass: one wins,
/// each other one sees the winner.
fn racing_processes_claim_a_stream_and_complete_a_pass_once(db) {
    const RACERS: usize = 6;
    let table = spec(WriteMode::Append);
    let mut setup = db.store();
    setup.prepare_table(&table).unwrap();
    // All connected and registered first, so the claims start together.
    let start = std::sync::Barrier::new(RACERS);
    let outcomes: Vec<(StreamClaim, bool)> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (table, start) = (table.clone(), &start);
                scope.spawn(move || {
                    let mut store = db.store();
                    let me = format!("h{i}");
                    store.register_holder("inv", &me, 0, false).unwrap();
                    start.wait();
                    let claim = store
                        .claim_stream("inv", &StreamKey::new("orders", "eu"), 0, &me, false, MINUTE, alive)
                        .unwrap();
                    let completed = store.complete_sharded_pass("inv", "orders", &table).unwrap();
                    (claim, completed)
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let claimed: Vec<&StreamClaim> = outcomes
        .iter()
        .map(|(c, _)| c)
        .filter(|c| matches!(c, StreamClaim::Claimed { .. }))
        .collect();
    assert_eq!(claimed, [&StreamClaim::Claimed { taken_from: None }], "{outcomes:?}");
    assert!(
        outcomes.iter().all(|(c, _)| matches!(
            c,
            StreamClaim::Claimed { .. } | StreamClaim::Busy { .. } | StreamClaim::Done
        )),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|(_, done)| *done).count(), 1, "{outcomes:?}");
    assert_eq!(
        setup.query_text("SELECT count(*) FROM _apisync_invocations"),
        [[Some("1".to_string())]]
    );
}
}
