//! The pure state machine, driven with hand-made responses.

use serde_json::json;

use super::*;
use crate::fetch::decode::records::tests::{incremental, job};
use crate::plan::{CursorType, HttpMethod, PaginationKind, ParamLocation};

const BASE: &str = "http://127.0.0.1:9/v1/orders";

fn resp_at(url: &str, body: serde_json::Value, headers: &[(&str, &str)]) -> PageResponse {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    PageResponse {
        url: Url::parse(url).unwrap(),
        status: 200,
        headers: map,
        body: bytes::Bytes::from(body.to_string()),
    }
}

fn resp(body: serde_json::Value) -> PageResponse {
    resp_at(BASE, body, &[])
}

fn records(ids: std::ops::Range<u64>) -> serde_json::Value {
    ids.map(|id| json!({"id": id})).collect()
}

fn start(plan: &JobPlan) -> (Paginator, RequestContext) {
    started(plan, StreamPosition::start(None))
}

fn started(plan: &JobPlan, position: StreamPosition) -> (Paginator, RequestContext) {
    let paginator = Paginator::new(plan, &Partition::whole(), position).unwrap();
    let ctx = RequestContext::new(plan, paginator.start_url(), None);
    (paginator, ctx)
}

/// Decode + advance, returning the page.
fn step(
    p: &mut Paginator,
    ctx: &RequestContext,
    response: PageResponse,
) -> Result<Page, FetchError> {
    let decoded = p.decode(&response).unwrap();
    p.advance(decoded, ctx)
}

fn url_of(p: &Paginator) -> String {
    p.next_request().unwrap().url.to_string()
}

fn offset_kind(total_path: Option<&str>) -> PaginationKind {
    PaginationKind::Offset {
        offset_param: "offset".into(),
        limit_param: "limit".into(),
        limit: 100,
        total_path: total_path.map(String::from),
        total_header: None,
        param_in: ParamLocation::Query,
    }
}

fn cursor_kind(cursor_in: ParamLocation, from_last_record: bool) -> PaginationKind {
    PaginationKind::Cursor {
        cursor_path: if from_last_record {
            "/id".into()
        } else {
            "/meta/next".into()
        },
        cursor_param: if cursor_in == ParamLocation::Body {
            "/page/cursor".into()
        } else {
            "cursor".into()
        },
        cursor_in,
        from_last_record,
        cursor_header: None,
    }
}

#[test]
fn none_is_one_page() {
    let (mut p, ctx) = start(&job(PaginationKind::None));
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2"));
    let page = step(&mut p, &ctx, resp(json!({"data": records(0..2)}))).unwrap();
    assert!(page.last);
    assert_eq!(page.records.len(), 2);
    assert_eq!(page.url, format!("{BASE}?Limit=2"));
    assert!(p.next_request().is_none());
}

#[test]
fn offset_advances_by_records_received() {
    let (mut p, ctx) = start(&job(offset_kind(None)));
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&offset=0&limit=100"));
    // The server caps pages at 2 whatever the limit: a short page goes on.
    let page = step(&mut p, &ctx, resp(json!({"data": records(0..2)}))).unwrap();
    assert!(!page.last);
    assert_eq!(page.position.next, NextRequest::Offset { offset: 2 });
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&offset=2&limit=100"));
    step(&mut p, &ctx, resp(json!({"data": records(2..3)}))).unwrap();
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&offset=3&limit=100"));
    let end = step(&mut p, &ctx, resp(json!({"data": []}))).unwrap();
    assert!(end.last);
    assert_eq!(end.position.pages, 3);
}

#[test]
fn offset_stops_at_total_from_body_or_header() {
    let (mut p, ctx) = start(&job(offset_kind(Some("/total"))));
    assert!(
        !step(
            &mut p,
            &ctx,
            resp(json!({"total": 3, "data": records(0..2)}))
        )
        .unwrap()
        .last
    );
    assert!(
        step(
            &mut p,
            &ctx,
            resp(json!({"total": 3, "data": records(2..3)}))
        )
        .unwrap()
        .last
    );

    let mut plan = job(offset_kind(None));
    if let PaginationKind::Offset { total_header, .. } = &mut plan.pagination.kind {
        *total_header = Some("Content-Range".into());
    }
    let (mut p, ctx) = start(&plan);
    let first = resp_at(
        BASE,
        json!({"data": records(0..2)}),
        &[("content-range", "0-1/4")],
    );
    assert!(!step(&mut p, &ctx, first).unwrap().last);
    let second = resp_at(
        BASE,
        json!({"data": records(2..4)}),
        &[("content-range", "2-3/4")],
    );
    assert!(step(&mut p, &ctx, second).unwrap().last);
}

