//! HTTP: building requests, retries, one state machine per pagination type
//! with loop and page-cap guards. Yields `Page { records, position }`; never
//! touches the database (run hands the resume position in).

mod ahead;
mod authorize;
mod challenge;
mod client;
mod context;
mod error;
mod limits;
mod link;
mod paginate;
mod pointer;
mod records;
mod retry;
mod send;
mod stats;
mod stream;
mod types;

pub use client::{HttpClient, HttpOptions};
pub use context::RequestContext;
pub use error::{FetchError, FetchErrorKind};
pub use link::{Link, LinkError, next_link, parse_links};
pub use paginate::{DecodedPage, Paginator};
pub use pointer::PointerError;
pub use records::primary_key_of;
/// A reqwest error without its URL, for the other HTTP callers (metrics push, init).
pub(crate) use send::describe;
pub use stats::{RequestStats, StatsSnapshot};
pub use stream::StreamFetcher;
pub use types::*;

/// For the fuzz targets in fuzz/ (pointer extraction over raw JSON).
pub use pointer::{raw_at, tokens};
