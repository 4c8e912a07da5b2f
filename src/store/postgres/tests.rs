//! PostgreSQL-only behaviour of the store: connections, TLS, privileges,
//! jsonb, and pages retried after a deadlock or serialization failure.
use serde_json::json;

use crate::plan::WriteMode;
use crate::plan::{Database, PostgresUrl};
use crate::record::Record;
use crate::store::test_db::TestDb;
use crate::store::{Store, StoreError, StoreReader, StreamKey, TableSpec};

fn url(db: &TestDb) -> PostgresUrl {
    match &db.database {
        Database::Postgres(url) => url.clone(),
        Database::Sqlite(_) => unreachable!("a PostgreSQL test database"),
    }
}

/// The sync client would panic ("Cannot start a runtime from within a
/// runtime") if it ran on a runtime thread: every call goes through the
/// connection's own thread, so async code may call the store directly.
#[tokio::test(flavor = "multi_thread")]
async fn the_store_can_be_called_from_async_code() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = Store::open(&db.database).unwrap();
    let run = store.begin_run("orders").unwrap();
    let table = TableSpec {
        table: "orders".into(),
        mode: WriteMode::Merge,
        columns: vec![],
        has_primary_key: true,
        partition: None,
    };
    store.prepare_table(&table).unwrap();
    let record = Record {
        json: r#"{"id": 1}"#.into(),
        pk: Some("[1]".into()),
        columns: vec![],
    };
    store
        .apply_page(&StreamKey::new("orders", ""), &table, run, &[record], "{}")
        .unwrap();
    let reader = StoreReader::open(&db.database).unwrap();
    assert_eq!(
        reader
            .distinct_values_page("orders", "/id", None, None, 10)
            .unwrap(),
        ["1"]
    );
    // And from a task on another worker, with the store moved there.
    let rows = tokio::spawn(async move { store.status(&[("orders", "orders")]).unwrap() })
        .await
        .unwrap();
    assert_eq!(rows[0].rows, Some(1));
}

#[test]
fn a_session_left_inside_a_transaction_is_ended_by_the_server() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = Store::open(&db.database).unwrap();
    assert_eq!(
        store.query_text("SHOW idle_in_transaction_session_timeout"),
        [[Some("10min".to_string())]]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_store_can_be_called_from_a_current_thread_runtime() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let store = Store::open(&db.database).unwrap();
    assert!(store.finished_partitions("j").unwrap().is_empty());
    store.checkpoint_wal().unwrap();
    assert!(store.wal_checkpointer().unwrap().is_none());
    store.restore_wal_autocheckpoint().unwrap();
}

/// Pods starting together all migrate the same fresh database.
#[test]
fn processes_opening_a_fresh_database_at_once_migrate_it_once() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    std::thread::scope(|scope| {
        let opened: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| Store::open(&db.database).map(drop)))
            .collect();
        for open in opened {
            open.join().unwrap().unwrap();
        }
    });
    let mut store = db.store();
    assert_eq!(
        store.query_text(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM _apisync.schema_version"
        ),
        [[Some("1,2,3,4,5,6".to_string())]]
    );
}

#[test]
fn a_newer_schema_is_refused_and_the_error_hides_the_password() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = db.store();
    store.exec_sql("INSERT INTO _apisync.schema_version VALUES (999, 'later')");
    drop(store);
    let err = Store::open(&db.database).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(url(&db).redacted()), "{err}");
}

#[test]
fn a_connection_error_names_the_database_without_its_password() {
    let db = Database::from_setting(
        "postgres://app:pw-0f-mine@127.0.0.1:1/sync?sslmode=disable",
        std::path::Path::new("."),
    )
    .unwrap();
    let err = Store::open(&db).unwrap_err();
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(matches!(err, StoreError::Connect { .. }), "{text}");
    assert!(!text.contains("pw-0f-mine"), "{text}");
    assert!(
        text.contains("postgres://app:***@127.0.0.1:1/sync"),
        "{text}"
    );
}

/// `sslmode=require` against a server without TLS: no plain fallback.
/// (The other tests connect with the default `prefer`, so they go
/// through the TLS offer and fall back to plain TCP.)
#[test]
fn sslmode_require_refuses_a_server_without_tls() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut url = url::Url::parse(url(&db).expose()).unwrap();
    url.set_query(Some("sslmode=require"));
    let required = Database::from_setting(url.as_str(), std::path::Path::new(".")).unwrap();
    let err = Store::open(&required).unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
}

