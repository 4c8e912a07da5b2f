//! The only module that knows SQL, for two backends: SQLite (a file; the
//! files beside this one) and PostgreSQL (`postgres/`), chosen by the
//! [`Database`] the `database` setting names. Opening the database with its
//! migrations, one table per job, `apply_page` (a page's rows and the
//! stream's checkpoint in one transaction), marks, finished partitions, the
//! run history, leases and rotated refresh tokens. Sync: one thread (the
//! writer) owns a [`Store`]. Nothing here exposes SQLite or PostgreSQL
//! types, and nothing outside learns which database it is: [`Store`] and
//! [`StoreReader`] forward each call (see `facade.rs` for how to add one).

mod error;
mod facade;
mod file_sync;
mod leases;
mod open;
mod postgres;
mod read;
mod reader;
mod runs;
mod shard_runs;
mod shards;
mod sql;
mod streams;
mod tables;
pub mod tokens;
mod types;
mod write;

#[cfg(test)]
mod test_db;
#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use facade::{Store, StoreReader};
pub use leases::LeaseOutcome;
pub use shard_runs::OtherRuns;
pub use shards::{ClaimEnd, StreamClaim, StreamState};
pub use streams::BACKFILL_PREFIX;
pub(crate) use tables::upserts;
pub use tokens::{DbTokenStore, SqliteTokenStore, TokensError};
pub use types::{JobStatus, Reset, RunId, RunOutcome, RunRecord, RunStatus, StreamKey, TableSpec};
