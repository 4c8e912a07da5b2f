//! Errors of the store. Each names the database object it was working on;
//! the SQLite cause is chained as the source.

use std::path::PathBuf;

/// The cause type, named once so a second store backend changes one line.
pub(crate) type DbError = rusqlite::Error;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: cannot open (hint: check that the folder exists and is writable)", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<DbError>,
    },

    #[error("database {}: setting pragma {pragma} failed", path.display())]
    Pragma {
        path: PathBuf,
        pragma: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error(
        "database {}: schema version {found} was written by a newer apisync (this one knows up to {supported}) \
         (hint: upgrade apisync, or point --db at another file)",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("database migration {version} failed")]
    Migration {
        version: i64,
        #[source]
        source: Box<DbError>,
    },

    #[error("table \"{table}\": {action} failed")]
    Table {
        table: String,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error(
        "table \"{table}\": a record has {found} column values but the table declares {expected} \
         (hint: this is a bug in apisync, please report it)"
    )]
    ColumnCount {
        table: String,
        expected: usize,
        found: usize,
    },

    #[error(
        "table \"{table}\": mode {mode} needs a unique _pk but the existing table has none \
         (hint: drop the table or choose another output.table)"
    )]
    NotUnique { table: String, mode: &'static str },

    #[error("table \"{table}\": no staging table to swap in (hint: rerun the job)")]
    NoStaging { table: String },

    #[error("pointer \"{pointer}\": {reason}")]
    Pointer {
        pointer: String,
        reason: &'static str,
    },

    #[error("job \"{job}\" partition \"{partition}\": {action} failed")]
    Stream {
        job: String,
        partition: String,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("job \"{job}\": {action} failed")]
    Job {
        job: String,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("run {run_id}: {action} failed")]
    Run {
        run_id: i64,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("database: {action} failed")]
    Database {
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },
}
