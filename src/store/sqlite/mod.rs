//! The SQLite backend: one database file, one connection per handle,
//! `BEGIN IMMEDIATE` where processes race. One file per concern, as in
//! `postgres/`: each implements the trait of its name from `backend.rs`.
//! Only here: `wal.rs` and `file_sync.rs` (SQLite's write-ahead log,
//! copied by a thread beside the writer) and `sql.rs` (JSON values and
//! paths in SQLite's terms).

mod claims;
mod errors;
mod file_sync;
mod guards;
mod invocations;
mod job_leases;
mod open;
mod pages;
mod reader;
mod rows;
mod runs;
mod sql;
mod streams;
mod tables;
mod wal;

use rusqlite::Connection;

#[cfg(test)]
pub(crate) use open::MIGRATIONS;
pub(crate) use reader::SqliteReader;

/// The SQLite store. Owned by one thread (the writer); `Connection` is
/// `Send` but not `Sync`, and so is this.
pub(crate) struct SqliteStore {
    conn: Connection,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}