#[test]
fn page_counts_total_pages_from_start() {
    let plan = job(PaginationKind::Page {
        page_param: "page".into(),
        start: 0,
        size_param: Some("per_page".into()),
        size: Some(2),
        total_pages_path: Some("/total_pages".into()),
        param_in: ParamLocation::Query,
    });
    let (mut p, ctx) = start(&plan);
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&page=0&per_page=2"));
    let body = |ids| json!({"total_pages": 2, "data": records(ids)});
    assert!(!step(&mut p, &ctx, resp(body(0..2))).unwrap().last);
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&page=1&per_page=2"));
    assert!(step(&mut p, &ctx, resp(body(2..4))).unwrap().last);
}

#[test]
fn page_without_size_param_sends_only_the_page() {
    let plan = job(PaginationKind::Page {
        page_param: "p".into(),
        start: 1,
        size_param: None,
        size: None,
        total_pages_path: None,
        param_in: ParamLocation::Query,
    });
    let (p, _) = started(
        &plan,
        StreamPosition {
            next: NextRequest::Page { page: 7 },
            ..StreamPosition::start(None)
        },
    );
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&p=7"));
}

#[test]
fn cursor_from_body_until_null() {
    let (mut p, ctx) = start(&job(cursor_kind(ParamLocation::Query, false)));
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2"));
    let page = step(
        &mut p,
        &ctx,
        resp(json!({"meta": {"next": "c 1"}, "data": records(0..2)})),
    )
    .unwrap();
    assert_eq!(
        page.position.next,
        NextRequest::Cursor {
            cursor: "c 1".into()
        }
    );
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&cursor=c+1"));
    for end in [json!(null), json!(""), json!({})] {
        let mut q = p.clone();
        let body = match end.is_object() {
            true => json!({"data": records(2..3)}),
            false => json!({"meta": {"next": end}, "data": records(2..3)}),
        };
        assert!(step(&mut q, &ctx, resp(body)).unwrap().last);
    }
}

#[test]
fn repeated_cursor_is_an_error_even_after_resume() {
    let plan = job(cursor_kind(ParamLocation::Query, false));
    let resumed = StreamPosition {
        next: NextRequest::Cursor {
            cursor: "abc".into(),
        },
        pages: 4,
        ..StreamPosition::start(None)
    };
    let (mut p, ctx) = started(&plan, resumed);
    let err = step(
        &mut p,
        &ctx,
        resp(json!({"meta": {"next": "abc"}, "data": records(0..1)})),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err.kind, FetchErrorKind::Pagination { .. }));
    assert!(
        text.contains("the server returned a cursor this stream already used")
            && text.contains("hint:"),
        "{text}"
    );
    // Unchanged on error: the same request is still next.
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&cursor=abc"));
}

#[test]
fn a_cursor_cycle_is_an_error_not_a_hang() {
    let (mut p, ctx) = start(&job(cursor_kind(ParamLocation::Query, false)));
    let page = |next: &str| resp(json!({"meta": {"next": next}, "data": records(0..1)}));
    step(&mut p, &ctx, page("a")).unwrap();
    step(&mut p, &ctx, page("b")).unwrap();
    step(&mut p, &ctx, page("c")).unwrap();
    // a -> b -> c -> a: not the previous cursor, but one already used.
    let err = step(&mut p, &ctx, page("a")).unwrap_err();
    assert!(
        err.to_string()
            .contains("a cursor this stream already used"),
        "{err}"
    );
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&cursor=c"));
}

#[test]
fn a_next_url_cycle_is_an_error_not_a_hang() {
    let plan = job(PaginationKind::NextUrl {
        next_url_path: "/next".into(),
    });
    let (mut p, ctx) = start(&plan);
    let page =
        |next: &str| resp(json!({"next": format!("{BASE}?p={next}"), "data": records(0..1)}));
    step(&mut p, &ctx, page("1")).unwrap();
    step(&mut p, &ctx, page("2")).unwrap();
    let err = step(&mut p, &ctx, page("1")).unwrap_err();
    assert!(
        err.to_string()
            .contains("a next URL this stream already followed"),
        "{err}"
    );
}

