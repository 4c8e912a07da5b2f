//! Fetching a stream's pages: requests built, sent, retried and decoded,
//! one pagination state machine with loop and page-cap guards. Yields
//! `Page { records, position }`; never touches the database (run hands the
//! resume position in). Three folders, one concern each:
//!
//! - `http/`: getting one page over the network, whatever the job pages by:
//!   the client, one attempt with its redirects, retries, the global,
//!   per-host and rate limits, and where a credential may go.
//! - `paginate/`: what comes next: one file per pagination type behind one
//!   small trait (`Paging`), so a new type is one file; the `Paginator`
//!   applies the rules every type shares. Pure, no I/O.
//! - `decode/`: what a response says: the records (kept as received, with
//!   their keys), JSON pointers over raw text, the one-pass scan, the Link
//!   header. Runs per record, so it is the hot path.
//!
//! `stream` drives a paginator with the client; `ahead` fetches the pages of
//! types that know their total concurrently, handed on in order.

mod ahead;
mod decode;
mod error;
mod http;
mod paginate;
mod stats;
mod stream;
mod types;

pub use decode::{Link, LinkError, PointerError, next_link, parse_links, primary_key_of};
pub use error::{FetchError, FetchErrorKind};
/// A reqwest error without its URL, for the other HTTP callers (metrics push, init).
pub(crate) use http::describe;
pub use http::{HttpClient, HttpOptions, RequestContext};
/// For `init`, which writes a job URL without them.
pub(crate) use paginate::query_params;
pub use paginate::{DecodedPage, Paginator};
pub use stats::{RequestStats, StatsSnapshot};
pub use stream::StreamFetcher;
pub use types::*;

pub(crate) use decode::without_parts;
/// For the fuzz targets in fuzz/ (pointer extraction over raw JSON).
pub use decode::{raw_at, tokens};
