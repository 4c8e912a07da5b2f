//! The SQLite backend: one database file, one connection per handle,
//! `BEGIN IMMEDIATE` where processes race. One file per concern, as in
//! `postgres/`: each implements the trait of its name from `backend.rs`
//! (`errors.rs`, `guards.rs`, `open.rs` and `sql.rs` are each backend's
//! own helpers). Only here: `file_sync.rs`, the flush behind the WAL
//! checkpoints of `wal.rs`.

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
