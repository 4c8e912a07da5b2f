//! [`crate::store::StoreReader`], on each backend.

use crate::store::test_db::backend_test;
use crate::store::{StoreError, StoreReader, StreamKey};

/// A table of records as a job's table holds them, on either store.
fn data_table(postgres: bool, name: &str) -> String {
    let kind = if postgres { "jsonb" } else { "TEXT" };
    format!("CREATE TABLE {name} (_data {kind})")
}

/// Every value of a keyset-paged read, two at a time, each page after
/// the last value of the one before.
fn in_pages_of_two(read: impl Fn(Option<&str>) -> Result<Vec<String>, StoreError>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    loop {
        let page = read(all.last().map(String::as_str)).unwrap();
        assert!(page.len() <= 2);
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

backend_test! {
fn distinct_values_come_in_keyset_pages_and_finished_ones_are_found_per_batch(db) {
    let mut store = db.store();
    store.exec_sql(&data_table(db.is_postgres(), "parents"));
    store.exec_sql(
        "INSERT INTO parents VALUES ('{\"id\": 3}'), ('{\"id\": 1}'), ('{\"id\": 2}'),
             ('{\"id\": 1}'), ('{\"id\": null}'), ('{}'), ('{\"id\": \"x\"}'),
             ('{\"id\": \"B\"}'), ('{\"id\": \"a\"}');",
    );
    let reader = StoreReader::open(&db.database).unwrap();
    assert!(reader.has_table("parents").unwrap());
    assert!(!reader.has_table("missing").unwrap());
    let all = in_pages_of_two(|after| reader.distinct_values_page("parents", "/id", after, None, 2));
    // Byte order on both backends (upper case before lower case).
    assert_eq!(all, ["1", "2", "3", "B", "a", "x"]);

    let run = store.begin_run("child").unwrap();
    store
        .finish_stream(&StreamKey::new("child", "2"), run, None)
        .unwrap();
    assert_eq!(
        reader.finished_among("child", &["1", "2", "3"]).unwrap(),
        ["2"]
    );
    assert!(reader.finished_among("other", &["2"]).unwrap().is_empty());
}
}

backend_test! {
fn combinations_of_several_values_come_in_keyset_pages_as_text(db) {
    let mut store = db.store();
    store.exec_sql(&data_table(db.is_postgres(), "tickets"));
    // 42 and "42" are one value (as text); a row missing either value, or
    // holding null, makes no partition.
    store.exec_sql(
        "INSERT INTO tickets VALUES ('{\"id\": 42, \"b\": \"eu\"}'), ('{\"id\": \"42\", \"b\": \"eu\"}'),
             ('{\"id\": 7, \"b\": \"us\"}'), ('{\"id\": 7, \"b\": \"eu\"}'), ('{\"id\": 8}'),
             ('{\"id\": 9, \"b\": null}'), ('{\"id\": 1, \"b\": \"a\\\"b\"}');",
    );
    let reader = StoreReader::open(&db.database).unwrap();
    let pointers = ["/id".to_string(), "/b".to_string()];
    let all = in_pages_of_two(|after| {
        reader.distinct_combinations_page("tickets", &pointers, after, None, 2)
    });
    let values: Vec<Vec<String>> = all
        .iter()
        .map(|row| serde_json::from_str(row).unwrap())
        .collect();
    let mut sorted = values.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, values, "each combination once: {all:?}");
    assert_eq!(
        sorted,
        [["1", "a\"b"], ["42", "eu"], ["7", "eu"], ["7", "us"]]
    );
}
}

backend_test! {
/// `changed_only`: only the rows whose `_synced_at` is at or after `since`
/// (the bound itself included), still in keyset pages. `_synced_at` is
/// text on SQLite and a timestamptz on PostgreSQL.
fn values_written_since_a_time_come_in_keyset_pages(db) {
    let mut store = db.store();
    let at = if db.is_postgres() { "timestamptz" } else { "TEXT" };
    let kind = if db.is_postgres() { "jsonb" } else { "TEXT" };
    store.exec_sql(&format!(
        "CREATE TABLE parents (_data {kind}, \"_synced_at\" {at} NOT NULL)"
    ));
    store.exec_sql(
        "INSERT INTO parents VALUES
             ('{\"id\": 1, \"b\": \"x\"}', '2024-01-01T23:59:59.999Z'),
             ('{\"id\": 2, \"b\": \"x\"}', '2024-01-02T00:00:00.000Z'),
             ('{\"id\": 3, \"b\": \"y\"}', '2024-01-02T00:00:00.001Z'),
             ('{\"id\": 4, \"b\": \"y\"}', '2024-03-01T12:00:00.000Z'),
             ('{\"id\": 5, \"b\": \"z\"}', '2024-03-01T12:00:00.000Z'),
             ('{\"id\": 1, \"b\": \"x\"}', '2024-01-01T00:00:00.000Z');",
    );
    let reader = StoreReader::open(&db.database).unwrap();
    let since = Some("2024-01-02T00:00:00.000Z");
    let values =
        in_pages_of_two(|after| reader.distinct_values_page("parents", "/id", after, since, 2));
    assert_eq!(values, ["2", "3", "4", "5"]);
    let every =
        in_pages_of_two(|after| reader.distinct_values_page("parents", "/id", after, None, 2));
    assert_eq!(every, ["1", "2", "3", "4", "5"]);

    let pointers = ["/b".to_string(), "/id".to_string()];
    let later = Some("2024-01-02T00:00:00.001Z");
    let rows = in_pages_of_two(|after| {
        reader.distinct_combinations_page("parents", &pointers, after, later, 2)
    });
    let rows: Vec<Vec<String>> = rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
    assert_eq!(rows, [["y", "3"], ["y", "4"], ["z", "5"]]);
}
}
