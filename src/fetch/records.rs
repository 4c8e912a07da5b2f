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
use crate::plan::{CursorType, IncrementalPlan, JobPlan, OnMissingCursor};

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
    /// The last record of the array, parsed (for `cursor_from = "last_record"`).
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
    let text = std::str::from_utf8(&resp.body);
    let parsed = text
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str::<&RawValue>(text).map_err(|e| e.to_string()));
    parsed.map_err(|reason| not_json(resp, &reason))
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
    let start: String = String::from_utf8_lossy(&resp.body)
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
    match found {
        Some(raw) if raw.get() != "null" => Err(DecodeError {
            message: format!(
                "the page reports an error at {path}: {} (hint: records.error_retry decides whether such pages are retried)",
                quote(raw.get())
            ),
            retryable: job.records.error_retry,
        }),
        _ => Ok(()),
    }
}

fn quote(text: &str) -> String {
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
pub fn build_records(items: &[&RawValue], job: &JobPlan) -> Result<PageRecords, DecodeError> {
    let mut page = PageRecords {
        received: items.len() as u64,
        ..PageRecords::default()
    };
    for (index, raw) in items.iter().enumerate() {
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|e| fatal(format!("record {index} of the page is not valid JSON: {e}")))?;
        let keep = match &job.incremental {
            Some(inc) => track_cursor(inc, &value, index, &mut page.max_seen)?,
            None => true,
        };
        if keep {
            page.records.push(Record {
                json: raw.get().to_string(),
                pk: primary_key(&job.records.primary_key, &value, index)?,
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

/// The canonical JSON array of the key values: `[1]` and `["1"]` differ.
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
            _ => {
                return Err(fatal(format!(
                    "record {index} of the page has no primary key value at {pointer} (hint: check records.primary_key)"
                )));
            }
        }
    }
    Ok(Some(Value::Array(parts).to_string()))
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
        let raw = parse_body(&resp)?;
        check_error(raw, job)?;
        build_records(&records_array(raw, job)?, job)
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
