//! Flushing the database file to disk through SQLite's own file handle.
//!
//! The WAL checkpoint thread (`run::writer`) copies WAL frames into the
//! database file while the writer goes on appending. SQLite flushes the
//! database file only when a checkpoint has copied the whole WAL, and with
//! the writer appending all along that is the checkpoint the writer stops
//! for: its fsync then wrote out every page copied since the last one
//! (about 26 MB per wait on the benchmark), with the writer waiting.
//! Flushing after each background checkpoint leaves that wait little to do.
//! A failed flush stops that thread's checkpoints for good (see
//! `run::writer::run_checkpoints`): the error is reported once per handle,
//! and a later success must not let SQLite start the WAL over.
//!
//! Why not `File::open(path)?.sync_data()`: closing any descriptor of a file
//! drops every POSIX lock this process holds on it, SQLite's included
//! (<https://sqlite.org/howtocorrupt.html>, "POSIX advisory locks canceled
//! by a separate thread doing close()"). Going through the connection's own
//! `sqlite3_file` uses the descriptor SQLite opened and closes itself.

use std::ffi::c_void;

use rusqlite::{Connection, ffi};

/// fsync the main database file of `conn`, as SQLite does at the end of a
/// checkpoint (the VFS's `xSync` with normal flags).
///
/// `conn` must not be in use on another thread meanwhile; a `Connection`
/// is not `Sync`, so a `&Connection` here already means that.
pub(crate) fn sync_database_file(conn: &Connection) -> rusqlite::Result<()> {
    let failure = |code, message: &str| {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message.to_string()))
    };
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `handle()` is the open connection `conn` borrows, alive for
    // this call. SQLITE_FCNTL_FILE_POINTER writes one `sqlite3_file *` to
    // the location given, which is `file`.
    let code = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast::<c_void>(),
        )
    };
    if code != ffi::SQLITE_OK {
        return Err(failure(code, "find the database file"));
    }
    if file.is_null() {
        return Err(failure(ffi::SQLITE_MISUSE, "no database file"));
    }
    // SAFETY: the pager owns `file` until the connection closes, and `conn`
    // is borrowed for this call. A null `pMethods` means the file is not
    // open; otherwise `xSync` is the VFS's, called with a flag it accepts,
    // on the connection's own file that no other thread uses now.
    let code = unsafe {
        match (*file).pMethods.as_ref().and_then(|m| m.xSync) {
            Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
            None => {
                return Err(failure(ffi::SQLITE_MISUSE, "the database file is not open"));
            }
        }
    };
    match code {
        ffi::SQLITE_OK => Ok(()),
        code => Err(failure(code, "flush the database file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup reaches a real file's handle and the flush succeeds; an
    /// in-memory database has no file to flush, and says so.
    #[test]
    fn flushes_a_file_and_refuses_an_in_memory_database() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("f.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        sync_database_file(&conn).unwrap();

        let memory = Connection::open_in_memory().unwrap();
        let err = sync_database_file(&memory).unwrap_err();
        assert!(err.to_string().contains("not open"), "{err}");
    }
}