#[test]
fn offset_and_page_fail_when_the_server_ignores_the_paging_parameter() {
    let page_kind = PaginationKind::Page {
        page_param: "page".into(),
        start: 1,
        size_param: None,
        size: None,
        total_pages_path: None,
        param_in: ParamLocation::Query,
    };
    for kind in [offset_kind(None), page_kind] {
        let (mut p, ctx) = start(&job(kind));
        let same = || resp(json!({"data": records(0..2)}));
        step(&mut p, &ctx, same()).unwrap();
        let err = step(&mut p, &ctx, same()).unwrap_err();
        assert!(
            err.to_string()
                .contains("two pages in a row with the same body"),
            "{err}"
        );
    }
    // Different pages go on, and equal empty pages simply stop.
    let (mut p, ctx) = start(&job(offset_kind(None)));
    step(&mut p, &ctx, resp(json!({"data": records(0..2)}))).unwrap();
    assert!(
        !step(&mut p, &ctx, resp(json!({"data": records(2..4)})))
            .unwrap()
            .last
    );
    assert!(step(&mut p, &ctx, resp(json!({"data": []}))).unwrap().last);
}

#[test]
fn cursor_from_last_record_and_numbers() {
    let (mut p, ctx) = start(&job(cursor_kind(ParamLocation::Query, true)));
    step(&mut p, &ctx, resp(json!({"data": records(0..3)}))).unwrap();
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&cursor=2"));
    assert!(step(&mut p, &ctx, resp(json!({"data": []}))).unwrap().last);
}

#[test]
fn cursor_in_post_body() {
    let mut plan = job(cursor_kind(ParamLocation::Body, false));
    plan.request.method = HttpMethod::Post;
    plan.request.body = Some(json!({"filter": {"region": "{partition}"}}));
    let partition = Partition {
        key: "eu".into(),
        vars: vec![("partition".into(), "eu".into())],
    };
    let mut p = Paginator::new(&plan, &partition, StreamPosition::start(None)).unwrap();
    let ctx = RequestContext::new(&plan, p.start_url(), None);
    assert_eq!(
        p.next_request().unwrap().body,
        Some(json!({"filter": {"region": "eu"}}))
    );
    step(
        &mut p,
        &ctx,
        resp(json!({"meta": {"next": "n2"}, "data": records(0..1)})),
    )
    .unwrap();
    let next = p.next_request().unwrap();
    assert_eq!(next.method, HttpMethod::Post);
    assert_eq!(next.url.as_str(), format!("{BASE}?Limit=2"));
    assert_eq!(
        next.body,
        Some(json!({"filter": {"region": "eu"}, "page": {"cursor": "n2"}}))
    );
}

#[test]
fn next_url_resolves_against_the_request_url() {
    let mut plan = job(PaginationKind::NextUrl {
        next_url_path: "/links/next".into(),
    });
    plan.request.url = format!("{BASE}/");
    let (mut p, ctx) = start(&plan);
    // The response came from elsewhere on the same origin (a redirect): ignored.
    let first = resp_at(
        "http://127.0.0.1:9/moved/",
        json!({"links": {"next": "?page=2"}, "data": records(0..1)}),
        &[],
    );
    step(&mut p, &ctx, first).unwrap();
    assert_eq!(url_of(&p), format!("{BASE}/?page=2"));
    let second = resp(json!({"links": {"next": "page3?x=1"}, "data": records(1..2)}));
    step(&mut p, &ctx, second).unwrap();
    assert_eq!(url_of(&p), format!("{BASE}/page3?x=1"));
}

