//! The replace swap is atomic for readers that are not in a transaction of
//! their own: a reader looping at autocommit (SQLite) or READ COMMITTED
//! (PostgreSQL) while passes swap tables in sees the whole old table or the
//! whole new one, never "no such table" and never a mix. A swap done as two
//! commits (DROP, then RENAME) fails here; holding one snapshot across the
//! swap (the test in `replace.rs`) cannot see that.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;

use super::support::{keyed, spec, stream};
use crate::plan::Database;
use crate::plan::WriteMode;
use crate::store::postgres::PgConn;
use crate::store::test_db::backend_test;
use crate::store::{Store, TableSpec};

/// How many passes swap a table in while the reader loops.
const SWAPS: usize = 60;
/// The two tables the passes alternate between: (rows, value of every row).
const SETS: [(usize, &str); 2] = [(40, "a"), (70, "b")];

fn replace_spec() -> TableSpec {
    spec("items", WriteMode::Replace, &[], true)
}

fn full_pass(store: &mut Store, (rows, value): (usize, &str)) {
    let run = store.begin_run("items").unwrap();
    let table = replace_spec();
    store.prepare_table(&table).unwrap();
    let page: Vec<_> = (0..rows).map(|i| keyed(json!(i), value)).collect();
    let s = stream("items", "");
    store.apply_page(&s, &table, run, &page, "{}").unwrap();
    store.finish_stream(&s, run, None).unwrap();
    store.complete_job_pass("items", &table).unwrap();
}

/// One read of the live table as a dashboard would make it: the row count
/// and the smallest and largest value, or the error it got.
type Seen = Result<(i64, String, String), String>;

fn reader(database: &Database) -> Box<dyn FnMut() -> Seen + Send> {
    match database {
        Database::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            Box::new(move || {
                conn.query_row(
                    "SELECT count(*), min(_data ->> '$.v'), max(_data ->> '$.v') FROM items",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(|e| e.to_string())
            })
        }
        Database::Postgres(url) => {
            let conn = PgConn::connect(url).unwrap();
            Box::new(move || {
                conn.run(|s| {
                    s.client.query_one(
                        "SELECT count(*), min(_data ->> 'v'), max(_data ->> 'v') FROM items",
                        &[],
                    )
                })
                .map_err(|e| e.to_string())?
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .map_err(|e| e.to_string())
            })
        }
    }
}

backend_test! {
fn readers_at_autocommit_see_one_whole_table_through_every_swap(db) {
    let mut store = db.store();
    full_pass(&mut store, SETS[0]);
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let looping = {
        let (done, reads) = (done.clone(), reads.clone());
        let mut read = reader(&db.database);
        std::thread::spawn(move || {
            let mut wrong = Vec::new();
            while !done.load(Ordering::Acquire) {
                let seen = read();
                let whole = SETS.iter().any(|(rows, v)| {
                    seen == Ok((*rows as i64, v.to_string(), v.to_string()))
                });
                if !whole && wrong.len() < 5 {
                    wrong.push(seen);
                }
                reads.fetch_add(1, Ordering::AcqRel);
            }
            wrong
        })
    };
    for n in 1..=SWAPS {
        // Each swap waits for a read after the previous one, so the reader
        // is busy across every swap, not only across the first few.
        let before = reads.load(Ordering::Acquire);
        while reads.load(Ordering::Acquire) == before {
            std::thread::yield_now();
        }
        full_pass(&mut store, SETS[n % 2]);
    }
    done.store(true, Ordering::Release);
    let wrong = looping.join().unwrap();
    assert!(wrong.is_empty(), "reads that saw no whole table: {wrong:?}");
    assert!(reads.load(Ordering::Acquire) >= SWAPS as u64);
}
}
