//! Opening the database: pragmas and the embedded migrations.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::SqliteStore;
use super::tables::table_exists;
use crate::store::error::StoreError;
use crate::store::rules::now;

/// Embedded migrations, in order. Adding one is one line here plus its file;
/// an applied migration is never edited.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/0001_init.sql")),
    (
        2,
        include_str!("../../../migrations/0002_refresh_tokens.sql"),
    ),
    (3, include_str!("../../../migrations/0003_leases.sql")),
    (4, include_str!("../../../migrations/0004_shards.sql")),
    (
        5,
        include_str!("../../../migrations/0005_own_namespace.sql"),
    ),
    (6, include_str!("../../../migrations/0006_passes.sql")),
];

/// Which migrations a database has seen, since schema 5.
const VERSION_TABLE: &str = "_apisync_schema_version";

/// Its name before schema 5, in a database an older apisync wrote.
const LEGACY_VERSION_TABLE: &str = "schema_version";

/// How long a statement waits for another connection's write lock.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(90);

/// Statements prepared once and reused: two insert shapes per table and mode,
/// plus the checkpoint upsert, for a handful of tables.
const STATEMENT_CACHE: usize = 64;

impl SqliteStore {
    /// Create or open the database file, set the pragmas and bring the schema
    /// up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Self::init(conn, path)
    }

    /// A private in-memory database (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: &Path) -> Result<SqliteStore, StoreError> {
        set_pragmas(&conn, path)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = SqliteStore { conn };
        store.migrate(path)?;
        Ok(store)
    }

    /// Apply every embedded migration the database has not seen, each in its
    /// own transaction with its `schema_version` row. Running it again is a
    /// no-op; a database written by a newer apisync is refused untouched.
    fn migrate(&mut self, path: &Path) -> Result<(), StoreError> {
        let db = |source| StoreError::Database {
            action: "read the schema version",
            source: Box::new(source),
        };
        self.ensure_version_table().map_err(db)?;
        let applied: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT version FROM _apisync_schema_version ORDER BY version")
                .map_err(db)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)?
        };
        let current = applied.last().copied().unwrap_or(0);
        let supported = latest_version();
        if current > supported {
            return Err(StoreError::NewerSchema {
                database: path.display().to_string(),
                found: current,
                supported,
            });
        }
        // Every version not applied yet, in order (not only those above the
        // highest applied one, so a gap left by an old build is filled too).
        for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
            self.apply_migration(version, sql)
                .map_err(|source| StoreError::Migration {
                    version,
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Create the bookkeeping table, or give an older database's
    /// `schema_version` its name of schema 5 on (`_apisync_schema_version`,
    /// out of the names user tables take) before the versions are read.
    /// Checked again under the write lock, so processes opening one old
    /// database at once rename it once. Read-only when nothing is to do.
    fn ensure_version_table(&mut self) -> rusqlite::Result<()> {
        if table_exists(&self.conn, VERSION_TABLE)? {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !table_exists(&tx, VERSION_TABLE)? {
            if is_legacy_version_table(&tx)? {
                tx.execute_batch("ALTER TABLE schema_version RENAME TO _apisync_schema_version")?;
            } else {
                tx.execute_batch(
                    "CREATE TABLE _apisync_schema_version (
                         version INTEGER PRIMARY KEY,
                         applied_at TEXT NOT NULL
                     )",
                )?;
            }
        }
        tx.commit()
    }

    fn apply_migration(&mut self, version: i64, sql: &str) -> rusqlite::Result<()> {
        // Write-locked from the start and checked again inside: processes
        // opening a new database at once (the shards of a sharded run)
        // apply each version once; the others find it done.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let applied: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM _apisync_schema_version WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if applied {
            return Ok(());
        }
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO _apisync_schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, now()),
        )?;
        tx.commit()
    }
}

/// Whether `schema_version` is the one an older apisync wrote (exactly its
/// two columns), not a table of another tool that shares the database
/// (Flyway's was called that too): only apisync's is taken over.
fn is_legacy_version_table(conn: &Connection) -> rusqlite::Result<bool> {
    let columns: Option<String> = conn.query_row(
        "SELECT group_concat(name, ',') FROM
             (SELECT name FROM pragma_table_info(?1) ORDER BY cid)",
        [LEGACY_VERSION_TABLE],
        |r| r.get(0),
    )?;
    Ok(columns.as_deref() == Some("version,applied_at"))
}

