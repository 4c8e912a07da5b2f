//! The one pass against the general path (`parse_body`, `raw_at`,
//! `raw_elements`, a parse per record), on generated bodies: same
//! records, same keys, same pagination values, same errors.

use proptest::prelude::*;

use crate::fetch::DecodeError;
use crate::fetch::decode::BodyView;
use crate::fetch::decode::records::tests::{general_path, job, response};
use crate::fetch::decode::records::{
    PageRecords, body_pointers, parse_body, read_in_one_pass, read_page,
};
use crate::plan::{ColumnPlan, JobPlan, PaginationKind};

type Outcome = Result<(PageRecords, Vec<Option<String>>), (String, bool)>;

/// The records and the value at each pagination pointer, by `read_page`
/// (the one pass where it applies) and by the general path.
fn both(job: &JobPlan, body: &[u8]) -> (Outcome, Outcome, bool) {
    let resp = response("", "application/json");
    let resp = crate::fetch::PageResponse {
        body: bytes::Bytes::copy_from_slice(body),
        ..resp
    };
    let facts = |view: &BodyView<'_>| -> Vec<Option<String>> {
        body_pointers(job)
            .map(|p| view.at(p).unwrap().map(str::to_string))
            .collect()
    };
    let err = |e: DecodeError| (e.message, e.retryable);
    let one_pass = read_in_one_pass(&resp, job).is_some();
    let ours = read_page(&resp, job)
        .map(|(page, view)| (page, facts(&view)))
        .map_err(err);
    let general = general_path(&resp, job)
        .map(|page| (page, facts(&BodyView::Raw(parse_body(&resp).unwrap()))))
        .map_err(err);
    (ours, general, one_pass)
}

fn next_url_job() -> JobPlan {
    let mut plan = job(PaginationKind::NextUrl {
        next_url_path: "/links/next".into(),
    });
    plan.output.columns.clear();
    plan
}

