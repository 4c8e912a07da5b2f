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
            env: Vec::new(),
            missing_env: Vec::new(),
        },
        pagination: PaginationPlan {
            kind,
            has_more_path: None,
            stop: None,
            max_pages: 0,
            allow_cross_origin: false,
        },
        records: RecordsPlan {
            path: "/data".into(),
            primary_key: vec!["/id".into()],
            partition_key: vec![],
            error_path: None,
            error_retry: false,
            max_page_bytes: 1 << 20,
            single: false,
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
        param: Some("updated_since".into()),
        param_in: ParamLocation::Query,
        initial: None,
        lookback: None,
        on_missing_cursor: OnMissingCursor::Error,
        windows: None,
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
pub(crate) fn general_path(resp: &PageResponse, job: &JobPlan) -> Result<PageRecords, DecodeError> {
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
        cursor_header: None,
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