/// Tries again of the switch to WAL while another process holds the
/// database, each after its own busy wait (SQLite's default, 5 s) and a
/// short pause: one more try is what the race needs; five bound a file
/// that stays locked.
const JOURNAL_MODE_TRIES: u64 = 5;

fn set_pragmas(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let fail = |pragma| {
        move |source| StoreError::Pragma {
            path: path.to_path_buf(),
            pragma,
            source: Box::new(source),
        }
    };
    // journal_mode answers with a row; in-memory databases answer "memory".
    // A database still in rollback-journal mode (as apisync before WAL, or
    // another tool, left it) needs an exclusive lock to switch; when another
    // process switched it first and holds it open, the switch is busy for as
    // long as that process runs, but a new try reads the header again and
    // finds WAL already on. So a busy switch is tried again, a bounded number
    // of times (two processes opening an old database at once, issue 14).
    let mut tries = 0;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < JOURNAL_MODE_TRIES =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50 * tries));
            }
            Err(source) => return Err(fail("journal_mode")(source)),
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail("synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(fail("foreign_keys"))?;
    // Long enough to outlast another process's short write transactions
    // (an OAuth refresh holds BEGIN IMMEDIATE across its token request).
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(fail("busy_timeout"))
}

fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::Wal;

    /// The writer thread takes the store with it.
    #[test]
    fn store_can_move_to_the_writer_thread() {
        fn is_send<T: Send>() {}
        is_send::<SqliteStore>();
        is_send::<StoreError>();
    }

    #[test]
    fn migrations_are_strictly_ascending() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions.first(), Some(&1));
    }

    fn applied(store: &SqliteStore) -> Vec<i64> {
        let mut stmt = store
            .conn
            .prepare("SELECT version FROM _apisync_schema_version ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn reopening_applies_nothing_twice_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let first = SqliteStore::open(&path).unwrap();
        first
            .conn
            .execute(
                "INSERT INTO _apisync_runs (job, started_at, status) VALUES ('j', 't', 'running')",
                [],
            )
            .unwrap();
        let versions = applied(&first);
        drop(first);
        let second = SqliteStore::open(&path).unwrap();
        assert_eq!(applied(&second), versions);
        assert_eq!(versions.len(), MIGRATIONS.len());
        let runs: i64 = second
            .conn
            .query_row("SELECT count(*) FROM _apisync_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(runs, 1);
    }

    #[test]
    fn every_missing_version_is_applied_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // A database left at version 1 by an old apisync (its bookkeeping
        // table had no prefix then).
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&format!(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
             {}
             INSERT INTO schema_version VALUES (1, 'then');",
            MIGRATIONS[0].1
        ))
        .unwrap();
        drop(old);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(applied(&store), (1..=latest_version()).collect::<Vec<_>>());
        let leases: i64 = store
            .conn
            .query_row("SELECT count(*) FROM _apisync_job_leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!(leases, 0);
    }

    #[test]
    fn another_tools_schema_version_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TABLE schema_version (installed_rank INTEGER, version TEXT, script TEXT);
                 INSERT INTO schema_version VALUES (1, '1.0', 'V1__init.sql');",
            )
            .unwrap();
        drop(other);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(applied(&store), (1..=latest_version()).collect::<Vec<_>>());
        let script: String = store
            .conn
            .query_row("SELECT script FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(script, "V1__init.sql");
    }

    #[test]
    fn file_database_runs_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        store.checkpoint_wal().unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO _apisync_schema_version VALUES (999, 'later')",
                [],
            )
            .unwrap();
        drop(store);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found: 999, .. }),
            "{err}"
        );
        let text = err.to_string().replace(&path.display().to_string(), "<db>");
        insta::assert_snapshot!("newer_schema_error", text);
    }

    #[test]
    fn unopenable_path_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = SqliteStore::open(&dir.path().join("missing/dir/x.db")).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("x.db"), "{err}");
    }
}