/// The TLS config names its crypto provider: building it never needs
/// (or panics for lack of) a process-wide default.
#[test]
fn the_tls_connector_builds_without_a_default_crypto_provider() {
    assert!(super::conn::tls().is_ok());
}

/// apisync's own tables have the same columns on both backends (a
/// PostgreSQL migration that drifts from its SQLite twin fails here).
#[test]
fn both_backends_create_the_same_tables_and_columns() {
    let Some(pg) = TestDb::postgres() else {
        return;
    };
    let sqlite = TestDb::sqlite();
    let columns = |db: &TestDb, sql: &str| {
        let mut rows = db.store().query_text(sql);
        rows.sort();
        rows
    };
    let on_sqlite = columns(
        &sqlite,
        "SELECT m.name, p.name FROM sqlite_schema m, pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
    );
    // apisync's tables are `_apisync_NAME` on SQLite, `_apisync.NAME`
    // on PostgreSQL.
    let on_postgres = columns(
        &pg,
        "SELECT '_apisync_' || table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = '_apisync'",
    );
    assert!(on_sqlite.len() > 20, "{on_sqlite:?}");
    assert_eq!(on_postgres, on_sqlite);
}

/// docs/postgres.md: once migrated, merge jobs run as a user without
/// CREATE on the schema (tables that exist are not created again).
#[test]
fn a_migrated_database_runs_merge_jobs_without_the_create_privilege() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let table = TableSpec {
        table: "orders".into(),
        mode: WriteMode::Merge,
        columns: vec!["status".into()],
        has_primary_key: true,
        partition: None,
    };
    let mut owner = db.store();
    owner.prepare_table(&table).unwrap();
    let role = format!("apisync_limited_{:08x}", rand::random::<u32>());
    owner.exec_sql(&format!(
        "CREATE ROLE {role} LOGIN;
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
         GRANT USAGE ON SCHEMA _apisync TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA _apisync TO {role};"
    ));
    drop(owner);
    let mut url = url::Url::parse(url(&db).expose()).unwrap();
    url.set_username(&role).unwrap();
    let limited = Database::from_setting(url.as_str(), std::path::Path::new(".")).unwrap();
    let outcome = (|| -> Result<(), StoreError> {
        let mut store = Store::open(&limited)?;
        let run = store.begin_run("orders")?;
        store.prepare_table(&table)?;
        let record = Record {
            json: r#"{"id": 1}"#.into(),
            pk: Some("[1]".into()),
            columns: vec![json!("paid")],
        };
        let stream = StreamKey::new("orders", "");
        store.apply_last_page(&stream, &table, run, &[record], Some("1"))?;
        store.try_acquire_lease("orders", "me", std::time::Duration::from_secs(60), |_| {
            false
        })?;
        assert_eq!(store.status(&[("orders", "orders")])?[0].rows, Some(1));
        Ok(())
    })();
    let server = crate::store::test_db::server_url().unwrap();
    drop(db);
    crate::store::test_db::admin(&server, format!("DROP ROLE {role}"));
    outcome.unwrap();
}

#[test]
fn records_land_as_jsonb_and_a_repeated_key_in_one_page_is_upserted_once() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = db.store();
    let run = store.begin_run("j").unwrap();
    let table = TableSpec {
        table: "j".into(),
        mode: WriteMode::Merge,
        columns: vec!["total".into()],
        has_primary_key: true,
        partition: None,
    };
    store.prepare_table(&table).unwrap();
    let record = |v: i64| Record {
        json: format!(r#"{{"id":1,  "v":{v}}}"#),
        pk: Some("[1]".into()),
        columns: vec![json!(v)],
    };
    store
        .apply_page(
            &StreamKey::new("j", ""),
            &table,
            run,
            &[record(1), record(2)],
            "{}",
        )
        .unwrap();
    assert_eq!(
        store.query_text(
            "SELECT pg_typeof(_data)::text, _data->>'v', (total)::text, _run_id::text,
                    pg_typeof(_synced_at)::text FROM j"
        ),
        [[
            Some("jsonb".to_string()),
            Some("2".to_string()),
            Some("2".to_string()),
            Some(run.0.to_string()),
            Some("timestamp with time zone".to_string())
        ]]
    );
}

