//! Detection on hand-written first pages, one per shape `init` knows.

use serde_json::json;
use url::Url;

use super::*;
use crate::plan::{PaginationKind, ParamLocation};

fn url(text: &str) -> Url {
    Url::parse(text).expect("test URL")
}

fn kind(body: serde_json::Value, link_next: bool, at: &str) -> Option<PaginationKind> {
    let records = records_path(&body);
    let pointer = records.value.map(|r| r.pointer).unwrap_or_default();
    pagination(&body, link_next, &url(at), &pointer).0.value
}

#[test]
fn records_are_the_body_or_the_largest_array_of_objects() {
    let array = records_path(&json!([{"id": 1}, {"id": 2}]));
    assert_eq!(array.value.unwrap().pointer, "");
    let wrapped = records_path(&json!({
        "tags": [{"t": 1}],
        "data": [{"id": 1}, {"id": 2}, {"id": 3}],
        "ids": [1, 2, 3, 4, 5]
    }));
    let at = wrapped.value.unwrap();
    assert_eq!((at.pointer.as_str(), at.count), ("/data", 3));
    assert!(wrapped.saw.contains("/tags (1)"), "{}", wrapped.saw);
    let nested = records_path(&json!({"data": {"items": [{"id": 1}]}, "meta": {}}));
    assert_eq!(nested.value.unwrap().pointer, "/data/items");
    let none = records_path(&json!({"message": "hi"}));
    assert!(none.value.is_none());
}

#[test]
fn a_link_header_wins() {
    let body = json!([{"id": 1}]);
    assert_eq!(
        kind(body, true, "http://x/items"),
        Some(PaginationKind::LinkHeader)
    );
}

#[test]
fn a_url_field_is_next_url() {
    let body = json!({"items": [{"id": 1}], "links": {"next": "http://x/items?page=2"}});
    assert_eq!(
        kind(body, false, "http://x/items"),
        Some(PaginationKind::NextUrl {
            next_url_path: "/links/next".into()
        })
    );
    let odata = json!({"value": [{"id": 1}], "@odata.nextLink": "/items?$skip=1"});
    assert_eq!(
        kind(odata, false, "http://x/items"),
        Some(PaginationKind::NextUrl {
            next_url_path: "/@odata.nextLink".into()
        })
    );
}

#[test]
fn a_token_field_is_a_cursor_with_a_guessed_param() {
    let body = json!({"data": [{"id": 1}], "meta": {"next_cursor": "abc"}, "has_more": true});
    let (found, has_more) = pagination(&body, false, &url("http://x/a"), "/data");
    assert_eq!(
        found.value,
        Some(PaginationKind::Cursor {
            cursor_path: "/meta/next_cursor".into(),
            cursor_param: "cursor".into(),
            cursor_in: ParamLocation::Query,
            from_last_record: false,
            cursor_header: None,
        })
    );
    assert_eq!(has_more.unwrap().value.as_deref(), Some("/has_more"));
    let google = json!({"files": [{"id": 1}], "nextPageToken": "t1"});
    assert_eq!(
        kind(google, false, "http://x/a"),
        Some(PaginationKind::Cursor {
            cursor_path: "/nextPageToken".into(),
            cursor_param: "pageToken".into(),
            cursor_in: ParamLocation::Query,
            from_last_record: false,
            cursor_header: None,
        })
    );
}

#[test]
fn total_pages_or_a_page_parameter_is_page() {
    let body = json!({"results": [{"id": 1}], "page": 1, "total_pages": 4});
    assert_eq!(
        kind(body, false, "http://x/a?page=1&per_page=2"),
        Some(PaginationKind::Page {
            page_param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            size: Some(2),
            total_pages_path: Some("/total_pages".into()),
            param_in: ParamLocation::Query,
        })
    );
}

#[test]
fn a_total_with_an_offset_parameter_is_offset() {
    let body = json!({"items": [{"id": 1}], "total": 9});
    assert_eq!(
        kind(body, false, "http://x/a?skip=0&limit=3"),
        Some(PaginationKind::Offset {
            offset_param: "skip".into(),
            limit_param: "limit".into(),
            limit: 3,
            total_path: Some("/total".into()),
            total_header: None,
            param_in: ParamLocation::Query,
        })
    );
}

#[test]
fn nothing_paginated_is_none_and_says_so() {
    let body = json!([{"id": 1}]);
    let (found, _) = pagination(&body, false, &url("http://x/a"), "");
    assert_eq!(found.value, Some(PaginationKind::None));
    assert!(
        found.saw.contains("set [pagination] by hand"),
        "{}",
        found.saw
    );
}

#[test]
fn has_more_alone_is_not_enough_and_says_why() {
    let body = json!({"data": [{"id": "ch_1"}], "has_more": true});
    let (found, has_more) = pagination(&body, false, &url("http://x/charges"), "/data");
    assert_eq!(found.value, None);
    assert!(
        found
            .saw
            .contains("/has_more says whether more pages follow"),
        "{}",
        found.saw
    );
    assert!(has_more.is_some());
}

#[test]
fn the_primary_key_is_a_distinct_id_like_field() {
    let ids = primary_key(&[json!({"id": 1, "n": "a"}), json!({"id": 2, "n": "a"})]);
    assert_eq!(ids.value.as_deref(), Some("/id"));
    let repeated = [
        json!({"id": 1, "order_id": "x1"}),
        json!({"id": 1, "order_id": "x2"}),
    ];
    assert_eq!(primary_key(&repeated).value.as_deref(), Some("/order_id"));
    let none = primary_key(&[json!({"name": "a"}), json!({"name": "b"})]);
    assert!(none.value.is_none());
    assert!(primary_key(&[]).value.is_none());
}

#[test]
fn the_job_file_comments_every_guess_and_drops_paging_params() {
    let body = json!({"results": [{"id": 1}, {"id": 2}], "page": 1, "total_pages": 3});
    let page = FirstPage {
        url: url("http://127.0.0.1:9/api/items?page=1&per_page=2&sort=asc"),
        headers: http::HeaderMap::new(),
        body,
    };
    let found = detect(&page, &page.url);
    let text = job_file("items", &page.url, Some("api"), &found);
    insta::assert_snapshot!(text);
    let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
    assert_eq!(
        parsed["request"]["url"].as_str(),
        Some("http://127.0.0.1:9/api/items?sort=asc")
    );
}

#[test]
fn the_job_file_says_what_was_not_detected() {
    let page = FirstPage {
        url: url("http://127.0.0.1:9/api/thing"),
        headers: http::HeaderMap::new(),
        body: json!({"name": "x"}),
    };
    let found = detect(&page, &page.url);
    let missing = found.missing();
    assert_eq!(missing.len(), 3, "{missing:?}");
    assert!(missing[1].starts_with("pagination: "), "{missing:?}");
    let text = job_file("thing", &page.url, None, &found);
    assert!(text.contains("# path: not detected"), "{text}");
    assert!(text.contains("# primary_key: not detected"), "{text}");
    assert!(text.contains("mode = \"append\""), "{text}");
}

#[test]
fn names_are_checked_before_anything_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let err = job_path(dir.path(), "../evil").unwrap_err().to_string();
    assert!(err.contains("not a usable job name"), "{err}");
    std::fs::write(dir.path().join("taken.toml"), "").unwrap();
    let err = job_path(dir.path(), "taken").unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}
