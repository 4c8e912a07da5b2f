//! apply_page in merge and append modes, declared columns, atomicity, quoting.

use serde_json::{Value, json};

use super::support::{keyed, scalar, spec, store_with_run, stream, unkeyed, values};
use crate::plan::WriteMode;
use crate::record::Record;
use crate::store::StoreError;
use crate::store::sql::quote_ident;
use crate::store::test_db::backend_test;

backend_test! {
fn merge_keeps_one_row_per_pk_and_the_last_record_of_a_page_wins(db) {
    let (mut store, run) = store_with_run(db, "orders");
    let table = spec("orders", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    let s = stream("orders", "");
    let page1 = [
        keyed(json!(1), "a1"),
        keyed(json!(2), "b1"),
        keyed(json!(1), "a2"),
    ];
    store
        .apply_page(&s, &table, run, &page1, "{\"p\":1}")
        .unwrap();
    let page2 = [keyed(json!(2), "b2"), keyed(json!(3), "c1")];
    store
        .apply_page(&s, &table, run, &page2, "{\"p\":2}")
        .unwrap();

    assert_eq!(store.count_rows("orders").unwrap(), 3);
    assert_eq!(values(&store, "orders"), ["a2", "b2", "c1"]);
    assert_eq!(
        store.load_checkpoint(&s).unwrap().as_deref(),
        Some("{\"p\":2}")
    );
}
}

backend_test! {
fn merge_dedups_across_multi_row_statements_and_the_remainder(db) {
    let (mut store, run) = store_with_run(db, "big");
    let table = spec("big", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    // 173 records: three full 50-row statements and 23 single-row ones on
    // SQLite (one statement on PostgreSQL); keys repeat across statement
    // boundaries.
    let page: Vec<Record> = (0..173)
        .map(|i| keyed(json!(i % 70), &format!("v{i}")))
        .collect();
    store
        .apply_page(&stream("big", ""), &table, run, &page, "{}")
        .unwrap();

    let mut expected = std::collections::BTreeMap::new();
    for record in &page {
        let row: Value = serde_json::from_str(&record.json).unwrap();
        expected.insert(row["id"].as_i64().unwrap(), row["v"].clone());
    }
    let got: std::collections::BTreeMap<i64, Value> = store
        .table_rows("big")
        .unwrap()
        .iter()
        .map(|row| {
            let row: Value = serde_json::from_str(row).unwrap();
            (row["id"].as_i64().unwrap(), row["v"].clone())
        })
        .collect();
    assert_eq!(store.count_rows("big").unwrap(), 70);
    assert_eq!(got, expected, "each key keeps its last record");
    assert_eq!(got[&0], json!("v140"));
}
}

backend_test! {
fn number_and_string_keys_are_different_rows(db) {
    let (mut store, run) = store_with_run(db, "k");
    let table = spec("k", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    let page = [keyed(json!(1), "number"), keyed(json!("1"), "string")];
    store
        .apply_page(&stream("k", ""), &table, run, &page, "{}")
        .unwrap();
    assert_eq!(values(&store, "k"), ["number", "string"]);
}
}

backend_test! {
fn append_inserts_every_record(db) {
    let (mut store, run) = store_with_run(db, "events");
    let table = spec("events", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    let page = [unkeyed(r#"{"v":"x"}"#), unkeyed(r#"{"v":"x"}"#)];
    let s = stream("events", "");
    store
        .apply_page(&s, &table, run, &page, "{\"p\":1}")
        .unwrap();
    store
        .apply_page(&s, &table, run, &page, "{\"p\":2}")
        .unwrap();
    assert_eq!(values(&store, "events"), ["x", "x", "x", "x"]);
    let null_pks = scalar(&mut store, "SELECT count(*) FROM events WHERE _pk IS NULL");
    assert_eq!(null_pks.as_deref(), Some("4"));
}
}

backend_test! {
fn a_failing_page_leaves_neither_rows_nor_checkpoint(db) {
    let (mut store, run) = store_with_run(db, "orders");
    let table = spec("orders", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    let s = stream("orders", "");
    store
        .apply_page(&s, &table, run, &[keyed(json!(1), "ok")], "\"good\"")
        .unwrap();

    // 60 good records, then one without a pk: NOT NULL fails (on SQLite
    // after the first 50-row statement already ran inside the transaction).
    let mut page: Vec<Record> = (100..160).map(|i| keyed(json!(i), "new")).collect();
    page.push(unkeyed(r#"{"v":"no key"}"#));
    let err = store
        .apply_page(&s, &table, run, &page, "\"bad\"")
        .unwrap_err();

    assert!(matches!(err, StoreError::Table { .. }), "{err}");
    assert_eq!(values(&store, "orders"), ["ok"]);
    assert_eq!(
        store.load_checkpoint(&s).unwrap().as_deref(),
        Some("\"good\"")
    );
}
}

backend_test! {
/// SQLite keeps each value's natural type; PostgreSQL stores declared
/// columns as jsonb, which keeps the JSON type.
fn declared_columns_take_natural_types(db) {
    let (mut store, run) = store_with_run(db, "typed");
    let cols = ["i", "r", "t", "b", "o", "n"];
    let table = spec("typed", WriteMode::Append, &cols, false);
    store.prepare_table(&table).unwrap();
    let mut record = unkeyed("{}");
    record.columns = vec![
        json!(42),
        json!(2.5),
        json!("x"),
        json!(true),
        json!({"a": [1]}),
        Value::Null,
    ];
    store
        .apply_page(&stream("typed", ""), &table, run, &[record], "{}")
        .unwrap();

    let (sql, types, values) = if db.is_postgres() {
        (
            "SELECT concat_ws(',', jsonb_typeof(i), jsonb_typeof(r), jsonb_typeof(t),
                    jsonb_typeof(b), jsonb_typeof(o), coalesce(jsonb_typeof(n), 'null')),
                    concat_ws('|', i #>> '{}', r #>> '{}', t #>> '{}', b #>> '{}', o::text)
             FROM typed",
            "number,number,string,boolean,object,null",
            r#"42|2.5|x|true|{"a": [1]}"#,
        )
    } else {
        (
            "SELECT typeof(i)||','||typeof(r)||','||typeof(t)||','||typeof(b)||','||typeof(o)||','||typeof(n),
                    i||'|'||r||'|'||t||'|'||b||'|'||o
             FROM typed",
            "integer,real,text,integer,text,null",
            r#"42|2.5|x|1|{"a":[1]}"#,
        )
    };
    let got = store.query_text(sql);
    assert_eq!(got, [[Some(types.to_string()), Some(values.to_string())]]);
}
}

/// 760 declared columns (762 bound per row): at the usual 50 rows per
/// statement a page would bind over 38,000 parameters, past SQLite's
/// 32,766. Rows per statement shrink to fit (42: 43 would need exactly
/// 32,768 with the two shared ones), and every row of a page lands once,
/// with its columns.
/// (SQLite only: PostgreSQL batches by its own limit, and a row this wide
/// is past its 8 kB page.)
#[test]
fn a_page_wider_than_one_statement_allows_is_written_whole() {
    let db = &crate::store::test_db::TestDb::sqlite();
    let (mut store, run) = store_with_run(db, "wide");
    let s = stream("wide", "");
    let names: Vec<String> = (0..760).map(|i| format!("c{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let wide = spec("wide", WriteMode::Append, &names, false);
    store.prepare_table(&wide).unwrap();
    let records: Vec<Record> = (0..120)
        .map(|i| {
            let mut record = unkeyed(&format!("{{\"v\": \"{i}\"}}"));
            record.columns = (0..760).map(|c| json!(i * 1000 + c)).collect();
            record
        })
        .collect();
    store.apply_page(&s, &wide, run, &records, "{}").unwrap();
    let expected: Vec<String> = (0..120).map(|i| i.to_string()).collect();
    assert_eq!(values(&store, "wide"), expected);
    let last = "SELECT c759 FROM wide WHERE _data ->> 'v' = '119'";
    assert_eq!(scalar(&mut store, last), Some("119759".to_string()));
}

backend_test! {
fn new_declared_columns_are_added_to_an_existing_table(db) {
    let (mut store, run) = store_with_run(db, "grow");
    let s = stream("grow", "");
    let before = spec("grow", WriteMode::Merge, &["a"], true);
    store.prepare_table(&before).unwrap();
    let mut r1 = keyed(json!(1), "one");
    r1.columns = vec![json!("a1")];
    store.apply_page(&s, &before, run, &[r1], "{}").unwrap();

    let after = spec("grow", WriteMode::Merge, &["a", "b"], true);
    store.prepare_table(&after).unwrap();
    store.prepare_table(&after).unwrap();
    let mut r2 = keyed(json!(2), "two");
    r2.columns = vec![json!("a2"), json!(7)];
    store.apply_page(&s, &after, run, &[r2], "{}").unwrap();

    let sql = if db.is_postgres() {
        "SELECT a #>> '{}', b #>> '{}' FROM grow ORDER BY ctid"
    } else {
        "SELECT a, b FROM grow ORDER BY rowid"
    };
    assert_eq!(
        store.query_text(sql),
        [
            [Some("a1".to_string()), None],
            [Some("a2".to_string()), Some("7".to_string())]
        ]
    );
}
}

backend_test! {
fn a_record_with_the_wrong_number_of_columns_is_refused(db) {
    let (mut store, run) = store_with_run(db, "c");
    let table = spec("c", WriteMode::Append, &["a", "b"], false);
    store.prepare_table(&table).unwrap();
    let mut record = unkeyed("{}");
    record.columns = vec![json!(1)];
    let err = store
        .apply_page(&stream("c", ""), &table, run, &[record], "{}")
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ColumnCount {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.count_rows("c").unwrap(), 0);
}
}

backend_test! {
fn merge_into_a_table_created_by_append_is_refused(db) {
    let mut store = db.store();
    store
        .prepare_table(&spec("t", WriteMode::Append, &[], false))
        .unwrap();
    let err = store
        .prepare_table(&spec("t", WriteMode::Merge, &[], true))
        .unwrap_err();
    insta::assert_snapshot!("merge_into_append_table", err.to_string());
}
}

backend_test! {
fn hostile_identifiers_cannot_inject_sql(db) {
    // What an injection would drop: apisync's own tables, on each backend.
    let (evil_table, evil_column) = if db.is_postgres() {
        (r#"x"; DROP TABLE _apisync.runs; --"#, r#"c" TEXT); DROP TABLE _apisync.checkpoints; --"#)
    } else {
        (r#"x"; DROP TABLE _apisync_runs; --"#, r#"c" TEXT); DROP TABLE _apisync_checkpoints; --"#)
    };
    let (mut store, run) = store_with_run(db, "evil");
    for mode in [WriteMode::Merge, WriteMode::Replace] {
        let table = spec(evil_table, mode, &[evil_column], true);
        store.prepare_table(&table).unwrap();
        let mut record = keyed(json!(1), "pwned?");
        record.columns = vec![json!("value")];
        store
            .apply_page(&stream("evil", ""), &table, run, &[record], "{}")
            .unwrap();
    }
    let replace = spec(evil_table, WriteMode::Replace, &[evil_column], true);
    store.complete_job_pass("evil", &replace).unwrap();

    assert_eq!(values(&store, evil_table), ["pwned?"]);
    assert_eq!(store.distinct_values(evil_table, "/id").unwrap(), ["1"]);
    assert_eq!(
        store.status(&[("evil", evil_table)]).unwrap()[0].rows,
        Some(1)
    );
    store.reset_job("evil", evil_table, crate::store::Reset::Marks).unwrap();
    let (tables_sql, column_sql) = if db.is_postgres() {
        (
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
                .to_string(),
            format!(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('{}') AND attnum = 5",
                quote_ident(evil_table)
            ),
        )
    } else {
        (
            "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name".to_string(),
            format!(
                "SELECT name FROM pragma_table_info('{}') WHERE cid = 4",
                evil_table
            ),
        )
    };
    let names: Vec<String> = store
        .query_text(&tables_sql)
        .into_iter()
        .filter_map(|mut row| row.remove(0))
        .collect();
    assert!(
        names.iter().any(|n| n == evil_table),
        "{evil_table} missing from {names:?}"
    );
    for state in ["_apisync_runs", "_apisync_checkpoints"] {
        // Fails (panics) if the table is gone.
        store.query_text(&format!("SELECT count(*) FROM {state}"));
    }
    assert_eq!(
        scalar(&mut store, &column_sql).as_deref(),
        Some(evil_column)
    );
}
}

backend_test! {
fn a_nul_in_a_string_is_stored_and_nothing_else_changes(db) {
    let (mut store, run) = store_with_run(db, "nul");
    let table = spec("nul", WriteMode::Merge, &["c"], true);
    store.prepare_table(&table).unwrap();
    // JSON text as an API sends it: a NUL escape in a value, in a key and in
    // a declared column, beside an escaped backslash followed by "u0000",
    // which is text and must stay as it is.
    let record = |id: u64, json: &str, column: Value| Record {
        json: json.to_string(),
        pk: Some(format!("[{id}]")),
        columns: vec![column],
    };
    let page = [
        record(1, r#"{"id":1,"v":"a\u0000b","k\u0000":1}"#, json!("c\u{0}d")),
        record(2, r#"{"id":2,"v":"a\\u0000b"}"#, json!("c\\u0000d")),
    ];
    store
        .apply_page(&stream("nul", ""), &table, run, &page, "{}")
        .unwrap();
    let (nul, column) = if db.is_postgres() {
        // jsonb cannot hold NUL: the six characters `\u0000` stand for it.
        ("a\\u0000b", "c\\u0000d")
    } else {
        ("a\u{0}b", "c\u{0}d")
    };
    assert_eq!(values(&store, "nul"), [nul, "a\\u0000b"]);
    let rows: Vec<Value> = store
        .table_rows("nul")
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(row).unwrap())
        .collect();
    let key = if db.is_postgres() { "k\\u0000" } else { "k\u{0}" };
    assert_eq!(rows[0][key], 1, "{rows:?}");
    let columns_sql = if db.is_postgres() {
        "SELECT c #>> '{}' FROM nul ORDER BY _pk"
    } else {
        "SELECT c FROM nul ORDER BY _pk"
    };
    let columns: Vec<Option<String>> = store
        .query_text(columns_sql)
        .into_iter()
        .map(|mut row| row.remove(0))
        .collect();
    assert_eq!(columns, [Some(column.to_string()), Some("c\\u0000d".to_string())]);
}
}

backend_test! {
fn a_key_sample_gives_a_stored_key_and_its_record_as_written(db) {
    let (mut store, run) = store_with_run(db, "big");
    let table = spec("big", WriteMode::Merge, &[], true);
    assert_eq!(store.key_sample("big").ok().flatten(), None, "no table yet");
    store.prepare_table(&table).unwrap();
    assert_eq!(store.key_sample("big").unwrap(), None, "an empty table");
    let page = [Record {
        json: r#"{"id": 12345678901234567890123, "v": "a"}"#.to_string(),
        pk: Some("[12345678901234567890123]".to_string()),
        columns: Vec::new(),
    }];
    store
        .apply_page(&stream("big", ""), &table, run, &page, "{}")
        .unwrap();
    let (key, data) = store.key_sample("big").unwrap().unwrap();
    assert_eq!(key, "[12345678901234567890123]");
    let record: &serde_json::value::RawValue = serde_json::from_str(&data).unwrap();
    assert!(record.get().contains("12345678901234567890123"), "{data}");
}
}

backend_test! {
/// A window's last page, the next window's start and the window's end
/// (the mark) commit together: a page that fails leaves all three as the
/// previous window left them, so a rerun redoes that page and never skips
/// the rest of the window.
fn a_window_end_commits_rows_checkpoint_and_mark_together(db) {
    let (mut store, run) = store_with_run(db, "events");
    let table = spec("events", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    let s = stream("events", "");
    store
        .apply_window_end(&s, &table, run, &[keyed(json!(1), "w1")], "\"w2\"", Some("\"t1\""))
        .unwrap();
    assert_eq!(values(&store, "events"), ["w1"]);
    assert_eq!(store.load_checkpoint(&s).unwrap().as_deref(), Some("\"w2\""));
    assert_eq!(store.load_mark(&s).unwrap().as_deref(), Some("\"t1\""));

    let mut page: Vec<Record> = (100..160).map(|i| keyed(json!(i), "w2")).collect();
    page.push(unkeyed(r#"{"v":"no key"}"#));
    let err = store
        .apply_window_end(&s, &table, run, &page, "\"w3\"", Some("\"t2\""))
        .unwrap_err();
    assert!(matches!(err, StoreError::Table { .. }), "{err}");
    assert_eq!(values(&store, "events"), ["w1"]);
    assert_eq!(store.load_checkpoint(&s).unwrap().as_deref(), Some("\"w2\""));
    assert_eq!(store.load_mark(&s).unwrap().as_deref(), Some("\"t1\""));
}
}
