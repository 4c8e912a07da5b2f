//! From a response body to `Record`s: the records array found by pointer,
//! each record's text kept exactly as received, its primary key and
//! declared columns extracted, and the incremental cursor's running max.
//!
//! Everything here runs inside the HTTP layer's retry loop, so each error
//! says whether fetching the page again could help.

use std::cmp::Ordering;

use chrono::DateTime;
use serde_json::Value;
use serde_json::value::RawValue;

use super::pointer::{describe, raw_at, raw_elements, tokens};
use super::{DecodeError, PageResponse, Record};
use crate::plan::{CursorType, IncrementalPlan, JobPlan, OnMissingCursor, PaginationKind};

mod scan;

/// How many characters of an unexpected body an error quotes.
const QUOTE_CHARS: usize = 60;

/// Most levels of arrays and objects a page may nest. Real APIs stay far
/// below; a server that sends thousands of `[` is broken or hostile, and
/// serde_json would refuse it anyway at 128 with a vaguer message. Checked
/// before parsing, so the error says what happened.
pub const MAX_NESTING: usize = 100;

/// The records of one page, and what pagination and incremental need of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRecords {
    pub records: Vec<Record>,
    /// Records in the array, including ones skipped for a missing cursor:
    /// offsets advance by what the server sent.
    pub received: u64,
    /// The last record of the array, parsed (for `cursor_from = "last_record"`;
    /// None when the job takes its cursor from elsewhere and needs no parse).
    pub last: Option<Value>,
    /// The largest incremental cursor value of this page.
    pub max_seen: Option<Value>,
}

fn fatal(message: String) -> DecodeError {
    DecodeError {
        message,
        retryable: false,
    }
}

/// The body as a raw JSON value. A body that is not JSON may be a
/// truncated read (retryable); an HTML page at 200 is a wrong URL or a
/// login page, which fetching again will not fix.
pub fn parse_body(resp: &PageResponse) -> Result<&RawValue, DecodeError> {
    if let Some(at) = too_deep(&resp.body, MAX_NESTING) {
        return Err(fatal(format!(
            "the body nests arrays or objects deeper than {MAX_NESTING} levels (at byte {at}); apisync refuses such pages (hint: check what the server sends; no job setting raises this limit)"
        )));
    }
    // JSON is UTF-8 (RFC 8259 section 8.1). A body with an invalid byte
    // arrived whole, so fetching it again returns the same bytes: not
    // retried. One that ends inside a character may be cut short: that one
    // is read as "not JSON", which is retried.
    let text = match std::str::from_utf8(&resp.body) {
        Ok(text) => text,
        Err(e) if e.error_len().is_some() => return Err(not_utf8(resp, &e)),
        Err(e) => return Err(not_json(resp, &e.to_string())),
    };
    serde_json::from_str::<&RawValue>(text).map_err(|e| not_json(resp, &e.to_string()))
}

fn not_utf8(resp: &PageResponse, error: &std::str::Utf8Error) -> DecodeError {
    let at = error.valid_up_to();
    let bad: Vec<String> = resp.body[at..]
        .iter()
        .take(error.error_len().unwrap_or(4))
        .map(|b| format!("{b:#04x}"))
        .collect();
    let charset = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| format!(" (Content-Type: {})", String::from_utf8_lossy(v.as_bytes())))
        .unwrap_or_default();
    fatal(format!(
        "the body is not UTF-8: invalid byte(s) {} at byte {at}{charset}; JSON must be UTF-8 (hint: the API sends another encoding; ask it for UTF-8, e.g. an Accept-Charset: utf-8 header in request.headers)",
        bad.join(" ")
    ))
}

/// The byte offset where `body` first opens a level deeper than `limit`,
/// counting `[` and `{` outside strings. Cheap next to parsing, and it works
/// on bodies that are not valid JSON (those fail later, more precisely).
pub fn too_deep(body: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, byte) in body.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(at);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn not_json(resp: &PageResponse, reason: &str) -> DecodeError {
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // Scrubbed before the cut, so no credential is cut in two (see quote).
    let start: String = crate::secret::scrub(&String::from_utf8_lossy(&resp.body))
        .trim_start()
        .chars()
        .take(QUOTE_CHARS)
        .collect();
    let html =
        content_type.as_deref().is_some_and(|t| t.contains("html")) || start.starts_with('<');
    if html {
        let kind = content_type.unwrap_or_else(|| "markup".into());
        return fatal(format!(
            "expected JSON, got {kind}: {start}... (hint: check request.url; a proxy or login page may be answering)"
        ));
    }
    DecodeError {
        message: format!("the body is not JSON ({reason}); it starts with {start:?}"),
        retryable: true,
    }
}

/// Fail a page whose `records.error_path` is present and not null.
pub fn check_error(body: &RawValue, job: &JobPlan) -> Result<(), DecodeError> {
    let Some(path) = &job.records.error_path else {
        return Ok(());
    };
    let found = raw_at(body, &tokens(path).map_err(|e| fatal(e.to_string()))?);
    error_at(job, path, found.map(RawValue::get))
}

/// [`check_error`] once the value at `records.error_path` is found.
fn error_at(job: &JobPlan, path: &str, found: Option<&str>) -> Result<(), DecodeError> {
    match found {
        Some(raw) if raw != "null" => Err(DecodeError {
            message: format!(
                "the page reports an error at {path}: {} (hint: records.error_retry decides whether such pages are retried)",
                quote(raw)
            ),
            retryable: job.records.error_retry,
        }),
        _ => Ok(()),
    }
}

