//! Both backends keep the refresh-token promises.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::sqlite::{TABLE, lock_path};
use super::*;
use crate::store::test_db::backends;

#[tokio::test(flavor = "multi_thread")]
async fn finish_commits_and_drop_rolls_back() {
    for db in backends() {
        let store = DbTokenStore::open(&db.database).unwrap();
        assert!(store.load("crm").await.unwrap().is_none());

        let guard = store.begin_refresh("crm").await.unwrap();
        assert!(guard.stored().is_none());
        guard.finish(Some(Secret::new("rt-2"))).await.unwrap();
        assert_eq!(store.load("crm").await.unwrap().unwrap().expose(), "rt-2");

        let guard = store.begin_refresh("crm").await.unwrap();
        assert_eq!(guard.stored().unwrap().expose(), "rt-2");
        drop(guard);
        let guard = store.begin_refresh("crm").await.unwrap();
        guard.finish(None).await.unwrap();
        assert_eq!(store.load("crm").await.unwrap().unwrap().expose(), "rt-2");
        assert!(store.load("other").await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn second_lock_waits_for_the_first() {
    for db in backends() {
        let first = DbTokenStore::open(&db.database).unwrap();
        let second = DbTokenStore::open(&db.database).unwrap();
        let held = first.begin_refresh("crm").await.unwrap();
        let waiting = tokio::spawn(async move {
            let guard = second.begin_refresh("crm").await.unwrap();
            guard.stored().map(|s| s.expose().to_string())
        });
        // Whenever the waiter got there, it reads under the lock, which it
        // gets only after this commit: it must see the rotation.
        held.finish(Some(Secret::new("rt-9"))).await.unwrap();
        assert_eq!(waiting.await.unwrap().as_deref(), Some("rt-9"));
    }
}

/// Issue 14 item 7: a held refresh lock (a token request in flight)
/// leaves the database free: another connection takes the write lock
/// at once (SQLite, busy timeout 0) or an exclusive lock on the token
/// table without waiting (PostgreSQL: no transaction is left open).
#[tokio::test(flavor = "multi_thread")]
async fn a_held_refresh_lock_leaves_the_database_free() {
    for db in backends() {
        let store = DbTokenStore::open(&db.database).unwrap();
        let held = store.begin_refresh("crm").await.unwrap();
        let database = db.database.clone();
        let other = tokio::task::spawn_blocking(move || match database {
            Database::Sqlite(path) => {
                let conn = Connection::open(path).unwrap();
                conn.busy_timeout(Duration::ZERO).unwrap();
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; DELETE FROM {TABLE} WHERE auth = 'none'; COMMIT;"
                ))
                .map_err(|e| e.to_string())
            }
            Database::Postgres(url) => {
                let conn = crate::store::PgConn::connect(&url).unwrap();
                conn.run(|s| {
                    // PostgreSQL keeps the table in apisync's schema.
                    s.client.batch_execute(
                        "BEGIN; LOCK TABLE _apisync.refresh_tokens IN ACCESS EXCLUSIVE MODE NOWAIT; COMMIT;",
                    )
                })
                .unwrap()
                .map_err(|e| e.to_string())
            }
        });
        let result = other.await.unwrap();
        held.finish(Some(Secret::new("rt-2"))).await.unwrap();
        assert_eq!(result, Ok(()), "{}", db.database);
        assert_eq!(store.load("crm").await.unwrap().unwrap().expose(), "rt-2");
    }
}

#[test]
fn one_lock_file_per_auth_beside_the_database() {
    let db = Path::new("data").join("apisync.db");
    assert_eq!(
        lock_path(&db, "crm_eu-2"),
        Path::new("data").join("apisync.db.crm_eu-2.refresh-lock")
    );
    let odd = lock_path(&db, "../x y");
    assert_eq!(odd.parent(), Some(Path::new("data")));
    assert_ne!(odd, lock_path(&db, "../x z"));
}
