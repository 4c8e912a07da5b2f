//! Errors of the store. Each names the database object it was working on
//! and says what to do; the SQLite or PostgreSQL cause is chained as the
//! source and its text is part of the message too (see [`causes`]), so
//! `{err}` alone shows it: do not print the chain again.

use std::path::PathBuf;

/// The cause: a `rusqlite::Error` or a `postgres::Error`, boxed as a trait
/// object so each backend's code writes `source: Box::new(its_error)`.
/// Neither type leaks out of the store through it.
pub(crate) type DbError = dyn std::error::Error + Send + Sync + 'static;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: cannot open: {} (hint: check that the folder exists and is writable)", path.display(), causes(source.as_ref()))]
    Open {
        path: PathBuf,
        #[source]
        source: Box<DbError>,
    },

    #[error(
        "database {}: could not set pragma {pragma}: {} \
         (hint: check that the file is a SQLite database on a local disk that apisync may write)",
        path.display(),
        causes(source.as_ref())
    )]
    Pragma {
        path: PathBuf,
        pragma: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error(
        "database {database}: cannot connect: {} \
         (hint: check the host, port, user, password and sslmode in the URL, and that the server is running)",
        causes(source.as_ref())
    )]
    Connect {
        /// The URL with its password hidden.
        database: String,
        #[source]
        source: Box<DbError>,
    },

    #[error(
        "database {database}: the connection stopped unexpectedly \
         (hint: see the error logged before this; rerun to resume from the last checkpoint)"
    )]
    ConnectionLost { database: String },

    #[error(
        "database {database}: schema version {found} was written by a newer apisync (this one knows up to {supported}) \
         (hint: upgrade apisync, or point --db at another file)"
    )]
    NewerSchema {
        /// The path, or the URL with its password hidden.
        database: String,
        found: i64,
        supported: i64,
    },

    #[error(
        "database: could not apply schema migration {version}: {} \
         (hint: the migration was rolled back; check that the database user may create and alter \
         tables (on PostgreSQL also schemas), then rerun)",
        causes(source.as_ref())
    )]
    Migration {
        version: i64,
        #[source]
        source: Box<DbError>,
    },

    #[error("table \"{table}\": could not {action}: {} (hint: {RERUN})", causes(source.as_ref()))]
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

    #[error(
        "table \"{table}\": the name (or its staging table's, \"_apisync_staging_{table}\") is longer \
         than PostgreSQL's 63 bytes (hint: choose a shorter output.table)"
    )]
    NameTooLong { table: String },

    #[error("table \"{table}\": no staging table to swap in (hint: rerun the job)")]
    NoStaging { table: String },

    #[error("pointer \"{pointer}\": {reason}")]
    Pointer {
        pointer: String,
        reason: &'static str,
    },

    #[error(
        "job \"{job}\"{}: could not {action}: {} (hint: {RERUN})",
        partition_label(partition),
        causes(source.as_ref())
    )]
    Stream {
        job: String,
        partition: String,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    /// A sharded stream's claim moved to another process (this one looked
    /// dead to it) while this one still ran the stream: its page is not
    /// written, so two processes never both write one stream.
    #[error(
        "job \"{job}\"{}: another process took this stream over (this one looked dead to it: its heartbeat was older than the stale limit); the page was not written and that process continues the stream",
        partition_label(partition)
    )]
    ClaimLost { job: String, partition: String },

    /// A job's lease moved to another process (this one looked dead to
    /// it) while this one still wrote the job: its page is not written, so
    /// two processes never both write one job.
    #[error(
        "job \"{job}\": the lease of this job was {} while this process ({holder}) held it, \
         because its heartbeat was older than the stale limit; this process stops writing the job \
         and the page was not written (hint: the other process continues the job from its last checkpoint; \
         if this process was only slow, give it more time: see the stale limit in docs/jobs.md)",
        lease_now(now.as_deref())
    )]
    LeaseLost {
        job: String,
        /// This process's holder name.
        holder: String,
        /// Who holds the lease now, if anyone.
        now: Option<String>,
    },

    #[error("job \"{job}\": could not {action}: {} (hint: {RERUN})", causes(source.as_ref()))]
    Job {
        job: String,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("run {run_id}: could not {action}: {} (hint: {RERUN})", causes(source.as_ref()))]
    Run {
        run_id: i64,
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },

    #[error("database: could not {action}: {} (hint: {RERUN})", causes(source.as_ref()))]
    Database {
        action: &'static str,
        #[source]
        source: Box<DbError>,
    },
}

/// What to do after a failed statement: its transaction rolled back.
const RERUN: &str = "nothing of this step was committed; fix the cause and rerun: \
                     each stream resumes from its last checkpoint";

/// The database's own error text: the cause and each of its causes, a
/// repeated text once (PostgreSQL's error says "db error" and keeps the
/// server's message in its source). Part of each message's Display, as
/// errors are shown with `{err}` (logs, the run table, the summary).
fn causes(source: &DbError) -> String {
    let mut parts = vec![source.to_string()];
    let mut next = source.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

fn lease_now(now: Option<&str>) -> String {
    match now {
        Some(other) => format!("taken over by {other}"),
        None => "released by another process".to_string(),
    }
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

    /// Shaped like `postgres::Error`: a bland text, the server's message
    /// in its source.
    #[derive(Debug)]
    struct DbLike;

    impl std::fmt::Display for DbLike {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("db error")
        }
    }

    impl std::error::Error for DbLike {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&ServerMessage)
        }
    }

    #[derive(Debug)]
    struct ServerMessage;

    impl std::fmt::Display for ServerMessage {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ERROR: relation \"_apisync.job_leases\" does not exist")
        }
    }

    impl std::error::Error for ServerMessage {}

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
            StoreError::Job {
                job: "orders".into(),
                action: "check its lease",
                source: Box::new(DbLike),
            },
            StoreError::LeaseLost {
                job: "orders".into(),
                holder: "here:1:a".into(),
                now: Some("there:2:b".into()),
            },
            StoreError::LeaseLost {
                job: "orders".into(),
                holder: "here:1:a".into(),
                now: None,
            },
        ];
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!("error_messages", text.join("\n"));
    }
}