/// Two shards upserting pages that share keys, in opposite orders:
/// PostgreSQL aborts one transaction as the deadlock victim. The page
/// is written again once the other side commits, instead of failing
/// its stream.
#[test]
fn a_page_aborted_as_a_deadlock_victim_is_written_again() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = db.store();
    let (table, run, key) = merge_table_t(&mut store);
    let record = |id: u64, v: &str| Record {
        json: format!(r#"{{"id":{id},"v":"{v}"}}"#),
        pk: Some(format!("[{id}]")),
        columns: vec![],
    };
    store
        .apply_page(
            &key,
            &table,
            run,
            &[record(1, "old"), record(2, "old")],
            "{}",
        )
        .unwrap();
    // This page's deadlock check runs 2 s after it starts waiting; the
    // other side's only after 60 s, so the page is the victim.
    store.exec_sql("SET deadlock_timeout = '2s'");
    let mut other = db.store();
    other.exec_sql(
        "BEGIN; SET LOCAL deadlock_timeout = '60s';
         UPDATE t SET _run_id = _run_id WHERE _pk = '[2]'",
    );
    let mut watcher = db.store();
    std::thread::scope(|scope| {
        // Upserts [1] (taking its row), then waits for [2].
        let page = scope.spawn(|| {
            let page = [record(1, "new"), record(2, "new")];
            store.apply_page(&key, &table, run, &page, r#"{"page":2}"#)
        });
        wait_for_a_lock_wait(&mut watcher);
        // Now the other side wants [1]: a cycle, and the page is aborted.
        other.exec_sql("UPDATE t SET _run_id = _run_id WHERE _pk = '[1]'");
        other.exec_sql("COMMIT");
        page.join().unwrap().unwrap();
    });
    assert_eq!(
        store.query_text("SELECT _data->>'v' FROM t ORDER BY _pk"),
        [[Some("new".to_string())], [Some("new".to_string())]]
    );
    assert_eq!(
        store.query_text("SELECT position FROM _apisync.checkpoints WHERE job = 't'"),
        [[Some(r#"{"page":2}"#.to_string())]]
    );
}

/// Under REPEATABLE READ or SERIALIZABLE the checkpoint's upsert can be
/// refused (40001) when another transaction changed that row meanwhile;
/// the page runs again, as for a deadlock.
#[test]
fn a_page_whose_checkpoint_hits_a_serialization_failure_is_written_again() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = db.store();
    let (table, run, key) = merge_table_t(&mut store);
    let record = |id: u64| Record {
        json: format!(r#"{{"id":{id}}}"#),
        pk: Some(format!("[{id}]")),
        columns: vec![],
    };
    store
        .apply_page(&key, &table, run, &[record(1)], r#"{"page":1}"#)
        .unwrap();
    store.exec_sql("SET default_transaction_isolation = 'repeatable read'");
    let mut other = db.store();
    other
        .exec_sql("BEGIN; UPDATE _apisync.checkpoints SET updated_at = updated_at WHERE job = 't'");
    let mut watcher = db.store();
    std::thread::scope(|scope| {
        // Takes its snapshot with its rows, then waits for the
        // checkpoint row the other transaction holds.
        let page =
            scope.spawn(|| store.apply_page(&key, &table, run, &[record(2)], r#"{"page":2}"#));
        wait_for_a_lock_wait(&mut watcher);
        // Once that commits, the page's upsert is refused (40001).
        other.exec_sql("COMMIT");
        page.join().unwrap().unwrap();
    });
    assert_eq!(
        store.query_text("SELECT position FROM _apisync.checkpoints WHERE job = 't'"),
        [[Some(r#"{"page":2}"#.to_string())]]
    );
    assert_eq!(
        store.query_text("SELECT count(*) FROM t"),
        [[Some("2".to_string())]]
    );
}

/// A merge table `t` prepared, a run begun, and its stream's key.
fn merge_table_t(store: &mut Store) -> (TableSpec, crate::store::RunId, StreamKey) {
    let table = TableSpec {
        table: "t".into(),
        mode: WriteMode::Merge,
        columns: vec![],
        has_primary_key: true,
        partition: None,
    };
    store.prepare_table(&table).unwrap();
    let run = store.begin_run("t").unwrap();
    (table, run, StreamKey::new("t", ""))
}

/// Until a backend of this database waits for a lock; bounded at 30 s
/// (PostgreSQL has no event for it).
fn wait_for_a_lock_wait(watcher: &mut Store) {
    lock_wait_seen(watcher, || false);
}

/// Polls until a backend of this database waits for a lock (true) or
/// `ended` says the work that might wait is over (false); fails after 30 s
/// of neither.
fn lock_wait_seen(watcher: &mut Store, ended: impl Fn() -> bool) -> bool {
    let lock_waits = "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if watcher.query_text(lock_waits) == [[Some("1".to_string())]] {
            return true;
        }
        if ended() {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no transaction ever waited for a lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Commits the connection's open transaction when dropped.
struct Release<'a>(&'a crate::store::PgConn);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(|s| s.client.batch_execute("COMMIT"));
    }
}

/// Claiming a stream takes the job's lock shared, so it never runs between
/// the steps of a pass being completed (which takes it exclusive): with the
/// exclusive lock held elsewhere, a claim waits for it instead of going on.
#[test]
fn a_claim_waits_while_the_jobs_pass_is_being_completed() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = Store::open(&db.database).unwrap();
    store.register_holder("inv", "a", 0, false).unwrap();
    // Another process completing the job's pass, holding the lock.
    let completing = crate::store::PgConn::connect(&url(&db)).unwrap();
    let lock = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({}, hashtext('shard-job:inv:orders'))",
        crate::store::LOCK_SPACE
    );
    completing
        .run(move |s| s.client.batch_execute(&lock))
        .unwrap()
        .unwrap();
    let mut watcher = db.store();
    let claim = std::thread::scope(|scope| {
        // Ends the other process's transaction on the way out, also when an
        // assertion below fails, so the claim is never left waiting.
        let release = Release(&completing);
        let claimer = scope.spawn(|| {
            store.claim_stream(
                "inv",
                &StreamKey::new("orders", "eu"),
                0,
                "a",
                false,
                std::time::Duration::from_secs(60),
                |_: &str| false,
            )
        });
        // Until the claim either ends or is seen waiting for a lock.
        let waiting = lock_wait_seen(&mut watcher, || claimer.is_finished());
        drop(release);
        let claim = claimer.join().unwrap();
        assert!(
            waiting,
            "the claim went on while the pass was being completed"
        );
        claim
    });
    assert_eq!(
        claim.unwrap(),
        crate::store::StreamClaim::Claimed { taken_from: None }
    );
}

/// A page's transaction is run again only for a conflict (deadlock or
/// serialization failure), and at most `CONFLICT_RETRIES` (3) times: a
/// trigger refuses the page's rows, counting tries in a sequence (which a
/// rollback does not undo).
#[test]
fn only_conflicts_are_tried_again_and_only_three_times() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let mut store = db.store();
    let (table, run, key) = merge_table_t(&mut store);
    let record = Record {
        json: r#"{"id":1}"#.into(),
        pk: Some("[1]".into()),
        columns: vec![],
    };
    // Refuse the first `limit` tries with SQLSTATE `code`.
    let refuse = |store: &mut Store, code: &str, limit: u32| {
        store.exec_sql(&format!(
            "DROP TRIGGER IF EXISTS refuse ON t; DROP SEQUENCE IF EXISTS tries;
             CREATE SEQUENCE tries;
             CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('tries') <= {limit} THEN
                 RAISE EXCEPTION 'refused on purpose' USING ERRCODE = '{code}';
               END IF;
               RETURN NULL;
             END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON t
               FOR EACH STATEMENT EXECUTE FUNCTION refuse();"
        ));
    };
    let apply = |store: &mut Store, position: &str| {
        store.apply_page(&key, &table, run, std::slice::from_ref(&record), position)
    };
    let tries = |store: &mut Store| store.query_text("SELECT last_value FROM tries");
    let position = |store: &mut Store| {
        store.query_text("SELECT position FROM _apisync.checkpoints WHERE job = 't'")
    };

    // Three serialization failures, then the page goes through.
    refuse(&mut store, "40001", 3);
    apply(&mut store, r#"{"page":1}"#).unwrap();
    assert_eq!(tries(&mut store), [[Some("4".to_string())]]);
    assert_eq!(position(&mut store), [[Some(r#"{"page":1}"#.to_string())]]);

    // A fourth is the page's error: nothing written, the checkpoint kept.
    refuse(&mut store, "40001", 100);
    let err = apply(&mut store, r#"{"page":2}"#).unwrap_err();
    assert!(err.to_string().contains("refused on purpose"), "{err}");
    assert_eq!(tries(&mut store), [[Some("4".to_string())]]);
    assert_eq!(position(&mut store), [[Some(r#"{"page":1}"#.to_string())]]);

    // Any other error is not tried again.
    refuse(&mut store, "22023", 1);
    let err = apply(&mut store, r#"{"page":2}"#).unwrap_err();
    assert!(err.to_string().contains("refused on purpose"), "{err}");
    assert_eq!(tries(&mut store), [[Some("1".to_string())]]);
    assert_eq!(position(&mut store), [[Some(r#"{"page":1}"#.to_string())]]);
}
