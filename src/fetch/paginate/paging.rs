//! The contract between the paginator and the pagination types: the
//! [`Paging`] trait each type's file implements, what a page said
//! ([`DecodedPage`]), and what a type decides the next position from
//! ([`After`]). Called once per page, never per record.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;
use url::Url;

use super::facts::Facts;
use crate::fetch::decode::BodyView;
use crate::fetch::{
    DecodeError, FetchError, FetchErrorKind, NextRequest, PageRequest, PageResponse, Record,
    RequestContext,
};
use crate::plan::PaginationKind;

/// How one pagination type pages. Each type is a view of its variant of
/// the plan's `PaginationKind` (see `paginate::paging_of`), so the job's
/// settings live in one place.
pub(crate) trait Paging<'a> {
    /// Can a saved position of this kind resume the stream? (Every type
    /// resumes at `Start`.)
    fn resumes_at(&self, _next: &NextRequest) -> bool {
        false
    }

    /// Its request parameters for `next` (`Start`, or a position it
    /// `resumes_at`), in the URL's query or the JSON body.
    fn add_params(
        &self,
        _next: &NextRequest,
        _url: &mut Url,
        _body: &mut Option<Value>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// The names of the query parameters it adds (a job URL must not carry
    /// them too: `init` takes them out of the URL it was given).
    fn query_params(&self) -> Vec<&'a str> {
        Vec::new()
    }

    /// The pointer into the body it reads, found in the same one pass over
    /// the body as the records.
    fn body_pointer(&self) -> Option<&'a str> {
        None
    }

    /// True when it reads the page's last record, so records are parsed.
    fn reads_last_record(&self) -> bool {
        false
    }

    /// What one response says about the next page, in this type's terms:
    /// the next cursor or URL, or the total.
    fn facts(&self, _page: &Answer<'_>) -> Result<Facts, DecodeError> {
        Ok(Facts::default())
    }

    /// True when a page's body is kept to compare with the next page's: a
    /// server that ignores the paging parameters answers every page alike.
    fn compares_bodies(&self) -> bool {
        false
    }

    /// The position after a page that did not stop the stream by itself;
    /// None ends the stream.
    fn next(&self, after: &After<'_>) -> Result<Option<NextRequest>, FetchError>;

    /// Whether its pages can be fetched ahead: every request up to a total
    /// the pages give is known before the pages arrive.
    fn fetch_ahead(&self) -> bool {
        false
    }

    /// For fetch-ahead: the position planned after `at`, when pages hold
    /// `per_page` records (None before any page arrived); None at or past
    /// `total`. Asked only of types whose `fetch_ahead` is true.
    fn ahead_of(
        &self,
        _at: &NextRequest,
        _per_page: Option<u64>,
        _total: u64,
    ) -> Option<NextRequest> {
        None
    }
}

/// A saved position from another pagination type (the job file changed).
pub(crate) fn mismatch(kind: &PaginationKind, next: &NextRequest) -> String {
    format!(
        "the saved position {next:?} does not fit pagination type {} (hint: run `apisync reset` for this job after changing its pagination)",
        kind.type_name()
    )
}

/// One response as the types read their facts from it.
pub(crate) struct Answer<'a> {
    pub body: &'a BodyView<'a>,
    pub response: &'a PageResponse,
    /// The URL that was asked for (a relative next URL resolves against it;
    /// a relative Link against the response URL, after redirects).
    pub request_url: &'a Url,
    /// The page's last record, parsed when `reads_last_record`.
    pub last_record: Option<&'a Value>,
}

/// A decoded response: its records and what it says about the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedPage {
    pub records: Vec<Record>,
    /// Records in the page's array (offsets advance by this).
    pub received: u64,
    pub max_seen: Option<Value>,
    /// The next cursor token (cursor pagination).
    pub next_cursor: Option<String>,
    /// The next URL, resolved (link_header, next_url).
    pub next_url: Option<Url>,
    pub has_more: Option<bool>,
    /// The body's value at `stop_path` equals `stop_value`: the last page.
    pub stopped: bool,
    /// Total records (offset) or total pages (page), when the job points at it.
    pub total: Option<u64>,
    pub bytes: u64,
    /// The body (offset and page types only; a cheap shared handle): a
    /// server that ignores its paging parameters answers every page alike.
    pub body: Option<bytes::Bytes>,
}

/// What a type decides the next position from: where the page was asked
/// for, what it said, and the stream's recent cursors and URLs.
pub(crate) struct After<'a> {
    /// The position the page was fetched at.
    pub at: &'a NextRequest,
    pub page: &'a DecodedPage,
    /// The request that fetched the page.
    pub request: &'a PageRequest,
    pub ctx: &'a RequestContext,
    /// Hashes of the stream's recent cursors / next URLs (see `hash_of`).
    pub recent: &'a VecDeque<u64>,
}

impl After<'_> {
    /// Was `value` (a cursor or a stored next URL) among the recent ones?
    pub fn seen_recently(&self, value: &str) -> bool {
        self.recent.contains(&hash_of(value))
    }

    /// A pagination error naming the page's request.
    pub fn error(&self, message: String) -> FetchError {
        self.ctx.error(
            &self.ctx.redact(&self.request.url),
            FetchErrorKind::Pagination { message },
        )
    }
}

/// The hash a cursor or URL is remembered by in the loop window.
pub(crate) fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
