//! The only module that knows SQL, for two backends: SQLite (`sqlite/`, a
//! file) and PostgreSQL (`postgres/`, for several processes or pods),
//! chosen by the [`Database`](crate::plan::Database) the `database` setting
//! names. Sync: one thread (the writer) owns a [`Store`]; nothing here
//! exposes SQLite or PostgreSQL types, and nothing outside learns which
//! database it is.
//!
//! - `handle.rs`: [`Store`] and [`StoreReader`], what the rest of apisync
//!   holds. They open the backend and expose its operations as their own.
//! - `backend.rs`: one small trait per concern (tables, pages and
//!   checkpoints, streams and passes, runs, job leases, invocations, stream
//!   claims, rows, the WAL), the contract each backend fulfils. Adding an
//!   operation is one trait method and one implementation per backend.
//! - `sqlite/` and `postgres/`: the backends, laid out file for file alike
//!   (`sqlite/pages.rs` does on SQLite what `postgres/pages.rs` does on
//!   PostgreSQL). Neither imports from the other; a third backend would be
//!   one more folder.
//! - `rules.rs`: every decision both backends share (which table a page
//!   goes to, who takes a lease or a claim, what a reset forgets), so they
//!   never disagree.
//! - `guards.rs`: the claims and job leases a handle took, checked inside
//!   every page, end of stream and end of pass of a sharded or leased job.
//! - `types.rs`, `error.rs`, `sql.rs`: plain data in and out, typed errors,
//!   SQL text both backends build alike.
//!
//! Rotated OAuth2 refresh tokens are kept in the same database, but not
//! through this module: auth's token store is implemented beside it, in
//! `crate::token_store`, which opens its own connections (for PostgreSQL,
//! through the connection thread and migrations re-exported below).

mod backend;
mod error;
mod guards;
mod handle;
mod postgres;
mod rules;
mod sql;
mod sqlite;
mod types;

#[cfg(test)]
pub(crate) mod test_db;
#[cfg(test)]
mod tests;

pub use backend::{
    Backend, Claims, Invocations, IsDead, JobLeases, Pages, Reader, Rows, Runs, Streams, Tables,
    Wal, WalCheckpointer,
};
pub use error::StoreError;
pub use handle::{Store, StoreReader};
pub(crate) use postgres::{LOCK_SPACE, PgConn, migrate as migrate_postgres};
pub use rules::BACKFILL_PREFIX;
pub(crate) use rules::upserts;
pub use types::{
    ClaimEnd, JobStatus, LeaseOutcome, OtherRuns, Reset, RunId, RunOutcome, RunRecord, RunStatus,
    StreamClaim, StreamKey, StreamState, TableSpec,
};
