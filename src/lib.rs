//! apisync: declarative batch sync of paginated JSON APIs into SQLite or
//! PostgreSQL, with checkpoints so an interrupted run resumes where it
//! stopped. docs/architecture.md is the longer map; this one stays in step
//! with it.
//!
//! Data flows one way (definition -> plan -> fetch -> write -> checkpoint);
//! a module uses only those listed above it:
//!
//! - [`secret`]: `Secret`, a string that redacts itself; where a credential
//!   may go; scrubbing server text of credentials (used everywhere).
//! - [`definition`]: serde mirror of apisync.toml and job files, loading
//!   with file:line:col errors.
//! - [`plan`]: pure `definition -> plan`: defaults, URLs, the database to
//!   open, pagination, identifiers; every problem at once.
//! - [`record`]: `Record`, what fetch hands to the store.
//! - [`auth`]: secret sources, static credentials, OAuth2 token sources
//!   (token persistence is handed in, not reached for).
//! - [`fetch`]: HTTP (client, retries, limits), one file per pagination
//!   type, decoding pages into records.
//! - [`store`]: the one module that knows SQL: a `Store` handle over
//!   SQLite or PostgreSQL; a page's rows and its checkpoint in one
//!   transaction; runs, marks, leases, shard claims.
//! - [`token_store`]: rotated refresh tokens in the project's database:
//!   auth's `TokenStore`, implemented beside the store, not inside it.
//! - [`run`]: selection, ordering, concurrency, the stream gate (plain or
//!   sharded), the single writer thread, cancellation, the run summary.
//! - [`metrics`]: Prometheus text of the run summary: the textfile
//!   (atomic write) and the Pushgateway push.
//! - [`init`]: `apisync init`: fetch a first page, detect records,
//!   pagination and key, write a commented job file.
//! - [`demo`]: the built-in local API behind `apisync demo`.
//! - [`cli`]: clap commands, composition, exit codes.

pub mod auth;
pub mod cli;
pub mod definition;
pub mod demo;
pub mod fetch;
pub mod init;
pub mod metrics;
pub mod plan;
pub mod record;
pub mod run;
pub mod secret;
pub mod store;
pub mod token_store;

#[cfg(test)]
mod test_support;
