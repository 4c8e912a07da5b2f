//! SQLite's write-ahead log, copied into the database by a second
//! connection ([`Wal::wal_checkpointer`]) on a thread beside the writer,
//! so the writer does not stop every few pages to do it inline; that
//! thread also flushes the database file (`file_sync.rs`), so the
//! checkpoint the writer does wait for has little left to flush.

use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::SqliteStore;
use super::file_sync::sync_database_file;
use crate::store::backend::{Wal, WalCheckpointer};
use crate::store::error::StoreError;

impl Wal for SqliteStore {
    /// Copy the WAL back into the database without waiting for readers.
    /// The writer calls it every few dozen pages so the WAL stays small.
    fn checkpoint_wal(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|source| StoreError::Database {
                action: "checkpoint the WAL",
                source: Box::new(source),
            })
    }

    /// A second connection to this database that copies the WAL into it
    /// (`wal_checkpoint(PASSIVE)`), for a thread beside the writer. Taking it
    /// turns off SQLite's automatic checkpoint on the writer's connection,
    /// which otherwise stops the writer every thousand WAL pages to do the
    /// same work inline; whoever takes it must call it regularly, or the WAL
    /// grows. None for an in-memory database or one not in WAL mode.
    fn wal_checkpointer(&self) -> Result<Option<WalCheckpointer>, StoreError> {
        let db = |action| {
            move |source| StoreError::Database {
                action,
                source: Box::new(source),
            }
        };
        let path = match self.conn.path() {
            Some(path) if !path.is_empty() => path.to_string(),
            _ => return Ok(None),
        };
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(db("read the journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        let other = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db("open a second connection for WAL checkpoints"))?;
        other
            .busy_timeout(Duration::from_secs(5))
            .map_err(db("set the checkpoint connection's busy timeout"))?;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db("turn off the automatic WAL checkpoint"))?;
        Ok(Some(Box::new(move || {
            other
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(db("checkpoint the WAL"))?;
            // SQLite flushes the database file only after a checkpoint that
            // copied the whole WAL, the one the writer waits for; flushing
            // here, off the writer's path, leaves that wait little to write.
            sync_database_file(&other).map_err(db("flush the database file"))
        })))
    }

    /// Undo [`crate::store::Wal::wal_checkpointer`]'s switch-off, when the checkpoints
    /// it was taken for cannot run after all.
    fn restore_wal_autocheckpoint(&self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 1000)
            .map_err(|source| StoreError::Database {
                action: "turn the automatic WAL checkpoint back on",
                source: Box::new(source),
            })
    }
}