/// The first characters of server text, scrubbed before the cut: scrubbed
/// after it, a credential the server placed across the cut would show all
/// but its last characters.
fn quote(text: &str) -> String {
    let text = crate::secret::scrub(text);
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    out
}

/// The elements of the records array at `records.path`.
pub fn records_array<'a>(
    body: &'a RawValue,
    job: &JobPlan,
) -> Result<Vec<&'a RawValue>, DecodeError> {
    let path = &job.records.path;
    let shown = if path.is_empty() { "the body" } else { path };
    let found =
        raw_at(body, &tokens(path).map_err(|e| fatal(e.to_string()))?).ok_or_else(|| {
            fatal(format!(
                "the records path {shown} is missing from the body (hint: check records.path)"
            ))
        })?;
    raw_elements(found).ok_or_else(|| {
        fatal(format!(
            "the records path {shown} is {}, not an array (hint: check records.path)",
            describe(found)
        ))
    })
}

/// Build the page's records: text as received, pk, columns, cursor max.
///
/// A record is parsed into a `Value` only when something reads more of it
/// than its key: declared columns, an incremental cursor, or a next cursor
/// taken from the last record. Otherwise (the common case, and the bound of
/// a sequential sync) the key values are found in the raw text and only
/// they are parsed; the stored text and the `_pk` text are the same either
/// way.
pub fn build_records(items: &[&str], job: &JobPlan) -> Result<PageRecords, DecodeError> {
    match raw_key_pointers(job) {
        Some(pointers) => build_keyed(items, |index, raw| raw_primary_key(&pointers, raw, index)),
        None => build_parsed(items, job),
    }
}

/// A page read from its response: the records, and a view of the body for
/// the pagination facts.
pub fn read_page<'a>(
    resp: &'a PageResponse,
    job: &'a JobPlan,
) -> Result<(PageRecords, BodyView<'a>), DecodeError> {
    if let Some(read) = read_in_one_pass(resp, job) {
        return read;
    }
    let body = parse_body(resp)?;
    check_error(body, job)?;
    let items: Vec<&str> = records_array(body, job)?
        .into_iter()
        .map(RawValue::get)
        .collect();
    Ok((build_records(&items, job)?, BodyView::Raw(body)))
}

/// The body as the pagination facts read it.
#[derive(Debug)]
pub enum BodyView<'a> {
    /// The whole body as a raw value (the general path).
    Raw(&'a RawValue),
    /// What one pass found at each of the job's pagination pointers, and
    /// the body's text (valid JSON) for any other pointer.
    Scanned {
        text: &'a str,
        found: Vec<(&'a str, Option<&'a str>)>,
    },
}

impl<'a> BodyView<'a> {
    /// The raw text of the value at `pointer`; None when absent.
    pub fn at(&self, pointer: &str) -> Result<Option<&'a str>, DecodeError> {
        let raw = match self {
            BodyView::Raw(raw) => raw,
            BodyView::Scanned { text, found } => {
                if let Some((_, value)) = found.iter().find(|(p, _)| *p == pointer) {
                    return Ok(*value);
                }
                // Not one of the pointers scanned for: read the body again.
                &serde_json::from_str::<&RawValue>(text).map_err(|e| fatal(e.to_string()))?
            }
        };
        let tokens = tokens(pointer).map_err(|e| fatal(e.to_string()))?;
        Ok(raw_at(raw, &tokens).map(RawValue::get))
    }
}

/// The pointers into the body that the pagination facts read (see
/// `paginate::facts`), and the error path.
fn body_pointers(job: &JobPlan) -> impl Iterator<Item = &str> {
    let kind = match &job.pagination.kind {
        PaginationKind::NextUrl { next_url_path } => Some(next_url_path),
        PaginationKind::Cursor {
            cursor_path,
            from_last_record: false,
            ..
        } => Some(cursor_path),
        PaginationKind::Offset { total_path, .. } => total_path.as_ref(),
        PaginationKind::Page {
            total_pages_path, ..
        } => total_pages_path.as_ref(),
        _ => None,
    };
    [
        job.records.error_path.as_ref(),
        job.pagination.has_more_path.as_ref(),
        kind,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
}

/// [`read_page`] by [`scan::scan`]: one pass over the body for the records,
/// their keys and the pagination pointers. None when the pass cannot tell
/// (it then gives way to the general path, which reports any error).
fn read_in_one_pass<'a>(
    resp: &'a PageResponse,
    job: &'a JobPlan,
) -> Option<Result<(PageRecords, BodyView<'a>), DecodeError>> {
    let text = std::str::from_utf8(&resp.body).ok()?;
    let pointers: Vec<&str> = std::iter::once(job.records.path.as_str())
        .chain(body_pointers(job))
        .collect();
    let tokenized: Vec<Vec<String>> = pointers
        .iter()
        .map(|p| tokens(p).ok())
        .collect::<Option<_>>()?;
    let body: Vec<&[String]> = tokenized.iter().map(Vec::as_slice).collect();
    let keys = raw_key_pointers(job);
    let key_tokens: Vec<&[String]> = keys
        .iter()
        .flatten()
        .map(|(_, tokens)| tokens.as_slice())
        .collect();
    let scanned = scan::scan(text, &body, &key_tokens)?;
    let found: Vec<(&str, Option<&str>)> = pointers[1..]
        .iter()
        .copied()
        .zip(scanned.found[1..].iter().copied())
        .collect();
    if let Some(path) = &job.records.error_path {
        let at = found.iter().find(|(p, _)| p == path).and_then(|(_, f)| *f);
        if let Err(err) = error_at(job, path, at) {
            return Some(Err(err));
        }
    }
    let records = match &keys {
        Some(pointers) => {
            // The one pass kept each item's key values, `pointers.len()` an item.
            let width = pointers.len();
            build_keyed(&scanned.items, |index, _| {
                key_text(
                    pointers,
                    &scanned.keys[index * width..(index + 1) * width],
                    index,
                )
            })
        }
        None => build_parsed(&scanned.items, job),
    };
    Some(records.map(|records| (records, BodyView::Scanned { text, found })))
}

