//! apisync: declarative batch sync of paginated JSON APIs into SQLite.
//!
//! Data flows one way; a module uses only those listed above it:
//!
//! - [`secret`]: `Secret`, a string that redacts itself (used everywhere).
//! - [`definition`]: serde mirror of apisync.toml and job files, loading
//!   with file:line:col errors.
//! - [`plan`]: pure `definition -> plan`: defaults, URLs, pagination,
//!   identifiers; every problem at once.
//! - [`auth`]: secret sources, static credentials, OAuth2 token sources.
//! - [`fetch`]: HTTP client, retries, pagination state machines -> `Page`.
//! - [`store`]: SQLite: migrations, tables, `apply_page` (rows + checkpoint
//!   in one transaction), runs.
//! - [`token_store`]: rotated refresh tokens in the project's database,
//!   auth's `TokenStore` implemented beside the store.
//! - [`run`]: selection, ordering, concurrency, the single writer thread,
//!   cancellation, the run summary.
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
