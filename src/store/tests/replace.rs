//! replace mode: staging table, atomic swap, resume after a crash.

use serde_json::json;

use super::support::{keyed, spec, stream, values};
use crate::plan::Database;
use crate::plan::WriteMode;
use crate::store::postgres::PgConn;
use crate::store::test_db::{TestDb, backend_test};
use crate::store::{Store, StoreError, TableSpec};

fn replace_spec() -> TableSpec {
    spec("items", WriteMode::Replace, &[], true)
}

/// One complete pass that leaves `items` holding `vs`.
fn full_pass(store: &mut Store, vs: &[&str]) {
    let run = store.begin_run("items").unwrap();
    let table = replace_spec();
    store.prepare_table(&table).unwrap();
    let page: Vec<_> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| keyed(json!(i), v))
        .collect();
    let s = stream("items", "");
    store.apply_page(&s, &table, run, &page, "{}").unwrap();
    store.finish_stream(&s, run, None).unwrap();
    store.complete_job_pass("items", &table).unwrap();
}

/// Another connection to the same database, as a user's reader would be.
enum Reader {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

impl Reader {
    fn open(db: &TestDb) -> Reader {
        match &db.database {
            Database::Sqlite(path) => Reader::Sqlite(rusqlite::Connection::open(path).unwrap()),
            Database::Postgres(url) => Reader::Postgres(PgConn::connect(url).unwrap()),
        }
    }

    fn exec(&self, sql: &'static str) {
        match self {
            Reader::Sqlite(conn) => conn.execute_batch(sql).unwrap(),
            Reader::Postgres(conn) => conn
                .run(move |s| s.client.batch_execute(sql))
                .unwrap()
                .unwrap(),
        }
    }

    fn count(&self) -> i64 {
        const SQL: &str = "SELECT count(*) FROM items";
        match self {
            Reader::Sqlite(conn) => conn.query_row(SQL, [], |r| r.get(0)).unwrap(),
            Reader::Postgres(conn) => conn
                .run(|s| s.client.query_one(SQL, &[]).map(|r| r.get(0)))
                .unwrap()
                .unwrap(),
        }
    }
}

backend_test! {
fn readers_see_the_old_table_until_the_swap_and_the_new_one_after(db) {
    let mut store = db.store();
    full_pass(&mut store, &["old1", "old2"]);

    let run = store.begin_run("items").unwrap();
    let table = replace_spec();
    store.prepare_table(&table).unwrap();
    let page: Vec<_> = (0..3).map(|i| keyed(json!(i), "new")).collect();
    store
        .apply_page(&stream("items", ""), &table, run, &page, "{}")
        .unwrap();

    let reader = Reader::open(db);
    assert_eq!(
        reader.count(),
        2,
        "staging rows are not visible in the live table"
    );
    reader.exec(if db.is_postgres() {
        "BEGIN ISOLATION LEVEL REPEATABLE READ"
    } else {
        "BEGIN"
    });
    assert_eq!(reader.count(), 2);
    store.complete_job_pass("items", &table).unwrap();
    assert_eq!(
        reader.count(),
        2,
        "a reader mid-transaction keeps the old table whole"
    );
    reader.exec("COMMIT");
    assert_eq!(reader.count(), 3, "the next read sees the whole new table");
    assert_eq!(values(&store, "items"), ["new", "new", "new"]);
    assert_eq!(store.count_rows("_apisync_staging_items").ok(), None);
}
}

backend_test! {
fn a_user_view_on_the_table_survives_the_swap(db) {
    let mut store = db.store();
    full_pass(&mut store, &["a"]);
    store.exec_sql(if db.is_postgres() {
        "CREATE VIEW item_values AS SELECT _data ->> 'v' AS v FROM items"
    } else {
        "CREATE VIEW item_values AS SELECT _data ->> '$.v' AS v FROM items"
    });
    full_pass(&mut store, &["b", "c"]);
    let n = store.query_text("SELECT count(*) FROM item_values WHERE v IN ('b', 'c')");
    assert_eq!(n, [[Some("2".to_string())]]);
}
}

backend_test! {
fn a_rerun_after_a_crash_keeps_filling_the_staging_table(db) {
    let table = replace_spec();
    let s = stream("items", "");
    {
        let mut store = db.store();
        full_pass(&mut store, &["old"]);
        let run = store.begin_run("items").unwrap();
        store.prepare_table(&table).unwrap();
        store
            .apply_page(&s, &table, run, &[keyed(json!(1), "p1")], "\"after p1\"")
            .unwrap();
        // The process dies here: no finish, no swap.
    }
    let mut store = db.store();
    assert_eq!(values(&store, "items"), ["old"]);
    assert_eq!(
        store.load_checkpoint(&s).unwrap().as_deref(),
        Some("\"after p1\"")
    );
    let run = store.begin_run("items").unwrap();
    store.prepare_table(&table).unwrap();
    store
        .apply_page(&s, &table, run, &[keyed(json!(2), "p2")], "\"after p2\"")
        .unwrap();
    store.finish_stream(&s, run, None).unwrap();
    store.complete_job_pass("items", &table).unwrap();
    assert_eq!(values(&store, "items"), ["p1", "p2"]);
}
}

backend_test! {
fn partitions_fill_one_staging_table_swapped_once(db) {
    let mut store = db.store();
    full_pass(&mut store, &["old"]);
    let run = store.begin_run("items").unwrap();
    let table = replace_spec();
    store.prepare_table(&table).unwrap();
    for (i, partition) in ["us", "eu"].into_iter().enumerate() {
        let s = stream("items", partition);
        store
            .apply_page(&s, &table, run, &[keyed(json!(i), partition)], "{}")
            .unwrap();
        store.finish_stream(&s, run, None).unwrap();
        if i == 0 {
            assert_eq!(
                values(&store, "items"),
                ["old"],
                "no swap before the pass completes"
            );
        }
    }
    store.complete_job_pass("items", &table).unwrap();
    assert_eq!(values(&store, "items"), ["us", "eu"]);
}
}

backend_test! {
fn swapping_without_a_staging_table_is_an_error_and_keeps_the_table(db) {
    let mut store = db.store();
    full_pass(&mut store, &["kept"]);
    let err = store.swap_replace(&replace_spec()).unwrap_err();
    assert!(matches!(err, StoreError::NoStaging { .. }), "{err}");
    assert_eq!(values(&store, "items"), ["kept"]);
}
}