/// The primary key pointers as tokens when the job needs nothing but the
/// key from a record; None when records must be parsed (or a pointer does
/// not parse: the slow path then reports it as it always has).
fn raw_key_pointers(job: &JobPlan) -> Option<Vec<(&str, Vec<String>)>> {
    let last_record = matches!(
        job.pagination.kind,
        PaginationKind::Cursor {
            from_last_record: true,
            ..
        }
    );
    if !job.output.columns.is_empty() || job.incremental.is_some() || last_record {
        return None;
    }
    job.records
        .primary_key
        .iter()
        .map(|p| tokens(p).ok().map(|t| (p.as_str(), t)))
        .collect()
}

/// The fast path: no `Value` of the record, only its primary key, which
/// `key_of(index, raw)` reads (from the raw text, or from what the one pass
/// over the body found).
fn build_keyed(
    items: &[&str],
    mut key_of: impl FnMut(usize, &str) -> Result<Option<String>, DecodeError>,
) -> Result<PageRecords, DecodeError> {
    let mut records = Vec::with_capacity(items.len());
    for (index, raw) in items.iter().enumerate() {
        records.push(Record {
            json: raw.to_string(),
            pk: key_of(index, raw)?,
            columns: Vec::new(),
        });
    }
    Ok(PageRecords {
        records,
        received: items.len() as u64,
        // Nothing reads the last record when the cursor is not taken from it.
        last: None,
        max_seen: None,
    })
}

/// The slow path: each record parsed once into a `Value`.
fn build_parsed(items: &[&str], job: &JobPlan) -> Result<PageRecords, DecodeError> {
    let pointers = key_pointers(job)?;
    let mut page = PageRecords {
        received: items.len() as u64,
        ..PageRecords::default()
    };
    for (index, raw) in items.iter().enumerate() {
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| fatal(format!("record {index} of the page is not valid JSON: {e}")))?;
        let keep = match &job.incremental {
            Some(inc) => track_cursor(inc, &value, index, &mut page.max_seen)?,
            None => true,
        };
        if keep {
            page.records.push(Record {
                json: raw.to_string(),
                pk: raw_primary_key(&pointers, raw, index)?,
                columns: job
                    .output
                    .columns
                    .iter()
                    .map(|c| value.pointer(&c.pointer).cloned().unwrap_or(Value::Null))
                    .collect(),
            });
        }
        if index + 1 == items.len() {
            page.last = Some(value);
        }
    }
    Ok(page)
}

fn missing_key(index: usize, pointer: &str) -> DecodeError {
    fatal(format!(
        "record {index} of the page has no primary key value at {pointer} (hint: check records.primary_key)"
    ))
}

/// The `_pk` that `job`'s primary key makes of the record `raw`, exactly
/// as a page's records get it: the run compares it with a stored row's to
/// notice a primary key changed in the job file.
pub fn primary_key_of(job: &JobPlan, raw: &str) -> Result<Option<String>, DecodeError> {
    raw_primary_key(&key_pointers(job)?, raw, 0)
}

/// The primary key pointers as tokens, for the path that parses records:
/// the key is read from the raw text there too, so both paths write the
/// same `_pk` (integers exactly as sent, see [`canonical_into`]).
fn key_pointers(job: &JobPlan) -> Result<Vec<(&str, Vec<String>)>, DecodeError> {
    job.records
        .primary_key
        .iter()
        .map(|p| {
            tokens(p)
                .map(|t| (p.as_str(), t))
                .map_err(|e| fatal(format!("records.primary_key {p:?}: {e}")))
        })
        .collect()
}

/// The canonical JSON array of the key values (`[1]` and `["1"]` differ),
/// read from the raw record.
fn raw_primary_key(
    pointers: &[(&str, Vec<String>)],
    raw: &str,
    index: usize,
) -> Result<Option<String>, DecodeError> {
    if pointers.is_empty() {
        return Ok(None);
    }
    // The items are slices of a body already checked as JSON.
    let raw: &RawValue = serde_json::from_str(raw)
        .map_err(|e| fatal(format!("record {index} of the page is not valid JSON: {e}")))?;
    let found: Vec<Option<&str>> = pointers
        .iter()
        .map(|(_, tokens)| raw_at(raw, tokens).map(RawValue::get))
        .collect();
    key_text(pointers, &found, index)
}

/// The `_pk` text from each key pointer's raw value (`found`, in pointer
/// order), in [`canonical_into`]'s form.
fn key_text(
    pointers: &[(&str, Vec<String>)],
    found: &[Option<&str>],
    index: usize,
) -> Result<Option<String>, DecodeError> {
    if pointers.is_empty() {
        return Ok(None);
    }
    // One allocation: canonical parts are mostly as long as found.
    let length: usize = found.iter().map(|part| part.map_or(0, str::len) + 1).sum();
    let mut out = String::with_capacity(length + 1);
    out.push('[');
    for (n, ((pointer, _), part)) in pointers.iter().zip(found).enumerate() {
        let part = (*part)
            .filter(|text| *text != "null")
            .ok_or_else(|| missing_key(index, pointer))?;
        if n > 0 {
            out.push(',');
        }
        canonical_into(&mut out, part, index)?;
    }
    out.push(']');
    Ok(Some(out))
}

