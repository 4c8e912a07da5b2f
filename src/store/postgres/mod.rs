//! The PostgreSQL backend: the same traits and promises as `sqlite/`, file
//! for file (`pages.rs` here does what `sqlite/pages.rs` does), for several
//! processes or pods writing one database. Only here: `conn.rs` (the
//! client on a thread of its own), `open_tx.rs` (a transaction held open
//! across a call back to the caller) and `locks.rs` (advisory locks).
//!
//! - A page's rows and its checkpoint commit in one transaction; rows go in
//!   as one `INSERT ... SELECT FROM unnest(...)` per page (one prepared
//!   statement per table and mode, whatever the page size, far below the
//!   bind-parameter limit).
//! - merge upserts with `ON CONFLICT ("_pk") DO UPDATE`. PostgreSQL refuses
//!   to touch one row twice in one statement, so a page that repeats a key
//!   keeps its last record, at the place of the first (what SQLite ends up
//!   with).
//! - `_data` and declared columns are `jsonb`: the text received is valid
//!   JSON; jsonb normalises it (key order, whitespace, duplicate keys).
//! - replace fills a staging table and copies it over the live table in one
//!   transaction (`DELETE` + `INSERT`), so views, grants and indexes on the
//!   live table survive; the first pass renames the staging table instead.
//! - apisync's own tables come from `migrations/postgres/`, applied under an
//!   advisory lock so processes starting together are safe. Leases and
//!   claims take advisory transaction locks too (and `crate::token_store`
//!   a session lock per refresh, through [`PgConn`] and [`LOCK_SPACE`]).

mod claims;
mod conn;
mod errors;
mod guards;
mod invocations;
mod job_leases;
mod locks;
mod open;
mod open_tx;
mod pages;
mod reader;
mod rows;
mod runs;
mod sql;
mod streams;
mod tables;
mod wal;

#[cfg(test)]
mod tests;

pub(crate) use conn::PgConn;
pub(crate) use locks::LOCK_SPACE;
#[cfg(test)]
pub(crate) use open::MIGRATIONS;
pub(crate) use open::migrate;
pub(crate) use reader::PgReader;

/// The PostgreSQL store: one connection, on its own thread.
#[derive(Debug)]
pub(crate) struct PgStore {
    conn: PgConn,
}
