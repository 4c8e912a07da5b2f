//! A transaction left open between two calls to the connection thread.
//!
//! Some decisions need the caller's thread in the middle of a transaction:
//! whether another holder is dead is an `is_dead` closure the caller owns
//! (it need not be `Send`), evaluated while the transaction's advisory
//! locks keep racing processes out. The transaction is opened with plain
//! `BEGIN`, read under its locks, handed back to the caller, and then
//! committed with its writes or rolled back. Dropped unfinished (an early
//! return, a panic), it is rolled back, so the connection is never left
//! inside a transaction.

use super::PgConn;
use super::conn::Session;
use crate::store::error::StoreError;

type PgResult<T> = Result<T, postgres::Error>;

/// An open transaction on `conn`; see the module doc.
pub(crate) struct OpenTx<'a> {
    conn: &'a PgConn,
    open: bool,
}

impl<'a> OpenTx<'a> {
    /// `BEGIN`, then `first` inside the transaction. When either fails the
    /// transaction is rolled back and the error mapped by `fail`.
    pub(crate) fn begin<T: Send + 'static>(
        conn: &'a PgConn,
        fail: impl FnOnce(postgres::Error) -> StoreError + Send + 'static,
        first: impl FnOnce(&mut Session) -> PgResult<T> + Send + 'static,
    ) -> Result<(OpenTx<'a>, T), StoreError> {
        let value = conn.run(move |s| {
            let out = s.client.batch_execute("BEGIN").and_then(|()| first(s));
            if out.is_err() {
                let _ = s.client.batch_execute("ROLLBACK");
            }
            out.map_err(fail)
        })??;
        Ok((OpenTx { conn, open: true }, value))
    }

    /// `last` inside the transaction, then `COMMIT`; rolled back when
    /// either fails.
    pub(crate) fn commit_after<T: Send + 'static>(
        mut self,
        fail: impl FnOnce(postgres::Error) -> StoreError + Send + 'static,
        last: impl FnOnce(&mut Session) -> PgResult<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.open = false;
        self.conn.run(move |s| {
            let out = last(s).and_then(|value| s.client.batch_execute("COMMIT").map(|()| value));
            if out.is_err() {
                let _ = s.client.batch_execute("ROLLBACK");
            }
            out.map_err(fail)
        })?
    }

    /// End the transaction without writing anything.
    pub(crate) fn rollback(
        mut self,
        fail: impl FnOnce(postgres::Error) -> StoreError + Send + 'static,
    ) -> Result<(), StoreError> {
        self.open = false;
        self.conn
            .run(|s| s.client.batch_execute("ROLLBACK"))?
            .map_err(fail)
    }
}

impl Drop for OpenTx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.run(|s| s.client.batch_execute("ROLLBACK"));
        }
    }
}