#[test]
fn link_header_resolves_against_the_response_url() {
    let (mut p, ctx) = start(&job(PaginationKind::LinkHeader));
    let first = resp_at(
        "http://127.0.0.1:9/moved/orders?x",
        json!({"data": records(0..1)}),
        &[("link", r#"<?p=2>; rel="prev next""#)],
    );
    let page = step(&mut p, &ctx, first).unwrap();
    let expected = "http://127.0.0.1:9/moved/orders?p=2";
    assert_eq!(
        page.position.next,
        NextRequest::Url {
            url: expected.into()
        }
    );
    assert_eq!(url_of(&p), expected);
    let same = resp_at(
        expected,
        json!({"data": records(1..2)}),
        &[("link", r#"<?p=2>; rel=next"#)],
    );
    let err = step(&mut p, &ctx, same).unwrap_err();
    assert!(
        err.to_string()
            .contains("a next URL this stream already followed"),
        "{err}"
    );
    let none = resp_at(expected, json!({"data": records(1..2)}), &[]);
    assert!(step(&mut p, &ctx, none).unwrap().last);
}

#[test]
fn cross_origin_next_url_is_refused_before_it_becomes_a_position() {
    let (mut p, ctx) = start(&job(PaginationKind::LinkHeader));
    let body = json!({"data": records(0..1)});
    let other = resp_at(
        BASE,
        body.clone(),
        &[("link", r#"<http://127.0.0.2:9/x>; rel="next""#)],
    );
    let err = step(&mut p, &ctx, other).unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::CrossOrigin { .. }),
        "{err}"
    );
    assert_eq!(p.position().pages, 0);
    // The error names the page that carried the link, the link in its text.
    assert_eq!(err.url, url_of(&p));
    assert!(err.to_string().contains("http://127.0.0.2:9/x"), "{err}");

    let mut plan = job(PaginationKind::LinkHeader);
    plan.pagination.allow_cross_origin = true;
    let (mut p, ctx) = start(&plan);
    let other = resp_at(
        BASE,
        body.clone(),
        &[("link", r#"<http://127.0.0.2:9/x>; rel="next""#)],
    );
    step(&mut p, &ctx, other).unwrap();
    assert_eq!(url_of(&p), "http://127.0.0.2:9/x");
    // has_more false or an empty page stops before the link is even looked at.
    let mut plan = job(PaginationKind::LinkHeader);
    plan.pagination.has_more_path = Some("/more".into());
    let (mut p, ctx) = start(&plan);
    let last = resp_at(
        BASE,
        json!({"more": false, "data": records(0..1)}),
        &[("link", r#"<http://127.0.0.2:9/x>; rel="next""#)],
    );
    assert!(step(&mut p, &ctx, last).unwrap().last);
}

#[test]
fn has_more_missing_means_continue() {
    let mut plan = job(offset_kind(None));
    plan.pagination.has_more_path = Some("/has_more".into());
    let (mut p, ctx) = start(&plan);
    assert!(
        !step(&mut p, &ctx, resp(json!({"data": records(0..1)})))
            .unwrap()
            .last
    );
    assert!(
        !step(
            &mut p,
            &ctx,
            resp(json!({"has_more": true, "data": records(1..2)}))
        )
        .unwrap()
        .last
    );
    assert!(
        step(
            &mut p,
            &ctx,
            resp(json!({"has_more": false, "data": records(2..3)}))
        )
        .unwrap()
        .last
    );
}

#[test]
fn max_pages_counts_pages_before_a_resume() {
    let mut plan = job(offset_kind(None));
    plan.pagination.max_pages = 5;
    let resumed = StreamPosition {
        next: NextRequest::Offset { offset: 40 },
        pages: 3,
        ..StreamPosition::start(None)
    };
    let (mut p, ctx) = started(&plan, resumed);
    assert!(
        !step(&mut p, &ctx, resp(json!({"data": records(0..10)})))
            .unwrap()
            .last
    );
    let fifth = step(&mut p, &ctx, resp(json!({"data": records(10..20)}))).unwrap();
    assert!(fifth.last);
    assert_eq!(fifth.position.pages, 5);
    assert!(p.next_request().is_none());
}

#[test]
fn incremental_since_in_query_not_readded_to_next_urls() {
    let mut plan = job(PaginationKind::NextUrl {
        next_url_path: "/next".into(),
    });
    plan.incremental = Some(incremental(CursorType::Integer));
    let (mut p, ctx) = started(&plan, StreamPosition::start(Some("41".into())));
    assert_eq!(url_of(&p), format!("{BASE}?Limit=2&updated_since=41"));
    let body = json!({"next": "/v1/orders?after=2", "data": [{"id": 1, "updated_at": 50}, {"id": 2, "updated_at": 45}]});
    let page = step(&mut p, &ctx, resp(body)).unwrap();
    assert_eq!(page.position.since.as_deref(), Some("41"));
    assert_eq!(page.position.max_seen, Some(json!(50)));
    assert_eq!(url_of(&p), "http://127.0.0.1:9/v1/orders?after=2");
    let page = step(
        &mut p,
        &ctx,
        resp(json!({"data": [{"id": 3, "updated_at": 49}]})),
    )
    .unwrap();
    assert_eq!(
        page.position.max_seen,
        Some(json!(50)),
        "the running max keeps earlier pages"
    );
}

#[test]
fn incremental_since_in_post_body() {
    let mut plan = job(PaginationKind::None);
    plan.request.method = HttpMethod::Post;
    plan.request.body = Some(json!({"sort": "asc"}));
    let mut inc = incremental(CursorType::Timestamp);
    inc.param = Some("/filter/after".into());
    inc.param_in = ParamLocation::Body;
    plan.incremental = Some(inc);
    let (p, _) = started(
        &plan,
        StreamPosition::start(Some("2024-01-01T00:00:00Z".into())),
    );
    let req = p.next_request().unwrap();
    assert_eq!(req.url.as_str(), format!("{BASE}?Limit=2"));
    assert_eq!(
        req.body,
        Some(json!({"sort": "asc", "filter": {"after": "2024-01-01T00:00:00Z"}}))
    );
}

#[test]
fn partition_values_fill_url_query_and_headers() {
    let mut plan = job(PaginationKind::None);
    plan.request.url = "http://127.0.0.1:9/{partition}/orders".into();
    plan.request.query = vec![("from".into(), "{partition.start}".into())];
    plan.request.headers = vec![("X-Region".into(), "{partition}".into())];
    let partition = Partition {
        key: "us".into(),
        vars: vec![
            ("partition".into(), "us".into()),
            ("partition.start".into(), "2024-01-01".into()),
        ],
    };
    let p = Paginator::new(&plan, &partition, StreamPosition::start(None)).unwrap();
    let req = p.next_request().unwrap();
    assert_eq!(
        req.url.as_str(),
        "http://127.0.0.1:9/us/orders?from=2024-01-01"
    );
    assert_eq!(req.headers, [("X-Region".to_string(), "us".to_string())]);
}

#[test]
fn a_position_of_another_pagination_type_is_refused() {
    let plan = job(offset_kind(None));
    let saved = StreamPosition {
        next: NextRequest::Cursor { cursor: "x".into() },
        ..StreamPosition::start(None)
    };
    let err = Paginator::new(&plan, &Partition::whole(), saved).unwrap_err();
    assert!(err.to_string().contains("apisync reset"), "{err}");
}

#[test]
fn decode_errors_pass_through() {
    let (p, _) = start(&job(offset_kind(None)));
    let err = p.decode(&resp(json!({"data": {"id": 1}}))).unwrap_err();
    assert!(!err.retryable);
    assert!(
        err.message.contains("/data is an object"),
        "{}",
        err.message
    );
    let mut plan = job(PaginationKind::NextUrl {
        next_url_path: "/next".into(),
    });
    plan.pagination.has_more_path = Some("/more".into());
    let (p, _) = start(&plan);
    let err = p
        .decode(&resp(json!({"more": "yes", "data": []})))
        .unwrap_err();
    assert!(err.message.contains("not a boolean"), "{}", err.message);
}

#[test]
fn stop_value_ends_any_type_at_the_page_that_says_so() {
    // A cursor is still given: the stop value wins, and only an equal
    // value stops ("done" is not "Done", 1 is not "1").
    let mut plan = job(cursor_kind(ParamLocation::Query, false));
    plan.pagination.stop = Some(crate::plan::StopWhen {
        path: "/meta/state".into(),
        value: json!("done"),
    });
    let (mut p, ctx) = start(&plan);
    for state in [json!("Done"), json!(null), json!(1)] {
        let body =
            json!({"meta": {"next": format!("c{state}"), "state": state}, "data": records(0..2)});
        assert!(!step(&mut p, &ctx, resp(body)).unwrap().last);
    }
    let body = json!({"meta": {"next": "c9", "state": "done"}, "data": records(2..4)});
    let last = step(&mut p, &ctx, resp(body)).unwrap();
    assert!(last.last, "the page that says stop is the last");
    assert_eq!(last.records.len(), 2, "and its records are kept");
    assert!(p.next_request().is_none());
}

#[test]
fn header_cursor_is_read_from_the_response_and_missing_or_blank_ends() {
    let kind = PaginationKind::Cursor {
        cursor_path: String::new(),
        cursor_param: "cursor".into(),
        cursor_in: ParamLocation::Query,
        from_last_record: false,
        cursor_header: Some("X-Next-Cursor".into()),
    };
    for end in [&[][..], &[("x-next-cursor", "  ")][..]] {
        let (mut p, ctx) = start(&job(kind.clone()));
        // The body's `meta/next` is not the cursor's source.
        let body = json!({"meta": {"next": "decoy"}, "data": records(0..2)});
        let page = step(
            &mut p,
            &ctx,
            resp_at(BASE, body.clone(), &[("X-Next-Cursor", "abc")]),
        )
        .unwrap();
        assert!(!page.last);
        assert_eq!(url_of(&p), format!("{BASE}?Limit=2&cursor=abc"));
        assert!(step(&mut p, &ctx, resp_at(BASE, body, end)).unwrap().last);
    }
}

#[test]
fn stop_value_compares_numbers_by_value() {
    // An API that writes its flag as 0.0 stops a job that says 0; 0.5 does not.
    let mut plan = job(cursor_kind(ParamLocation::Query, false));
    plan.pagination.stop = Some(crate::plan::StopWhen {
        path: "/remaining".into(),
        value: json!(0),
    });
    let (mut p, ctx) = start(&plan);
    let body = json!({"meta": {"next": "c1"}, "remaining": 0.5, "data": records(0..2)});
    assert!(!step(&mut p, &ctx, resp(body)).unwrap().last);
    let body = json!({"meta": {"next": "c2"}, "remaining": 0.0, "data": records(2..4)});
    assert!(step(&mut p, &ctx, resp(body)).unwrap().last);
}

#[test]
fn a_header_cursor_that_is_not_visible_ascii_is_an_error_not_a_guess() {
    let kind = PaginationKind::Cursor {
        cursor_path: String::new(),
        cursor_param: "cursor".into(),
        cursor_in: ParamLocation::Query,
        from_last_record: false,
        cursor_header: Some("X-Next-Cursor".into()),
    };
    let (p, _) = start(&job(kind));
    let mut page = resp(json!({"data": records(0..2)}));
    page.headers.insert(
        "x-next-cursor",
        http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    );
    let err = p.decode(&page).unwrap_err();
    assert!(!err.retryable);
    assert!(
        err.message
            .contains("X-Next-Cursor holds bytes that are not visible ASCII"),
        "{}",
        err.message
    );
}

/// `{now}` is the run that began the stream: every page of it, and its
/// pages after a resume in a later run, ask for the same range.
#[test]
fn now_and_the_mark_are_the_streams_own_on_every_page_and_after_a_resume() {
    let mut plan = job(offset_kind(None));
    plan.request.query = vec![
        ("until".into(), "{now:epoch}".into()),
        ("since".into(), "{mark:date}".into()),
    ];
    let first_run = "2020-01-01T00:00:00Z".parse().unwrap();
    let fresh = StreamPosition::start(Some("2019-12-24T10:00:00Z".into())).at(first_run);
    let (mut p, ctx) = started(&plan, fresh);
    let page = step(&mut p, &ctx, resp(json!({ "data": records(0..100) }))).unwrap();
    assert!(
        url_of(&p).contains("until=1577836800&since=2019-12-24"),
        "{}",
        url_of(&p)
    );
    // The saved position goes to a later run, whose own `now` does not win.
    let saved = serde_json::to_string(&page.position).unwrap();
    let later_run = "2030-01-01T00:00:00Z".parse().unwrap();
    let resumed = serde_json::from_str::<StreamPosition>(&saved)
        .unwrap()
        .at(later_run);
    let (p, _) = started(&plan, resumed);
    assert!(
        url_of(&p).contains("until=1577836800&since=2019-12-24"),
        "{}",
        url_of(&p)
    );
    assert!(url_of(&p).contains("offset=100"), "{}", url_of(&p));
}