/// Append the canonical text of the JSON `text`: compact, strings with
/// serde_json's escapes, object members sorted by key (the last of a
/// repeated key wins), as `Value`'s `to_string` writes them, except that an
/// integer is copied exactly as sent, whatever its size: ids beyond 2^64
/// (or 2^53, where other tools lose them) must not meet in an `f64`, or two
/// records would share one key. Other numbers (fractions, exponents) keep
/// the shortest `f64` form they always had, so existing keys do not change.
fn canonical_into(out: &mut String, text: &str, index: usize) -> Result<(), DecodeError> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let bytes = text.as_bytes();
    let invalid =
        |e: serde_json::Error| fatal(format!("record {index} of the page is not valid JSON: {e}"));
    match bytes.first() {
        Some(b'"') if !bytes.contains(&b'\\') => out.push_str(text),
        Some(b'"') => {
            let value: String = serde_json::from_str(text).map_err(invalid)?;
            out.push_str(&Value::String(value).to_string());
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical_into(out, item.get(), index)?;
            }
            out.push(']');
        }
        Some(b'{') => {
            let members: std::collections::BTreeMap<String, &RawValue> =
                serde_json::from_str(text).map_err(invalid)?;
            out.push('{');
            for (n, (key, item)) in members.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_into(out, item.get(), index)?;
            }
            out.push('}');
        }
        _ if is_integer_literal(bytes) => out.push_str(text),
        _ => {
            let value: Value = serde_json::from_str(text).map_err(invalid)?;
            out.push_str(&value.to_string());
        }
    }
    Ok(())
}

/// A JSON integer as the grammar writes it: an optional `-`, then `0` or
/// digits without a leading zero.
fn is_integer_literal(bytes: &[u8]) -> bool {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0')
}

/// Fold the record's cursor into `max`; false when the record is skipped
/// for a missing cursor (`on_missing_cursor = "skip"`).
fn track_cursor(
    inc: &IncrementalPlan,
    value: &Value,
    index: usize,
    max: &mut Option<Value>,
) -> Result<bool, DecodeError> {
    let cursor = value.pointer(&inc.cursor_field).filter(|v| !v.is_null());
    let Some(cursor) = cursor else {
        return match inc.on_missing_cursor {
            OnMissingCursor::Skip => Ok(false),
            OnMissingCursor::Error => Err(fatal(format!(
                "record {index} of the page has no incremental cursor at {} (hint: set incremental.on_missing_cursor = \"skip\" to drop such records)",
                inc.cursor_field
            ))),
        };
    };
    let cursor = normalize(inc.cursor_type, cursor).ok_or_else(|| {
        fatal(format!(
            "record {index} of the page has {cursor} at {}, which is not a {} (hint: check incremental.cursor_type)",
            inc.cursor_field,
            type_name(inc.cursor_type)
        ))
    })?;
    if max
        .as_ref()
        .is_none_or(|m| compare(inc.cursor_type, &cursor, m) == Ordering::Greater)
    {
        *max = Some(cursor);
    }
    Ok(true)
}

fn type_name(kind: CursorType) -> &'static str {
    match kind {
        CursorType::Timestamp => "RFC 3339 timestamp",
        CursorType::Integer => "integer",
        CursorType::String => "string",
    }
}

/// The cursor as it is kept in `max_seen`: the original string for
/// timestamps and strings, a number for integers (a numeric string is
/// accepted: many APIs quote large ids).
pub fn normalize(kind: CursorType, value: &Value) -> Option<Value> {
    match kind {
        CursorType::Timestamp => {
            let text = value.as_str()?;
            DateTime::parse_from_rfc3339(text).ok()?;
            Some(value.clone())
        }
        CursorType::Integer => match value {
            Value::Number(n) => n.as_i64().map(Value::from),
            Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
            _ => None,
        },
        CursorType::String => value.as_str().map(|_| value.clone()),
    }
}

