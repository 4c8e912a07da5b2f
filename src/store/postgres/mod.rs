//! The PostgreSQL store: the same surface and promises as the SQLite one
//! (`super::open` and its neighbours), for several processes or pods
//! writing one database.
//!
//! - A page's rows and its checkpoint commit in one transaction; rows go in
//!   as one `INSERT ... SELECT FROM unnest(...)` per page (one prepared
//!   statement per table and mode, whatever the page size, far below the
//!   bind-parameter limit).
//! - merge upserts with `ON CONFLICT ("_pk") DO UPDATE`. PostgreSQL refuses
//!   to touch one row twice in one statement, so a page that repeats a key
//!   keeps its last record, at the place of the first (what SQLite ends up
//!   with).
//! - `_data` and declared columns are `jsonb`: the text received is valid
//!   JSON; jsonb normalises it (key order, whitespace, duplicate keys).
//! - replace fills a staging table and copies it over the live table in one
//!   transaction (`DELETE` + `INSERT`), so views, grants and indexes on the
//!   live table survive; the first pass renames the staging table instead.
//! - apisync's own tables come from `migrations/postgres/`, applied under an
//!   advisory lock so processes starting together are safe. Leases and the
//!   refresh-token guard take advisory transaction locks too.

mod conn;
mod read;
mod state;
pub(crate) mod tokens;
mod write;

use postgres::GenericClient;

use super::database::PostgresUrl;
use super::error::StoreError;
pub(crate) use conn::PgConn;
pub(crate) use read::PgReader;

/// Embedded migrations, in order; as on SQLite, an applied one is never edited.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../../migrations/postgres/0002_refresh_tokens.sql"),
    ),
    (3, include_str!("../../../migrations/postgres/0003_leases.sql")),
];

/// First key of every advisory lock apisync takes ("APSY"); the second is
/// `hashtext` of what is locked (`migrate`, `lease:JOB`, `refresh:AUTH`,
/// `table:NAME`). Two names hashing alike only wait for each other.
pub(crate) const LOCK_SPACE: i32 = 0x4150_5359;

/// The PostgreSQL store: one connection, on its own thread.
#[derive(Debug)]
pub(crate) struct PgStore {
    pub(crate) conn: PgConn,
}

impl PgStore {
    /// Connect and bring apisync's tables up to date.
    pub(crate) fn open(url: &PostgresUrl) -> Result<PgStore, StoreError> {
        let conn = PgConn::connect(url)?;
        migrate(&conn)?;
        Ok(PgStore { conn })
    }
}

/// Take the advisory lock for `name` until the transaction ends.
pub(crate) fn xact_lock(c: &mut impl GenericClient, name: &str) -> Result<(), postgres::Error> {
    c.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_SPACE, &name],
    )
    .map(drop)
}

/// Apply every migration the database has not seen, in one transaction under
/// the migration lock: a second process starting at the same time waits,
/// then finds them applied.
pub(crate) fn migrate(conn: &PgConn) -> Result<(), StoreError> {
    let shown = conn.shown().to_string();
    conn.run(move |session| {
        let db = |source: postgres::Error| StoreError::Database {
            action: "read the schema version",
            source: Box::new(source),
        };
        let mut tx = session.client.transaction().map_err(db)?;
        xact_lock(&mut tx, "migrate").map_err(db)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version bigint PRIMARY KEY,
                 applied_at text NOT NULL
             )",
        )
        .map_err(db)?;
        let applied: Vec<i64> = tx
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let current = applied.last().copied().unwrap_or(0);
        let supported = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if current > supported {
            return Err(StoreError::NewerSchema {
                database: shown,
                found: current,
                supported,
            });
        }
        for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
            let failed = |source: postgres::Error| StoreError::Migration {
                version,
                source: Box::new(source),
            };
            tx.batch_execute(sql).map_err(failed)?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                &[&version, &super::open::now()],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(db)
    })?
}

#[cfg(test)]
impl PgStore {
    pub(crate) fn exec_sql(&mut self, sql: &str) {
        let sql = sql.to_string();
        self.conn
            .run(move |s| s.client.batch_execute(&sql))
            .expect("connection")
            .expect("test SQL");
    }

    pub(crate) fn query_text(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = sql.to_string();
        let messages = self
            .conn
            .run(move |s| s.client.simple_query(&sql))
            .expect("connection")
            .expect("test SQL");
        messages
            .iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_strictly_ascending_and_match_sqlite_versions() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions.first(), Some(&1));
    }
}
