//! What a response says about the next page: the next cursor or URL,
//! `has_more`, and the total records or pages, read from the body or the
//! headers as the job's pagination asks.

use serde_json::Value;
use url::Url;

use super::super::link::next_link;
use super::super::records::BodyView;
use super::super::{DecodeError, PageResponse};
use crate::plan::{JobPlan, PaginationKind};

/// The pagination facts of one response.
#[derive(Debug, Default)]
pub(super) struct Facts {
    pub next_cursor: Option<String>,
    pub next_url: Option<Url>,
    pub has_more: Option<bool>,
    pub total: Option<u64>,
}

fn fatal(message: String) -> DecodeError {
    DecodeError {
        message,
        retryable: false,
    }
}

/// Read the facts. `request_url` resolves a relative `next_url`; a relative
/// Link resolves against the response URL (after redirects).
pub(super) fn read(
    job: &JobPlan,
    body: &BodyView<'_>,
    resp: &PageResponse,
    request_url: &Url,
    last_record: Option<&Value>,
) -> Result<Facts, DecodeError> {
    let mut facts = Facts {
        has_more: match &job.pagination.has_more_path {
            Some(path) => has_more(at(body, path)?, path)?,
            None => None,
        },
        ..Facts::default()
    };
    match &job.pagination.kind {
        PaginationKind::None => {}
        PaginationKind::LinkHeader => {
            facts.next_url =
                next_link(&resp.headers, &resp.url).map_err(|e| fatal(e.to_string()))?;
        }
        PaginationKind::NextUrl { next_url_path } => {
            facts.next_url = match text(at(body, next_url_path)?, next_url_path)? {
                Some(next) => Some(request_url.join(&next).map_err(|e| {
                    fatal(format!(
                        "the next URL {next:?} at {next_url_path} is not a valid URL: {e}"
                    ))
                })?),
                None => None,
            };
        }
        PaginationKind::Cursor {
            cursor_path,
            from_last_record,
            ..
        } => {
            let found = match from_last_record {
                true => last_record.and_then(|r| r.pointer(cursor_path)).cloned(),
                false => at(body, cursor_path)?,
            };
            facts.next_cursor = text(found, cursor_path)?;
        }
        PaginationKind::Offset {
            total_path,
            total_header,
            ..
        } => {
            facts.total = total(body, resp, total_path, total_header)?;
        }
        PaginationKind::Page {
            total_pages_path, ..
        } => {
            facts.total = match total_pages_path {
                Some(path) => count(at(body, path)?, path)?,
                None => None,
            };
        }
    }
    Ok(facts)
}

/// The value at `pointer` in the body, parsed; None when absent.
fn at(body: &BodyView<'_>, pointer: &str) -> Result<Option<Value>, DecodeError> {
    body.at(pointer)?
        .map(|raw| {
            serde_json::from_str(raw)
                .map_err(|e| fatal(format!("the value at {pointer} is not JSON: {e}")))
        })
        .transpose()
}

/// A next token or URL: strings and numbers count; null, absent or ""
/// mean "no next page".
fn text(value: Option<Value>, pointer: &str) -> Result<Option<String>, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(fatal(format!(
            "the value at {pointer} is {other}, not a string (hint: check the pagination pointers)"
        ))),
    }
}

/// `has_more`: a boolean; absent or null mean "continue".
fn has_more(value: Option<Value>, pointer: &str) -> Result<Option<bool>, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(other) => Err(fatal(format!(
            "the value at {pointer} is {other}, not a boolean (hint: check pagination.has_more_path)"
        ))),
    }
}

/// A count: a non-negative integer, or a string of one.
fn count(value: Option<Value>, pointer: &str) -> Result<Option<u64>, DecodeError> {
    let parsed = match &value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    parsed.map(Some).ok_or_else(|| {
        fatal(format!(
            "the value at {pointer} is {}, not a count (hint: check the pagination total pointer)",
            value.unwrap_or(Value::Null)
        ))
    })
}

fn total(
    body: &BodyView<'_>,
    resp: &PageResponse,
    total_path: &Option<String>,
    total_header: &Option<String>,
) -> Result<Option<u64>, DecodeError> {
    if let Some(path) = total_path {
        return count(at(body, path)?, path);
    }
    let Some(name) = total_header else {
        return Ok(None);
    };
    let Some(raw) = resp.headers.get(name.as_str()) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(raw.as_bytes());
    // PostgREST's Content-Range: "0-99/1234" (or "*/1234"); "*" total = unknown.
    let total = text.rsplit('/').next().unwrap_or(&text).trim();
    if total == "*" {
        return Ok(None);
    }
    total.parse().map(Some).map_err(|_| {
        fatal(format!(
            "the {name} header is {text:?}, not a count (hint: check pagination.total_header)"
        ))
    })
}
