//! What the fetch side hands to the writer: pages of records and the
//! position that follows each page.

use serde::{Deserialize, Serialize};

pub use crate::record::Record;

/// The request that comes next in a stream. Saved as the checkpoint, so it
/// holds no secret: an `api_key` query parameter is stripped from URLs
/// before they get here. Its JSON form is what old databases resume from:
/// never rename a variant or field. The variants are kinds of position,
/// not pagination types (link_header and next_url both resume at a `Url`);
/// each type says which it resumes at (`Paging::resumes_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextRequest {
    /// The job's own first request.
    Start,
    /// An absolute URL, followed as given (next_url, link_header).
    Url {
        url: String,
    },
    /// A cursor token for `cursor_param`.
    Cursor {
        cursor: String,
    },
    Offset {
        offset: u64,
    },
    Page {
        page: u64,
    },
}

/// Where a stream stands: enough to resume it after a crash. Serialized as
/// JSON into the checkpoints table by the store, which never looks inside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub next: NextRequest,
    /// Pages committed so far in this stream (for max_pages).
    pub pages: u64,
    /// The incremental lower bound this stream started with; a resumed
    /// stream keeps asking for the same window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The largest incremental cursor value seen so far in this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seen: Option<serde_json::Value>,
    /// `{now}`: the start of the run that began this stream (RFC 3339). A
    /// resumed stream keeps it, so its later pages ask for the same range
    /// as its first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<String>,
    /// The window this stream is paging through (`{window.start}`,
    /// `{window.end}`), for jobs that fetch by windows: a resumed stream
    /// goes on inside the window it stopped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

/// One incremental window, `[start, end)`, as the cursor's text (RFC 3339
/// for timestamps, decimal for integers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: String,
    pub end: String,
}

impl StreamPosition {
    /// A fresh stream that will ask for records since `since` (if incremental).
    pub fn start(since: Option<String>) -> Self {
        StreamPosition {
            next: NextRequest::Start,
            pages: 0,
            since,
            max_seen: None,
            now: None,
            window: None,
        }
    }

    /// The same, with `{now}` standing for `now` unless the position
    /// already has its own (a resumed stream keeps the range it asked for).
    pub fn at(self, now: chrono::DateTime<chrono::Utc>) -> Self {
        StreamPosition {
            now: self.now.or_else(|| Some(crate::plan::now_text(now))),
            ..self
        }
    }

    /// `at(now)` for a job whose request holds `{now}`; others keep no
    /// time in their checkpoints.
    pub(crate) fn at_if_used(
        self,
        job: &crate::plan::JobPlan,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        match crate::plan::uses_now(&job.request) {
            true => self.at(now),
            false => self,
        }
    }
}

/// One fetched page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The URL that produced the page, secrets redacted (for logs and errors).
    pub url: String,
    pub records: Vec<Record>,
    /// Where the stream continues after this page.
    pub position: StreamPosition,
    /// True when this was the last page: the stream is complete once it commits.
    pub last: bool,
    /// The last page because `max_pages` stopped an incremental window
    /// short: `position` is the window's next page, for a later run.
    pub cut_short: bool,
    /// Bytes of the body, for stats.
    pub bytes: u64,
}

/// One HTTP request of a stream, as pagination built it (credentials are
/// added by the HTTP layer, never here).
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub method: crate::plan::HttpMethod,
    pub url: url::Url,
    /// Job headers, keys exactly as written.
    pub headers: Vec<(String, String)>,
    /// POST only: the JSON body.
    pub body: Option<serde_json::Value>,
    /// The job's `{secret.*}` strings, put in by the HTTP layer.
    pub secrets: SecretParts,
}

/// The strings of a request that hold a `{secret.*}`. They are kept out of
/// the URL, headers and body above, so nothing but the HTTP layer ever
/// holds a secret's value, and it puts one in only for a request to the
/// job's own origin (https, or plain http to loopback): a saved next URL,
/// a printed URL or `Debug` output never carries it.
#[derive(Debug, Clone, Default)]
pub struct SecretParts {
    /// Header name -> value.
    pub(crate) headers: Vec<(String, crate::plan::SecretText)>,
    /// Query parameter -> value: set on every request to the job's origin,
    /// as an auth's api_key parameter is.
    pub(crate) query: Vec<(String, crate::plan::SecretText)>,
    /// JSON pointer of a body string -> value.
    pub(crate) body: Vec<(String, crate::plan::SecretText)>,
}

impl SecretParts {
    pub(crate) fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.body.is_empty()
    }
}

/// A successful (2xx) response, body fully read within `max_page_bytes`.
#[derive(Debug, Clone)]
pub struct PageResponse {
    /// The URL that answered, after redirects (relative Link URIs resolve against it).
    pub url: url::Url,
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

/// Why a page that arrived could not be used. Produced by pagination's
/// decode step inside the HTTP layer's retry loop; `retryable` says whether
/// fetching the page again could help (truncated JSON: yes; a records path
/// that is not an array: no).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub message: String,
    pub retryable: bool,
}
