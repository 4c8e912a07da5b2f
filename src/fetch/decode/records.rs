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

use super::body::BodyView;
use super::pointer::{describe, raw_at, raw_elements, tokens};
use super::scan;
pub use super::scan::MAX_NESTING;
use crate::fetch::paginate::paging_of;
use crate::fetch::{DecodeError, PageResponse, Record};
use crate::plan::{CursorType, IncrementalPlan, JobPlan, OnMissingCursor};

/// How many characters of an unexpected body an error quotes.
const QUOTE_CHARS: usize = 60;

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
    if job.records.single {
        // `GET /me`: the object is the one record.
        return match found.get().trim_start().starts_with('{') {
            true => Ok(vec![found]),
            false => Err(fatal(format!(
                "the records path {shown} is {}, not an object, and records.single = true reads one object as one record (hint: check records.path, or remove single for an array of records)",
                describe(found)
            ))),
        };
    }
    raw_elements(found).ok_or_else(|| {
        let hint = match found.get().trim_start().starts_with('{') {
            true => {
                "check records.path, or set records.single = true if this object is the one record"
            }
            false => "check records.path",
        };
        fatal(format!(
            "the records path {shown} is {}, not an array (hint: {hint})",
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

/// The pointers into the body that the pagination facts read (the error
/// path, `has_more_path`, `stop_path`, and the one the job's pagination
/// type reads).
pub(super) fn body_pointers(job: &JobPlan) -> impl Iterator<Item = &str> {
    [
        job.records.error_path.as_deref(),
        job.pagination.has_more_path.as_deref(),
        job.pagination.stop.as_ref().map(|s| s.path.as_str()),
        paging_of(&job.pagination.kind).body_pointer(),
    ]
    .into_iter()
    .flatten()
}

/// [`read_page`] by [`scan::scan`]: one pass over the body for the records,
/// their keys and the pagination pointers. None when the pass cannot tell
/// (it then gives way to the general path, which reports any error).
pub(super) fn read_in_one_pass<'a>(
    resp: &'a PageResponse,
    job: &'a JobPlan,
) -> Option<Result<(PageRecords, BodyView<'a>), DecodeError>> {
    if job.records.single {
        // The one pass reads arrays of records; one object goes the general way.
        return None;
    }
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
    let last_record = paging_of(&job.pagination.kind).reads_last_record();
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
pub(crate) mod tests;
