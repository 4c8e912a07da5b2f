//! Connecting and bringing apisync's own tables (schema `_apisync`) up to
//! date, under an advisory lock so processes starting together are safe.

use super::locks::xact_lock;
use super::{PgConn, PgStore};
use crate::plan::PostgresUrl;
use crate::store::error::StoreError;
use crate::store::rules::now;
use crate::store::sql::PG_STATE_SCHEMA;

/// Embedded migrations, in order; as on SQLite, an applied one is never edited.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_refresh_tokens.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_leases.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_shards.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_own_namespace.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_passes.sql"),
    ),
];

impl PgStore {
    /// Connect and bring apisync's tables up to date.
    pub(crate) fn open(url: &PostgresUrl) -> Result<PgStore, StoreError> {
        let conn = PgConn::connect(url)?;
        migrate(&conn)?;
        Ok(PgStore { conn })
    }
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
        ensure_version_table(&mut tx).map_err(db)?;
        let applied: Vec<i64> = tx
            .query(
                "SELECT version FROM _apisync.schema_version ORDER BY version",
                &[],
            )
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
                "INSERT INTO _apisync.schema_version (version, applied_at) VALUES ($1, $2)",
                &[&version, &super::open::now()],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(db)
    })?
}

/// Create the schema `_apisync` and its bookkeeping table, or move an older
/// database's `schema_version` (found through the search_path, where schema
/// 1 created it) into it; migration 5 moves the other tables. Objects are
/// created only when missing: CREATE ... IF NOT EXISTS would still need the
/// CREATE privilege on the database or schema.
fn ensure_version_table(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    let exists = |tx: &mut postgres::Transaction<'_>, name: &str| {
        tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .map(|r| r.get::<_, bool>(0))
    };
    let schema: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&PG_STATE_SCHEMA],
        )?
        .get(0);
    if !schema {
        tx.batch_execute("CREATE SCHEMA _apisync")?;
    }
    if exists(tx, "_apisync.schema_version")? {
        return Ok(());
    }
    // Only the one an older apisync wrote (exactly its two columns), not
    // a table of another tool that shares the database (Flyway's was
    // called `schema_version` too).
    let legacy: Option<String> = tx
        .query_one(
            "SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute
             WHERE attrelid = to_regclass('schema_version') AND attnum > 0 AND NOT attisdropped",
            &[],
        )?
        .get(0);
    if legacy.as_deref() == Some("version,applied_at") {
        return tx.batch_execute("ALTER TABLE schema_version SET SCHEMA _apisync");
    }
    tx.batch_execute(
        "CREATE TABLE _apisync.schema_version (
             version bigint PRIMARY KEY,
             applied_at text NOT NULL
         )",
    )
}