/// Order two normalized cursors: timestamps as instants (offsets count),
/// integers as numbers, strings byte-wise. Unreadable values sort first.
pub fn compare(kind: CursorType, a: &Value, b: &Value) -> Ordering {
    match kind {
        CursorType::Timestamp => {
            let at = |v: &Value| {
                v.as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            };
            at(a).cmp(&at(b))
        }
        CursorType::Integer => a.as_i64().cmp(&b.as_i64()),
        CursorType::String => a.as_str().cmp(&b.as_str()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::*;
    use serde_json::json;
    use std::time::Duration;

    /// A job with the given pagination, records at /data, pk /id.
    pub(crate) fn job(kind: PaginationKind) -> JobPlan {
        JobPlan {
            name: "orders".into(),
            file: "jobs/orders.toml".into(),
            description: None,
            auth: None,
            schedule: None,
            depends_on: vec![],
            tags: vec![],
            request: RequestPlan {
                url: "http://127.0.0.1:9/v1/orders".into(),
                method: HttpMethod::Get,
                query: vec![("Limit".into(), "2".into())],
                headers: vec![("Accept".into(), "application/json".into())],
                body: None,
                timeout: Duration::from_secs(30),
            },
            pagination: PaginationPlan {
                kind,
                has_more_path: None,
                max_pages: 0,
                allow_cross_origin: false,
            },
            records: RecordsPlan {
                path: "/data".into(),
                primary_key: vec!["/id".into()],
                error_path: None,
                error_retry: false,
                max_page_bytes: 1 << 20,
            },
            incremental: None,
            partitions: None,
            output: OutputPlan {
                table: "orders".into(),
                mode: WriteMode::Merge,
                columns: vec![ColumnPlan {
                    name: "total".into(),
                    pointer: "/amount/total".into(),
                }],
            },
            retry: RetryPlan::default(),
        }
    }

    pub(crate) fn incremental(kind: CursorType) -> IncrementalPlan {
        IncrementalPlan {
            cursor_field: "/updated_at".into(),
            cursor_type: kind,
            param: "updated_since".into(),
            param_in: ParamLocation::Query,
            initial: None,
            lookback: None,
            on_missing_cursor: OnMissingCursor::Error,
        }
    }

    pub(crate) fn response(body: &str, content_type: &str) -> PageResponse {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        PageResponse {
            url: url::Url::parse("http://127.0.0.1:9/v1/orders").unwrap(),
            status: 200,
            headers,
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    fn decode(job: &JobPlan, body: &str) -> Result<PageRecords, DecodeError> {
        let resp = response(body, "application/json");
        let read = read_page(&resp, job).map(|(page, _)| page);
        assert_eq!(
            read.clone().map_err(|e| (e.message.clone(), e.retryable)),
            general_path(&resp, job).map_err(|e| (e.message, e.retryable)),
            "one pass and the general path differ on {body}"
        );
        read
    }

    /// What `read_page` did before the one-pass walker: parse, error path,
    /// records array, records.
    pub(crate) fn general_path(
        resp: &PageResponse,
        job: &JobPlan,
    ) -> Result<PageRecords, DecodeError> {
        let raw = parse_body(resp)?;
        check_error(raw, job)?;
        let items: Vec<&str> = records_array(raw, job)?
            .into_iter()
            .map(RawValue::get)
            .collect();
        build_records(&items, job)
    }

    #[test]
    fn records_keep_their_text_pk_and_columns() {
        let body = r#"{"data":[ {"id": 1, "amount": {"total": 9.50}} , {"id":"1","x":[1, 2]} ]}"#;
        let page = decode(&job(PaginationKind::None), body).unwrap();
        assert_eq!(
            page.records[0].json,
            r#"{"id": 1, "amount": {"total": 9.50}}"#
        );
        assert_eq!(page.records[0].pk.as_deref(), Some("[1]"));
        assert_eq!(page.records[1].pk.as_deref(), Some(r#"["1"]"#));
        assert_eq!(page.records[0].columns, [json!(9.5)]);
        assert_eq!(page.records[1].columns, [Value::Null]);
        assert_eq!(page.received, 2);
        assert_eq!(page.last, Some(json!({"id":"1","x":[1,2]})));
    }

    /// The key as `Value` writes it: the oracle for keys whose numbers fit
    /// an `i64`, `u64` or `f64` exactly.
    fn primary_key(
        pointers: &[String],
        value: &Value,
        index: usize,
    ) -> Result<Option<String>, DecodeError> {
        if pointers.is_empty() {
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(pointers.len());
        for pointer in pointers {
            match value.pointer(pointer) {
                Some(part) if !part.is_null() => parts.push(part.clone()),
                _ => return Err(missing_key(index, pointer)),
            }
        }
        Ok(Some(Value::Array(parts).to_string()))
    }

    #[test]
    fn a_body_that_is_not_utf8_is_a_final_error_with_its_offset() {
        let mut body = br#"{"data":[{"id":1,"name":"caf"#.to_vec();
        body.extend_from_slice(&[0xe9, b'"', b'}', b']', b'}']); // Latin-1 'é'
        let resp = PageResponse {
            url: "http://127.0.0.1:9/v1/orders".parse().unwrap(),
            status: 200,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body),
        };
        let err = read_page(&resp, &job(PaginationKind::None)).unwrap_err();
        assert!(!err.retryable, "fetching again returns the same bytes");
        assert!(
            err.message
                .starts_with("the body is not UTF-8: invalid byte(s) 0xe9 at byte 28;"),
            "{}",
            err.message
        );
    }

    #[test]
    fn integers_beyond_f64_keep_distinct_keys_on_every_path() {
        // Two ids that meet as the same f64 (and beyond u64), alone and nested.
        let body = r#"{"data":[{"id":12345678901234567890123,"c":{"k":[98765432109876543210987]}},{"id":12345678901234567890124,"c":{"k":[98765432109876543210986]}},{"id":-9223372036854775809,"c":{"k":[1.50]}}]}"#;
        let expected = [
            (
                "[12345678901234567890123]",
                "[{\"k\":[98765432109876543210987]}]",
            ),
            (
                "[12345678901234567890124]",
                "[{\"k\":[98765432109876543210986]}]",
            ),
            ("[-9223372036854775809]", "[{\"k\":[1.5]}]"),
        ];
        for (pointer, column) in [("/id", 0), ("/c", 1)] {
            let keys = |plan: &JobPlan| -> Vec<String> {
                let resp = PageResponse {
                    url: "http://127.0.0.1:9/v1/orders".parse().unwrap(),
                    status: 200,
                    headers: http::HeaderMap::new(),
                    body: bytes::Bytes::from(body),
                };
                let (page, _) = read_page(&resp, plan).unwrap();
                page.records.iter().map(|r| r.pk.clone().unwrap()).collect()
            };
            let mut plan = job(PaginationKind::None);
            plan.records.primary_key = vec![pointer.into()];
            plan.output.columns.clear();
            let raw = keys(&plan);
            // Declared columns make records parse: the key must not change.
            plan.output.columns = vec![crate::plan::ColumnPlan {
                name: "c".into(),
                pointer: "/c".into(),
            }];
            let parsed = keys(&plan);
            let want: Vec<&str> = expected
                .iter()
                .map(|e| if column == 0 { e.0 } else { e.1 })
                .collect();
            assert_eq!(raw, want, "raw path, key {pointer}");
            assert_eq!(parsed, want, "parsing path, key {pointer}");
        }
    }

    /// The pk (or the error message) of each record, by the raw path and by
    /// the parsed path.
    type Keys = Vec<Result<Option<String>, String>>;

    fn both_paths(items: &[&str], pointers: &[&str]) -> (Keys, Keys) {
        let mut plan = job(PaginationKind::None);
        plan.output.columns.clear();
        plan.records.primary_key = pointers.iter().map(|p| p.to_string()).collect();
        let tokens = raw_key_pointers(&plan).expect("the job takes the raw path");
        let mut fast = Vec::new();
        let mut slow = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let raw: &RawValue = serde_json::from_str(item).unwrap();
            fast.push(raw_primary_key(&tokens, raw.get(), index).map_err(|e| e.message));
            let value: Value = serde_json::from_str(item).unwrap();
            slow.push(primary_key(&plan.records.primary_key, &value, index).map_err(|e| e.message));
        }
        (fast, slow)
    }

    #[test]
    fn raw_and_parsed_primary_keys_are_byte_identical() {
        let records = [
            r#"{"id": 1}"#,
            r#"{"id": "1"}"#,
            r#"{"id": 0}"#,
            r#"{"id": -0}"#,
            r#"{"id": -5}"#,
            r#"{"id": 9999999999999999999}"#,
            r#"{"id": 18446744073709551615}"#,
            r#"{"id": 18446744073709551616}"#,
            r#"{"id": 123456789012345678901234567890}"#,
            r#"{"id": 1.50}"#,
            r#"{"id": 1e3}"#,
            r#"{"id": 1E+2}"#,
            r#"{"id": -1.0e-2}"#,
            r#"{"id": 0.1}"#,
            r#"{"id": "a\"b\\c\/d"}"#,
            r#"{"id": "tab\tnew\nline\u0001"}"#,
            r#"{"id": "\u00e9t\u00E9"}"#,
            "{\"id\": \"été 日本 😀 \u{7f}\"}",
            r#"{"id": "\ud83d\ude00"}"#,
            r#"{"id": "\u007f"}"#,
            r#"{"id": ""}"#,
            r#"{"id": true}"#,
            r#"{"id": false}"#,
            r#"{"id": null}"#,
            r#"{"x": 1}"#,
            r#"{"id": [1, "1", {"b": 2, "a": [null, 1.0]}]}"#,
            r#"{"id": {"z": 1, "a": {"k": "v"}, "m": []}}"#,
            r#"{ "id" : 7 , "id": 8 }"#,
            r#"{"\u0069d": "escaped key"}"#,
            r#"{"id": {}}"#,
        ];
        let (fast, slow) = both_paths(&records, &["/id"]);
        // Integers beyond u64 (and -0) are kept as sent, where `Value` goes
        // through an f64 and would give distinct ids one key.
        let exact = [
            (3, "[-0]"),
            (7, "[18446744073709551616]"),
            (8, "[123456789012345678901234567890]"),
        ];
        for (n, key) in exact {
            assert_eq!(fast[n], Ok(Some(key.to_string())), "record {n}");
        }
        for (n, (fast, slow)) in fast.iter().zip(&slow).enumerate() {
            if exact.iter().all(|(e, _)| *e != n) {
                assert_eq!(fast, slow, "record {n}");
            }
        }
        // The cases that say what the comparison is about.
        let pk = |n: usize| fast[n].clone().unwrap().unwrap();
        assert_eq!(pk(0), "[1]");
        assert_eq!(pk(1), r#"["1"]"#);
        assert_eq!(pk(9), "[1.5]");
        assert_eq!(pk(14), r#"["a\"b\\c/d"]"#);
        assert_eq!(pk(16), r#"["été"]"#);
        assert_eq!(pk(27), "[8]");
        assert_eq!(pk(28), r#"["escaped key"]"#);
        let err = |n: usize| fast[n].clone().unwrap_err();
        assert!(err(23).contains("record 23 of the page has no primary key value at /id"));
        assert!(err(24).contains("record 24"));

        let composite = [
            r#"{"a": "x", "b": {"c": 2}}"#,
            r#"{"a": "x\u0041", "b": {"c": [2.50, "y"]}}"#,
            r#"{"a": "x", "b": {"c": null}}"#,
            r#"{"a": "x", "b": [1]}"#,
            r#"{"a": 1, "b": {"c": "1"}, "a~/b": {"": 3}}"#,
        ];
        let (fast, slow) = both_paths(&composite, &["/a", "/b/c", "/a~0~1b/"]);
        assert_eq!(fast, slow);
        assert_eq!(fast[4].clone().unwrap().unwrap(), r#"[1,"1",3]"#);
        let (fast, slow) = both_paths(&composite, &["/a", "/b/c"]);
        assert_eq!(fast, slow);
        assert_eq!(fast[1].clone().unwrap().unwrap(), r#"["xA",[2.5,"y"]]"#);
        assert!(fast[2].clone().unwrap_err().contains("record 2"));
        let (fast, slow) = both_paths(&composite, &[]);
        assert_eq!(fast, vec![Ok(None); 5]);
        assert_eq!(fast, slow);
    }

    /// Every character written as a \u escape (surrogate pairs above the
    /// BMP): text that is valid JSON but far from canonical.
    fn escaped(text: &str) -> String {
        let mut out = String::from("\"");
        for unit in text.encode_utf16() {
            out.push_str(&format!("\\u{unit:04x}"));
        }
        out.push('"');
        out
    }

    /// Generated key values: any string (plain and fully escaped), any
    /// integer, any finite float, nested.
    mod generated {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn raw_primary_keys_match_parsed_ones(
                text in "\\PC{0,8}|[\"\\\\/\u{0}-\u{1f}a1]{0,6}",
                int in any::<i64>(),
                big in any::<u64>(),
                float in any::<f64>().prop_filter("finite", |f| f.is_finite()),
            ) {
                let plain = serde_json::to_string(&text).unwrap();
                let records = [
                    format!(r#"{{"id": {plain}}}"#),
                    format!(r#"{{"id": {}}}"#, escaped(&text)),
                    format!(r#"{{"id": {int}, "n": {{"id": {big}}}}}"#),
                    format!(r#"{{"id": {big}}}"#),
                    format!(r#"{{"id": {float:e}}}"#),
                    // `{float:?}` always writes a fraction or an exponent:
                    // an integer literal is a key's exact text by design.
                    format!(r#"{{"id": [{float:?}, {plain}, {{"k": {int}}}]}}"#),
                ];
                let items: Vec<&str> = records.iter().map(String::as_str).collect();
                let (fast, slow) = both_paths(&items, &["/id"]);
                prop_assert_eq!(fast, slow);
                let (fast, slow) = both_paths(&items, &["/id", "/n/id"]);
                prop_assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn only_jobs_that_read_nothing_but_the_key_skip_the_parse() {
        let mut plan = job(PaginationKind::None);
        let body = r#"{"data":[{"id":1,"amount":{"total":2}},{"id":"1"}]}"#;
        // Declared columns need the parsed record.
        assert!(raw_key_pointers(&plan).is_none());
        let parsed = decode(&plan, body).unwrap();
        assert_eq!(parsed.last, Some(json!({"id": "1"})));
        plan.output.columns.clear();
        assert!(raw_key_pointers(&plan).is_some());
        let raw = decode(&plan, body).unwrap();
        assert_eq!(raw.last, None);
        assert_eq!(raw.received, 2);
        for (a, b) in raw.records.iter().zip(&parsed.records) {
            assert_eq!((&a.json, &a.pk), (&b.json, &b.pk));
            assert!(a.columns.is_empty());
        }
        assert_eq!(raw.records[0].json, r#"{"id":1,"amount":{"total":2}}"#);
        // An incremental cursor or a cursor from the last record needs it too.
        plan.incremental = Some(incremental(CursorType::Integer));
        assert!(raw_key_pointers(&plan).is_none());
        plan.incremental = None;
        let cursor = |from_last_record| PaginationKind::Cursor {
            cursor_path: "/id".into(),
            cursor_param: "cursor".into(),
            cursor_in: ParamLocation::Query,
            from_last_record,
        };
        plan.pagination.kind = cursor(true);
        assert!(raw_key_pointers(&plan).is_none());
        assert_eq!(decode(&plan, body).unwrap().last, Some(json!({"id": "1"})));
        plan.pagination.kind = cursor(false);
        assert!(raw_key_pointers(&plan).is_some());
        // A pointer that is not RFC 6901 takes the parsed path, which names it.
        plan.records.primary_key = vec!["id".into()];
        assert!(raw_key_pointers(&plan).is_none());
        let err = decode(&plan, body).unwrap_err();
        assert!(
            err.message.starts_with("records.primary_key \"id\": "),
            "{}",
            err.message
        );
    }

    #[test]
    fn raw_path_keeps_missing_key_nesting_and_error_path_errors() {
        let mut plan = job(PaginationKind::None);
        plan.output.columns.clear();
        let err = decode(&plan, r#"{"data":[{"id":1},{"id":2},{"id":null}]}"#).unwrap_err();
        assert!(!err.retryable);
        assert_eq!(
            err.message,
            "record 2 of the page has no primary key value at /id (hint: check records.primary_key)"
        );
        let nested = |levels: usize| {
            format!(
                r#"{{"data":[{{"id":{}1{}}}]}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        let err = decode(&plan, &nested(MAX_NESTING - 2)).unwrap_err();
        assert!(
            err.message.contains("deeper than 100 levels"),
            "{}",
            err.message
        );
        let page = decode(&plan, &nested(MAX_NESTING - 3)).unwrap();
        let levels = MAX_NESTING - 3;
        let expected = format!("[{}1{}]", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(page.records[0].pk.as_deref(), Some(expected.as_str()));
        plan.records.error_path = Some("/error".into());
        let err = decode(&plan, r#"{"error":"busy","data":[{"id":1}]}"#).unwrap_err();
        assert!(
            err.message.contains("reports an error at /error"),
            "{}",
            err.message
        );
    }

    #[test]
    fn composite_and_absent_primary_keys() {
        let mut plan = job(PaginationKind::None);
        plan.records.primary_key = vec!["/a".into(), "/b/c".into()];
        let page = decode(&plan, r#"{"data":[{"a":"x","b":{"c":2}}]}"#).unwrap();
        assert_eq!(page.records[0].pk.as_deref(), Some(r#"["x",2]"#));
        let err = decode(&plan, r#"{"data":[{"a":"x","b":{"c":2}},{"a":"y"}]}"#).unwrap_err();
        assert!(!err.retryable);
        assert!(
            err.message.contains("record 1") && err.message.contains("/b/c"),
            "{}",
            err.message
        );
        plan.records.primary_key.clear();
        assert_eq!(
            decode(&plan, r#"{"data":[{}]}"#).unwrap().records[0].pk,
            None
        );
    }

    #[test]
    fn body_that_is_the_array() {
        let mut plan = job(PaginationKind::None);
        plan.records.path = String::new();
        assert_eq!(decode(&plan, r#"[{"id":1}]"#).unwrap().records.len(), 1);
        let err = decode(&plan, r#"{"id":1}"#).unwrap_err();
        assert!(
            err.message.contains("the body is an object"),
            "{}",
            err.message
        );
    }

    #[test]
    fn bad_bodies_say_what_was_found() {
        let plan = job(PaginationKind::None);
        let missing = decode(&plan, r#"{"items":[]}"#).unwrap_err();
        assert!(!missing.retryable);
        assert!(
            missing.message.contains("/data is missing"),
            "{}",
            missing.message
        );
        let object = decode(&plan, r#"{"data":{"id":1}}"#).unwrap_err();
        assert!(
            object.message.contains("/data is an object"),
            "{}",
            object.message
        );
        let truncated = decode(&plan, r#"{"data":[{"id":1},{"id""#).unwrap_err();
        assert!(truncated.retryable, "{}", truncated.message);
        let html = parse_body(&response(
            "<!doctype html><html>login</html>",
            "text/html; charset=utf-8",
        ))
        .unwrap_err();
        assert!(!html.retryable);
        assert!(
            html.message
                .starts_with("expected JSON, got text/html; charset=utf-8: <!doctype html>"),
            "{}",
            html.message
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_fails_without_retry() {
        let plan = job(PaginationKind::None);
        let nested = |levels: usize| {
            format!(
                r#"{{"data":[{{"id":1,"x":{}{}}}]}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // The body, the record and the data array take three levels.
        assert!(decode(&plan, &nested(MAX_NESTING - 3)).is_ok());
        let err = decode(&plan, &nested(MAX_NESTING - 2)).unwrap_err();
        assert!(!err.retryable);
        assert!(
            err.message.contains("deeper than 100 levels"),
            "{}",
            err.message
        );
        let err = decode(&plan, &nested(100_000)).unwrap_err();
        assert!(err.message.contains("deeper than"), "{}", err.message);
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let text = format!(
            r#"{{"a":"{}\"{}","b":[1]}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert_eq!(too_deep(text.as_bytes(), 2), None);
        assert_eq!(too_deep(b"[[[1]]]", 2), Some(2));
        assert_eq!(too_deep(br#"["\\", [[1]]]"#, 2), Some(8));
    }

    #[test]
    fn error_path_fails_the_page() {
        let mut plan = job(PaginationKind::None);
        plan.records.error_path = Some("/error".into());
        assert!(decode(&plan, r#"{"error":null,"data":[]}"#).is_ok());
        assert!(decode(&plan, r#"{"data":[]}"#).is_ok());
        let err = decode(&plan, r#"{"error":{"code":"busy"},"data":[{"id":1}]}"#).unwrap_err();
        assert!(!err.retryable);
        assert!(
            err.message.contains(r#"{"code":"busy"}"#),
            "{}",
            err.message
        );
        plan.records.error_retry = true;
        assert!(
            decode(&plan, r#"{"error":"x","data":[]}"#)
                .unwrap_err()
                .retryable
        );
    }

    #[test]
    fn timestamps_compare_as_instants() {
        let mut plan = job(PaginationKind::None);
        plan.incremental = Some(incremental(CursorType::Timestamp));
        let body = r#"{"data":[
            {"id":1,"updated_at":"2024-01-01T10:00:00Z"},
            {"id":2,"updated_at":"2024-01-01T11:30:00+02:00"},
            {"id":3,"updated_at":"2024-01-01T09:59:59-00:30"}]}"#;
        let page = decode(&plan, body).unwrap();
        assert_eq!(page.max_seen, Some(json!("2024-01-01T09:59:59-00:30")));
        let bad = decode(&plan, r#"{"data":[{"id":1,"updated_at":"yesterday"}]}"#).unwrap_err();
        assert!(bad.message.contains("record 0"), "{}", bad.message);
    }

    #[test]
    fn integer_and_string_cursors() {
        let mut plan = job(PaginationKind::None);
        plan.incremental = Some(incremental(CursorType::Integer));
        let page = decode(
            &plan,
            r#"{"data":[{"id":1,"updated_at":9},{"id":2,"updated_at":"10"}]}"#,
        )
        .unwrap();
        assert_eq!(page.max_seen, Some(json!(10)));
        plan.incremental = Some(incremental(CursorType::String));
        let page = decode(
            &plan,
            r#"{"data":[{"id":1,"updated_at":"b"},{"id":2,"updated_at":"a"}]}"#,
        )
        .unwrap();
        assert_eq!(page.max_seen, Some(json!("b")));
    }

    #[test]
    fn missing_cursor_errors_or_skips() {
        let mut plan = job(PaginationKind::None);
        plan.incremental = Some(incremental(CursorType::Integer));
        let body = r#"{"data":[{"id":1,"updated_at":3},{"id":2},{"id":3,"updated_at":null}]}"#;
        let err = decode(&plan, body).unwrap_err();
        assert!(
            err.message.contains("record 1") && !err.retryable,
            "{}",
            err.message
        );
        plan.incremental.as_mut().unwrap().on_missing_cursor = OnMissingCursor::Skip;
        let page = decode(&plan, body).unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.received, 3);
        assert_eq!(page.max_seen, Some(json!(3)));
    }
}
