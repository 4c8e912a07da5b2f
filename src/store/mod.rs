//! SQLite, and the only module that knows SQL: opening the database with its
//! pragmas and embedded migrations, one table per job, `apply_page` (a page's
//! rows and the stream's checkpoint in one transaction), marks, finished
//! partitions and the run history. Sync: one thread (the writer) owns a
//! [`Store`]. Nothing here exposes SQLite types, so a PostgreSQL store can
//! offer the same surface.

mod error;
mod leases;
mod open;
mod read;
mod reader;
mod runs;
mod shards;
mod sql;
mod streams;
mod tables;
pub mod tokens;
mod types;
mod write;

#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use leases::LeaseOutcome;
pub use open::Store;
pub use reader::StoreReader;
pub use shards::{ClaimEnd, StreamClaim, StreamState};
pub use streams::BACKFILL_PREFIX;
pub use tokens::{SqliteTokenStore, TokensError};
pub use types::{JobStatus, RunId, RunOutcome, RunRecord, RunStatus, StreamKey, TableSpec};
