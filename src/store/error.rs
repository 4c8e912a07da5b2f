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

    #[error("database {}: could not set pragma {pragma}", path.display())]
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

    #[error("database: could not apply schema migration {version}")]
    Migration {
        version: i64,
        #[source]
        source: Box<DbError>,
    },

    #[error("table \"{table}\": could not {action}")]
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

    #[error("job \"{job}\"{}: could not {action}", partition_label(partition))]
    Stream {
        job: String,
        partition: String,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("job \"{job}\": could not {action}")]
    Job {
        job: String,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("run {run_id}: could not {action}")]
    Run {
        run_id: i64,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("database: could not {action}")]
    Database {
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },
}

/// Unpartitioned streams (partition "") are named by their job alone.
fn partition_label(partition: &str) -> String {
    if partition.is_empty() {
        String::new()
    } else {
        format!(" partition \"{partition}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_thing_first() {
        let cause = || Box::new(rusqlite::Error::QueryReturnedNoRows);
        let errors = [
            StoreError::Stream {
                job: "orders".into(),
                partition: String::new(),
                action: "save the checkpoint",
                source: cause(),
            },
            StoreError::Stream {
                job: "orders".into(),
                partition: "eu".into(),
                action: "save the checkpoint",
                source: cause(),
            },
            StoreError::Table {
                table: "orders".into(),
                action: "write a page",
                source: cause(),
            },
            StoreError::NoStaging {
                table: "orders".into(),
            },
        ];
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!("error_messages", text.join("\n"));
    }
}