#[test]
fn the_bench_body_takes_one_pass_and_matches() {
    let body = r#"{"links":{"next":"/next/2"},"data":[{"id":1,"name":"a","amount":{"total":1.50,"currency":"EUR"},"tags":["x","y"]},{"id":"2","note":"\u00e9\"\\/"}]}"#;
    let (ours, general, one_pass) = both(&next_url_job(), body.as_bytes());
    assert!(one_pass);
    assert_eq!(ours, general);
    let (page, facts) = ours.unwrap();
    assert_eq!(facts, [Some(r#""/next/2""#.to_string())]);
    assert_eq!(page.records[1].json, r#"{"id":"2","note":"\u00e9\"\\/"}"#);
    assert_eq!(page.records[1].pk.as_deref(), Some(r#"["2"]"#));
}

#[test]
fn repeated_keys_take_the_last_member_as_raw_at_does() {
    let plan = next_url_job();
    let body = r#"{"data":[{"id":1}],"links":{"next":"a"},"links":{"other":1},
                      "data":[{"id":1,"id":2},{"x":0,"id":3}]}"#;
    let (ours, general, one_pass) = both(&plan, body.as_bytes());
    assert!(one_pass);
    assert_eq!(ours, general);
    let (page, facts) = ours.unwrap();
    assert_eq!(facts, [None]);
    let keys: Vec<_> = page.records.iter().map(|r| r.pk.clone().unwrap()).collect();
    assert_eq!(keys, ["[2]", "[3]"]);
}

#[test]
fn what_the_pass_does_not_handle_goes_the_general_way_with_the_same_result() {
    let plan = next_url_job();
    let cases: &[&str] = &[
        r#"{"data":{"id":1}}"#,
        r#"{"items":[]}"#,
        r#"{"data":[{"id":1}],"links":{"ne\u0078t":"/2"}}"#,
        r#"{"data":[{"\u0069d":1}]}"#,
        r#"{"data":[{"id":1}]"#,
        r#"{"data":[{"id":01}]}"#,
        r#"{"data":[{"id":1.}]}"#,
        r#"{"data":[{"id":"a	b"}]}"#,
        r#"{"data":[{"id":"\x"}]}"#,
        r#"{"data":[{"id":"\u12g4"}]}"#,
        r#"{"data":[{"id":tru}]}"#,
        r#"{"data":[{"id":1,}]}"#,
        r#"{"data":[{"id":1}],}"#,
        r#"{"data":[{"id":1}]} x"#,
        r#"<html>login</html>"#,
        "",
        "\u{feff}{\"data\":[]}",
    ];
    for body in cases {
        let (ours, general, one_pass) = both(&plan, body.as_bytes());
        assert!(!one_pass, "{body}");
        assert_eq!(ours, general, "{body}");
    }
    let (ours, general, _) = both(&plan, b"{\"data\":[{\"id\":\"\xff\"}]}");
    assert!(ours.is_err());
    assert_eq!(ours, general);
}

#[test]
fn nesting_at_and_over_the_limit() {
    let plan = next_url_job();
    let nested = |levels: usize| {
        format!(
            r#"{{"data":[{{"id":1,"x":{}{}}}]}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let (ours, general, one_pass) = both(&plan, nested(97).as_bytes());
    assert!(one_pass && ours.is_ok());
    assert_eq!(ours, general);
    let (ours, general, one_pass) = both(&plan, nested(98).as_bytes());
    assert!(!one_pass);
    let (message, retryable) = ours.clone().unwrap_err();
    assert!(message.contains("deeper than 100 levels") && !retryable);
    assert_eq!(ours, general);
}

#[test]
fn pointers_through_arrays_and_unusual_keys() {
    let mut plan = job(PaginationKind::Cursor {
        cursor_path: "/meta/0/a~1b".into(),
        cursor_param: "cursor".into(),
        cursor_in: crate::plan::ParamLocation::Query,
        from_last_record: false,
        cursor_header: None,
    });
    plan.records.path = "/pages/1/é".into();
    plan.records.error_path = Some("/err".into());
    plan.pagination.has_more_path = Some("/".into());
    plan.output.columns.clear();
    plan.records.primary_key = vec!["/k/1".into(), "/".into()];
    let body = r#"{"meta":[{"a/b":"c1"},{"a/b":"c2"}],"":true,"err":null,
            "pages":[{"é":[]},{"é":[{"k":[0,"x"],"":1},{"k":[1,{"b":1,"a":2}],"":2.50}]}]}"#;
    let (ours, general, one_pass) = both(&plan, body.as_bytes());
    assert!(one_pass);
    assert_eq!(ours, general);
    let (page, facts) = ours.unwrap();
    assert_eq!(facts[2].as_deref(), Some(r#""c1""#));
    assert_eq!(
        page.records[1].pk.as_deref(),
        Some(r#"[{"a":2,"b":1},2.5]"#)
    );
}

#[test]
fn parsed_records_get_the_same_columns_and_last_record() {
    let mut plan = next_url_job();
    plan.output.columns = vec![ColumnPlan {
        name: "total".into(),
        pointer: "/amount/total".into(),
    }];
    let body = r#"{"data":[{"id":1,"amount":{"total":9.50}},{"id":2}],"links":{"next":null}}"#;
    let (ours, general, one_pass) = both(&plan, body.as_bytes());
    assert!(one_pass);
    assert_eq!(ours, general);
    assert!(ours.unwrap().0.last.is_some());
}

/// A generated JSON value, rendered with choices the general path
/// must agree on: escapes, whitespace, number forms, repeated keys.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Number(String),
    Str(String, u8),
    Array(Vec<J>),
    Object(Vec<(String, u8, J)>),
}

fn render_str(out: &mut String, text: &str, style: u8) {
    out.push('"');
    for c in text.chars() {
        match (style % 3, c) {
            (_, '"') => out.push_str("\\\""),
            (_, '\\') => out.push_str("\\\\"),
            (1, _) | (_, '\0'..='\u{1f}') => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            (2, '/') => out.push_str("\\/"),
            _ => out.push(c),
        }
    }
    out.push('"');
}

fn render(out: &mut String, value: &J, pretty: bool) {
    let space = if pretty { " \n\t" } else { "" };
    match value {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => out.push_str(n),
        J::Str(s, style) => render_str(out, s, *style),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(space);
                render(out, item, pretty);
            }
            out.push_str(space);
            out.push(']');
        }
        J::Object(members) => {
            out.push('{');
            for (i, (key, style, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(space);
                render_str(out, key, *style % 2 * 2);
                out.push_str(space);
                out.push(':');
                render(out, item, pretty);
            }
            out.push_str(space);
            out.push('}');
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_string()),
        Just("data".to_string()),
        Just("links".to_string()),
        Just("next".to_string()),
        "[a-z/~é]{0,3}",
    ]
}

fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?".prop_map(J::Number),
        ("\\PC{0,6}|[\"\\\\/\u{0}-\u{1f}aé😀]{0,5}", any::<u8>()).prop_map(|(s, e)| J::Str(s, e)),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
            proptest::collection::vec((key(), any::<u8>(), inner), 0..6).prop_map(J::Object),
        ]
    })
}

/// A page body: members around a `data` array of records (objects,
/// mostly with an `id`), in any order, repeated now and then.
fn body() -> impl Strategy<Value = J> {
    let record = (
        value(),
        proptest::collection::vec((key(), any::<u8>(), value()), 0..4),
    )
        .prop_map(|(id, mut rest)| {
            rest.insert(0, ("id".into(), 0, id));
            J::Object(rest)
        });
    let records = prop_oneof![
        8 => proptest::collection::vec(record, 0..6).prop_map(J::Array),
        1 => value(),
    ];
    let next = prop_oneof![
        Just(J::Null),
        "[a-z/?=&]{0,8}".prop_map(|s| J::Str(s, 0)),
        value(),
    ];
    let links = (
        next,
        proptest::collection::vec((key(), any::<u8>(), value()), 0..2),
    )
        .prop_map(|(next, mut rest)| {
            rest.push(("next".into(), 0, next));
            J::Object(rest)
        });
    (
        records,
        links,
        proptest::collection::vec((key(), any::<u8>(), value()), 0..3),
        any::<u8>(),
    )
        .prop_map(|(records, links, extra, order)| {
            let mut members = extra;
            let at = order as usize % (members.len() + 1);
            members.insert(at, ("data".into(), 0, records));
            members.insert(
                (order as usize / 7) % (members.len() + 1),
                ("links".into(), 0, links),
            );
            J::Object(members)
        })
}

/// Break a body now and then: cut it, or put a stray byte in it.
fn mangle(text: String, how: u8, at: usize) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    let at = at % (bytes.len() + 1);
    match how % 8 {
        0 => bytes.truncate(at),
        1 => {
            let stray = b"{}[]\",:\\1e- \x01";
            bytes.insert(at, stray[at % stray.len()]);
        }
        2 if at < bytes.len() => {
            bytes.remove(at);
        }
        _ => {}
    }
    bytes
}

proptest! {
    #[test]
    fn the_word_at_a_time_search_finds_the_first_special_byte(
        bytes in proptest::collection::vec(any::<u8>(), 0..40),
        plain in "[a-zé😀 ]{0,30}",
    ) {
        for text in [bytes, [plain.as_bytes(), b"\"", plain.as_bytes()].concat()] {
            let naive = text.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(super::special(&text), naive);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_pass_matches_the_general_path(
        body in body(),
        pretty in any::<bool>(),
        how in any::<u8>(),
        at in any::<usize>(),
        keys in 0..3u8,
        parsed in any::<bool>(),
    ) {
        let mut text = String::new();
        render(&mut text, &body, pretty);
        let bytes = mangle(text, how, at);
        let mut plan = next_url_job();
        plan.records.primary_key = match keys {
            0 => vec!["/id".into()],
            1 => vec!["/id".into(), "/id/0".into()],
            _ => vec![],
        };
        plan.pagination.has_more_path = Some("/links/id".into());
        if parsed {
            plan.output.columns = vec![ColumnPlan {
                name: "x".into(),
                pointer: "/data".into(),
            }];
        }
        let (ours, general, _) = both(&plan, &bytes);
        prop_assert_eq!(ours, general, "body {}", String::from_utf8_lossy(&bytes));
    }
}
