//! Every pagination type end to end: the built binary against a local API
//! on 127.0.0.1 and a real SQLite file. Each test asserts the table equals
//! the server's data exactly and that the server saw exactly the requests
//! the type should make: no page skipped, none fetched twice, no request
//! after the stream should have stopped. The pure state machine's unit
//! tests are in src/fetch/paginate/tests.rs; this is the layer above, with
//! real headers, redirects, URL encoding and commits.

mod common;

use axum::response::Response;
use common::faults::record;
use common::paged::{Api, Seen, json, redirect, window, with_links};
use common::{BEARER, Project, describe};
use serde_json::{Value, json};

const PAGE: usize = 5;

fn data(n: u64) -> Vec<Value> {
    (1..=n).map(record).collect()
}

/// A project with one job `items` writing to the table `items`.
fn project(job: &str) -> Project {
    let project = Project::new();
    project.job("items", &format!("{BEARER}\n{job}"));
    project
}

async fn run_ok(project: &Project) {
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
}

/// The table holds the server's records, in the server's order, once each.
fn assert_table(project: &Project, api: &Api) {
    assert_eq!(project.rows("items"), api.data());
}

/// The value of `name` in every request, in order.
fn params(api: &Api, name: &str) -> Vec<Option<String>> {
    api.seen()
        .iter()
        .map(|seen| seen.param(name).map(str::to_string))
        .collect()
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_makes_one_request_and_stores_the_body_array() {
    // A Link header and a next URL in the body are ignored: type none.
    let api = Api::start(data(12), |_, data| {
        let response = json(Value::Array(data.to_vec()));
        with_links(response, &["</items?page=2>; rel=\"next\"".into()])
    })
    .await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\nquery = {{ Fields = \"All\" }}\n[pagination]\ntype = \"none\"\n[records]\npath = \"\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(api.lines(), ["GET /items?Fields=All"]);
}

/// Pages by `page` (default 1) on any path, each carrying the Link header
/// of one odd RFC 8288 form; `/items?page=5` redirects elsewhere, so the
/// fifth page's response URL differs from its request URL.
fn odd_links(seen: &Seen, data: &[Value]) -> Response {
    let page = seen.number("page").unwrap_or(1);
    let o = &seen.origin;
    if seen.path == "/items" && page == 5 {
        return redirect("/archive/list?page=5&per_page=5");
    }
    let body = json(json!({ "data": window(data, (page - 1) * PAGE, PAGE) }));
    let fields: Vec<String> = match page {
        // Several links in one field, absolute URIs.
        1 => vec![format!(
            "<{o}/items?page=1&per_page=5>; rel=\"first\", <{o}/items?page=2&per_page=5>; rel=\"next\", <{o}/items?page=6&per_page=5>; rel=\"last\""
        )],
        // Several Link fields; the next one is a query-only reference.
        2 => vec![
            "</items?page=1&per_page=5>; rel=\"prev\"".into(),
            "</items?page=6&per_page=5>; rel=\"last\"".into(),
            "<?page=3&per_page=5>; rel=\"next\"".into(),
        ],
        // Quoted parameters holding ; , = (and a decoy "rel=next" in a
        // title); `,` and `;` inside the URI; a relative path.
        3 => vec![
            "</items?page=99>; title=\"go; rel=next, now=1\"; rel=\"prev\", <items?page=4&per_page=5&tag=a,b;c=d>; title=\"x=1; y, z\"; rel=\"next\"".into(),
        ],
        // rel in any case, with several space-separated types.
        4 => vec![
            "</items?page=3&per_page=5>; REL=Prev, </items?page=5&per_page=5>; Rel=\"Last NEXT\"".into(),
        ],
        // After the redirect: relative to the response URL (/archive/list).
        5 => vec!["<list?page=6&per_page=5>; rel=\"next last\"".into()],
        // The last page: a Link, but no next.
        _ => vec!["<list?page=5&per_page=5>; rel=\"prev\"".into()],
    };
    with_links(body, &fields)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_header_follows_every_odd_form_and_resolves_relative_links() {
    let api = Api::start(data(28), odd_links).await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\nquery = {{ per_page = \"5\" }}\n[pagination]\ntype = \"link_header\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(
        api.lines(),
        [
            "GET /items?per_page=5",
            "GET /items?page=2&per_page=5",
            "GET /items?page=3&per_page=5",
            "GET /items?page=4&per_page=5&tag=a,b;c=d",
            "GET /items?page=5&per_page=5",
            "GET /archive/list?page=5&per_page=5",
            "GET /archive/list?page=6&per_page=5",
        ]
    );
    assert!(api.seen().iter().all(|s| s.authorized));
}

/// Pages by `from`; every page's next URL is relative in another way, and
/// `/api/v1/items?from=5` redirects to a mirror whose answer is still
/// resolved against the request URL.
fn relative_next(seen: &Seen, data: &[Value]) -> Response {
    let from = seen.number("from").unwrap_or(0);
    if seen.path == "/api/v1/items" && from == 5 {
        return redirect("/mirror/items?from=5");
    }
    let next = match from {
        0 => json!("?from=5"),
        5 => json!("items?from=10&size=5"),
        10 => json!("../v1/items?from=15"),
        15 => json!("/api/v1/items?from=20"),
        20 => json!(format!("{}/api/v1/items?from=25", seen.origin)),
        _ => json!(""),
    };
    json(json!({ "data": window(data, from, PAGE), "links": { "next": next } }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_url_resolves_relative_urls_against_the_request_url() {
    let api = Api::start(data(28), relative_next).await;
    let project = project(&format!(
        "[request]\nurl = \"{}/api/v1/items\"\nquery = {{ size = \"5\" }}\n[pagination]\ntype = \"next_url\"\nnext_url_path = \"/links/next\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    // Next URLs are followed as given: the job's `size` is not added back.
    assert_eq!(
        api.lines(),
        [
            "GET /api/v1/items?size=5",
            "GET /api/v1/items?from=5",
            "GET /mirror/items?from=5",
            "GET /api/v1/items?from=10&size=5",
            "GET /api/v1/items?from=15",
            "GET /api/v1/items?from=20",
            "GET /api/v1/items?from=25",
        ]
    );
}

/// An opaque token full of characters that need encoding in a query.
fn token(offset: usize) -> String {
    format!("t/{offset}+=&?# é")
}

fn offset_of(token: &str) -> usize {
    token
        .strip_prefix("t/")
        .and_then(|rest| rest.split('+').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_tokens_from_the_body_are_sent_back_exactly() {
    let api = Api::start(data(23), |seen, data| {
        let start = seen.param("after").map_or(0, offset_of);
        let end = start + PAGE;
        let next = (end < data.len()).then(|| token(end));
        json(json!({ "data": window(data, start, PAGE), "meta": { "next_cursor": next } }))
    })
    .await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\nquery = {{ pageSize = \"5\" }}\n[pagination]\ntype = \"cursor\"\ncursor_path = \"/meta/next_cursor\"\ncursor_param = \"after\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    let expected: Vec<Option<String>> = [None]
        .into_iter()
        .chain([5, 10, 15, 20].map(|n| Some(token(n))))
        .collect();
    assert_eq!(params(&api, "after"), expected);
    assert_eq!(params(&api, "pageSize"), some(&["5"; 5]), "job query kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_from_the_last_record_until_an_empty_page() {
    let api = Api::start(data(23), |seen, data| {
        let after = seen.number("since_id").unwrap_or(0);
        let page: Vec<Value> = data
            .iter()
            .filter(|r| r["id"].as_u64().unwrap_or(0) > after as u64)
            .take(PAGE)
            .cloned()
            .collect();
        json(json!({ "data": page }))
    })
    .await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"cursor\"\ncursor_from = \"last_record\"\ncursor_path = \"/id\"\ncursor_param = \"since_id\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    // The short page (21..23) does not stop the stream; the empty one does.
    let expected: Vec<Option<String>> = [None]
        .into_iter()
        .chain(some(&["5", "10", "15", "20", "23"]))
        .collect();
    assert_eq!(params(&api, "since_id"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_in_a_post_body() {
    let api = Api::start(data(13), |seen, data| {
        if seen.method != "POST" {
            return json(json!({ "error": "POST only" }));
        }
        let body = seen.body.clone().unwrap_or(Value::Null);
        let start = body
            .pointer("/page/after")
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix('c'))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let end = start + PAGE;
        let next = (end < data.len()).then(|| format!("c{end}"));
        json(json!({ "results": window(data, start, PAGE), "next": next }))
    })
    .await;
    let project = project(&format!(
        r#"[request]
url = "{}/query"
method = "POST"
query = {{ v = "2" }}
body = {{ filter = {{ status = "open" }}, page = {{ size = 5 }} }}
[pagination]
type = "cursor"
cursor_path = "/next"
cursor_param = "/page/after"
cursor_in = "body"
[records]
path = "/results"
primary_key = ["/id"]
"#,
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(api.lines(), ["POST /query?v=2"; 3]);
    let bodies: Vec<Option<Value>> = api.seen().into_iter().map(|s| s.body).collect();
    let filter = json!({ "status": "open" });
    assert_eq!(
        bodies,
        [
            Some(json!({ "filter": filter, "page": { "size": 5 } })),
            Some(json!({ "filter": filter, "page": { "size": 5, "after": "c5" } })),
            Some(json!({ "filter": filter, "page": { "size": 5, "after": "c10" } })),
        ]
    );
}

/// Offset paging on `skip`/`take`, at most `cap` records a page, with the
/// total in the body, in a header, or nowhere.
fn offset_api(
    cap: usize,
    total: &'static str,
) -> impl Fn(&Seen, &[Value]) -> Response + Send + Sync + 'static {
    move |seen, data| {
        let start = seen.number("skip").unwrap_or(0);
        let take = seen.number("take").unwrap_or(0).min(cap);
        let page = window(data, start, take);
        match total {
            "body" => json(json!({ "data": page, "meta": { "total": data.len() } })),
            "header" => {
                let mut response = json(json!({ "data": page }));
                response
                    .headers_mut()
                    .insert("x-total-count", data.len().into());
                response
            }
            _ => json(json!({ "data": page })),
        }
    }
}

fn offset_job(base: &str, limit: u64, total: &str) -> String {
    format!(
        "[request]\nurl = \"{base}/items\"\n[pagination]\ntype = \"offset\"\noffset_param = \"skip\"\nlimit_param = \"take\"\nlimit = {limit}\n{total}\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n"
    )
}

/// The skip of every request, ascending: streams with a total fetch pages
/// ahead, so requests arrive in any order (still once each).
fn skips(api: &Api) -> Vec<usize> {
    let mut skips: Vec<usize> = api
        .seen()
        .iter()
        .map(|s| s.number("skip").unwrap_or(usize::MAX))
        .collect();
    skips.sort_unstable();
    skips
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_stops_at_the_total_from_the_body_or_a_header() {
    for (total, key, records) in [
        ("body", "total_path = \"/meta/total\"", 23),
        ("header", "total_header = \"X-Total-Count\"", 20),
    ] {
        let api = Api::start(data(records), offset_api(PAGE, total)).await;
        let project = project(&offset_job(&api.base, 5, key));
        run_ok(&project).await;
        assert_table(&project, &api);
        // No request past the total, not even for an empty page.
        assert_eq!(
            skips(&api),
            [0, 5, 10, 15, 20][..records.div_ceil(5) as usize]
        );
        assert_eq!(params(&api, "take"), some(&vec!["5"; skips(&api).len()]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_without_a_total_stops_on_an_empty_page() {
    let api = Api::start(data(20), offset_api(PAGE, "none")).await;
    let project = project(&offset_job(&api.base, 5, ""));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(skips(&api), [0, 5, 10, 15, 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_advance_by_records_received_when_the_server_caps_pages() {
    // limit 10, but the server sends at most 4 (PostgREST's db-max-rows).
    let api = Api::start(data(23), offset_api(4, "body")).await;
    let project = project(&offset_job(&api.base, 10, "total_path = \"/meta/total\""));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(skips(&api), [0, 4, 8, 12, 16, 20]);
    assert_eq!(params(&api, "take"), some(&["10"; 6]));
}

/// Page numbers from 0 on `p`, the page size from `per_page`.
fn numbered(seen: &Seen, data: &[Value]) -> Response {
    let size = seen.number("per_page").unwrap_or(PAGE);
    let page = seen.number("p").or(seen.number("page")).unwrap_or(0);
    let start = match seen.param("p") {
        Some(_) => page * size,
        None => page.saturating_sub(1) * size,
    };
    json(json!({ "data": window(data, start, size), "total_pages": data.len().div_ceil(size) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbers_stop_at_total_pages_counted_from_start() {
    let api = Api::start(data(23), numbered).await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"page\"\npage_param = \"p\"\nstart = 0\nsize_param = \"per_page\"\nsize = 5\ntotal_pages_path = \"/total_pages\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    // Pages are fetched ahead, so they arrive in any order.
    let mut lines = api.lines();
    lines.sort();
    assert_eq!(
        lines,
        (0..5)
            .map(|p| format!("GET /items?p={p}&per_page=5"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbers_with_defaults_stop_on_an_empty_page() {
    let api = Api::start(data(25), numbered).await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"page\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(
        api.lines(),
        (1..=6)
            .map(|p| format!("GET /items?page={p}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_more_false_stops_although_a_cursor_is_given() {
    // The server always hands out a next cursor; only has_more says stop.
    // The first page leaves has_more out, which means "continue".
    let api = Api::start(data(23), |seen, data| {
        let start = seen.number("cursor").unwrap_or(0);
        let end = start + PAGE;
        let mut body = json!({ "data": window(data, start, PAGE), "next": end.to_string() });
        if start > 0 {
            body["has_more"] = json!(end < data.len());
        }
        json(body)
    })
    .await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"cursor\"\nhas_more_path = \"/has_more\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(
        params(&api, "cursor"),
        [
            None,
            Some("5".into()),
            Some("10".into()),
            Some("15".into()),
            Some("20".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pages_stops_the_stream_and_the_next_run_starts_over() {
    let api = Api::start(data(40), offset_api(PAGE, "body")).await;
    let project = project(&offset_job(
        &api.base,
        5,
        "total_path = \"/meta/total\"\nmax_pages = 3",
    ));
    run_ok(&project).await;
    assert_eq!(project.rows("items"), window(&api.data(), 0, 15));
    assert_eq!(skips(&api), [0, 5, 10]);
    // The stream finished at max_pages: no checkpoint, the next run restarts.
    api.clear_seen();
    run_ok(&project).await;
    assert_eq!(skips(&api), [0, 5, 10]);
    assert_eq!(project.rows("items"), window(&api.data(), 0, 15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_fails_with_the_page_url_and_keeps_earlier_pages() {
    // The page fetched with cursor 10 hands out cursor 10 again.
    let api = Api::start(data(30), |seen, data| {
        let start = seen.number("cursor").unwrap_or(0);
        let next = if start == 10 { 10 } else { start + PAGE };
        json(json!({ "data": window(data, start, PAGE), "next": next.to_string() }))
    })
    .await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"cursor\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("{}/items?cursor=10", api.base)),
        "the error names the page URL: {text}"
    );
    assert!(text.contains("a cursor this stream already used"), "{text}");
    assert_eq!(api.lines().len(), 3, "no request after the repeat");
    assert_eq!(project.rows("items"), window(&api.data(), 0, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_next_url_or_link_fails_with_the_page_url() {
    for kind in ["next_url", "link_header"] {
        // The page at from=10 points at itself.
        let api = Api::start(data(30), move |seen, data| {
            let from = seen.number("from").unwrap_or(0);
            let next = format!("/items?from={}", if from == 10 { 10 } else { from + PAGE });
            let body = json(json!({ "data": window(data, from, PAGE), "next": next }));
            with_links(body, &[format!("<{next}>; rel=\"next\"")])
        })
        .await;
        let extra = match kind {
            "next_url" => "next_url_path = \"/next\"\n",
            _ => "",
        };
        let project = project(&format!(
            "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"{kind}\"\n{extra}[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
            api.base
        ));
        let output = project.run(&["run"]).await;
        let text = describe(&output);
        assert_eq!(output.status.code(), Some(1), "{kind}: {text}");
        assert!(
            text.contains(&format!("{}/items?from=10", api.base)),
            "{kind}: the error names the page URL: {text}"
        );
        assert!(
            text.contains("a next URL this stream already followed"),
            "{kind}: {text}"
        );
        assert_eq!(api.lines().len(), 3, "{kind}: no request after the repeat");
        assert_eq!(project.rows("items"), window(&api.data(), 0, 10), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_a_last_record_cursor_fails_instead_of_looping() {
    // The API ignores `since_id`: every page is the first one, so the last
    // record's id (the next cursor) repeats.
    let api = Api::start(data(12), |_, data| {
        json(json!({ "data": window(data, 0, PAGE) }))
    })
    .await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"cursor\"\ncursor_from = \"last_record\"\ncursor_path = \"/id\"\ncursor_param = \"since_id\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("{}/items?since_id=5", api.base))
            && text.contains("a cursor this stream already used"),
        "{text}"
    );
    assert_eq!(params(&api, "since_id"), [None, Some("5".to_string())]);
    assert_eq!(project.rows("items"), window(&api.data(), 0, PAGE));
}

/// A page of `PAGE` records from the `after` cursor; the next cursor is in
/// the `X-Next-Cursor` header (empty on the last page), and the body's
/// `next` is a decoy.
fn header_cursor_page(seen: &Seen, data: &[Value]) -> Response {
    let start = seen.number("after").unwrap_or(0);
    let end = start + PAGE;
    let next = if end < data.len() {
        end.to_string()
    } else {
        String::new()
    };
    let mut response = json(json!({ "data": window(data, start, PAGE), "next": "decoy" }));
    let value = axum::http::HeaderValue::from_str(&next).expect("a header value");
    response.headers_mut().insert("x-next-cursor", value);
    response
}

/// The job for [`header_cursor_page`], with `more` appended.
fn header_cursor_job(base: &str, more: &str) -> String {
    format!(
        "[request]\nurl = \"{base}/items\"\n[pagination]\ntype = \"cursor\"\ncursor_from = \"header\"\ncursor_header = \"X-Next-Cursor\"\ncursor_param = \"after\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n{more}"
    )
}

/// The POST search job that pages by offset in the body, with `more`
/// appended.
fn body_offset_job(base: &str, more: &str) -> String {
    format!(
        r#"[request]
url = "{base}/search"
method = "POST"
body = {{ filter = "open" }}
[pagination]
type = "offset"
param_in = "body"
offset_param = "/paging/from"
limit_param = "/paging/size"
limit = 5
[records]
path = "/hits"
primary_key = ["/id"]
{more}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_from_a_response_header_until_it_is_empty() {
    // The body's decoy `next` is ignored: the cursor is the header's.
    let api = Api::start(data(23), header_cursor_page).await;
    let project = project(&header_cursor_job(&api.base, ""));
    run_ok(&project).await;
    assert_table(&project, &api);
    // The last page's header is empty: five requests, none after it.
    let expected: Vec<Option<String>> = [None]
        .into_iter()
        .chain(some(&["5", "10", "15", "20"]))
        .collect();
    assert_eq!(params(&api, "after"), expected);
}

/// A POST search API that reads its paging from the body as integers
/// only (a string there is refused), at `/paging/<name>`.
fn body_integer(seen: &Seen, name: &str) -> Option<usize> {
    let body = seen.body.as_ref()?;
    let value = body.pointer(&format!("/paging/{name}"))?;
    value.as_u64().map(|n| n as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_parameters_in_a_post_body() {
    let api = Api::start(data(13), |seen, data| {
        if seen.method != "POST" || seen.query.is_some() {
            return json(json!({ "error": "POST without a query only" }));
        }
        let (Some(from), Some(size)) = (body_integer(seen, "from"), body_integer(seen, "size"))
        else {
            return json(json!({ "error": "paging missing" }));
        };
        json(json!({ "hits": window(data, from, size) }))
    })
    .await;
    let project = project(&body_offset_job(&api.base, ""));
    run_ok(&project).await;
    assert_table(&project, &api);
    // 5 + 5 + 3 records, then the empty page at 13 ends the stream.
    assert_eq!(api.lines(), ["POST /search"; 4]);
    let bodies: Vec<Option<Value>> = api.seen().into_iter().map(|s| s.body).collect();
    let body = |from: u64| Some(json!({ "filter": "open", "paging": { "from": from, "size": 5 } }));
    assert_eq!(bodies, [body(0), body(5), body(10), body(13)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_parameters_in_a_post_body() {
    let api = Api::start(data(13), |seen, data| {
        if seen.method != "POST" || seen.query.is_some() {
            return json(json!({ "error": "POST without a query only" }));
        }
        let (Some(page), Some(size)) = (body_integer(seen, "page"), body_integer(seen, "size"))
        else {
            return json(json!({ "error": "paging missing" }));
        };
        let pages = data.len().div_ceil(size);
        json(json!({ "hits": window(data, page * size, size), "pages": pages }))
    })
    .await;
    let project = project(&format!(
        r#"[request]
url = "{}/search"
method = "POST"
[pagination]
type = "page"
param_in = "body"
page_param = "/paging/page"
start = 0
size_param = "/paging/size"
size = 5
total_pages_path = "/pages"
[records]
path = "/hits"
primary_key = ["/id"]
"#,
        api.base
    ));
    run_ok(&project).await;
    assert_table(&project, &api);
    assert_eq!(api.lines(), ["POST /search"; 3]);
    // With the total known, pages 1 and 2 may be fetched ahead, in any order.
    let mut bodies: Vec<Option<Value>> = api.seen().into_iter().map(|s| s.body).collect();
    bodies.sort_by_key(|b| b.as_ref().and_then(|b| b.pointer("/paging/page")?.as_u64()));
    let body = |page: u64| Some(json!({ "paging": { "page": page, "size": 5 } }));
    assert_eq!(bodies, [body(0), body(1), body(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_value_in_the_body_ends_pagination_at_that_page() {
    // The server would answer full pages up to its (wrong) total of 20;
    // its third page says `end_of_stream = true` (the earlier ones false)
    // and is the last asked for: the total alone would let pages be
    // fetched ahead past it.
    let api = Api::start(data(100), |seen, data| {
        let page = seen.number("page").unwrap_or(1);
        json(json!({
            "data": window(data, (page - 1) * PAGE, PAGE),
            "end_of_stream": page == 3,
            "total_pages": 20,
        }))
    })
    .await;
    let project = project(&format!(
        "[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"page\"\ntotal_pages_path = \"/total_pages\"\nstop_path = \"/end_of_stream\"\nstop_value = true\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        api.base
    ));
    // Room to fetch ahead, were it allowed.
    project.config("concurrency = 8\n");
    run_ok(&project).await;
    assert_eq!(project.rows("items"), data(15), "the stop page is written");
    assert_eq!(params(&api, "page"), some(&["1", "2", "3"]));
}

/// The first request for `failing` gets a 400 (not retried: the run
/// fails there); every later one is answered by `answer`.
fn fail_once(
    failing: impl Fn(&Seen) -> bool + Send + Sync + 'static,
    answer: impl Fn(&Seen, &[Value]) -> Response + Send + Sync + 'static,
) -> impl Fn(&Seen, &[Value]) -> Response + Send + Sync + 'static {
    use axum::response::IntoResponse;
    let failed = std::sync::atomic::AtomicBool::new(false);
    move |seen, data| {
        if failing(seen) && !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return (axum::http::StatusCode::BAD_REQUEST, "refused once").into_response();
        }
        answer(seen, data)
    }
}

/// A failed run, then a rerun that succeeds: the rerun's requests only.
async fn fail_then_rerun(project: &Project, api: &Api) -> Vec<Seen> {
    let failed = project.run(&["run"]).await;
    assert!(!failed.status.success(), "{}", describe(&failed));
    let before = api.seen().len();
    run_ok(project).await;
    api.seen().split_off(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_cursor_stream_that_failed_resumes_at_the_saved_cursor() {
    let api = Api::start(
        data(23),
        fail_once(|seen| seen.param("after") == Some("10"), header_cursor_page),
    )
    .await;
    let project = project(&header_cursor_job(
        &api.base,
        "[output]\nmode = \"append\"\n",
    ));
    let rerun = fail_then_rerun(&project, &api).await;
    // Append mode: a page fetched twice would be two rows.
    assert_table(&project, &api);
    let cursors: Vec<Option<&str>> = rerun.iter().map(|s| s.param("after")).collect();
    assert_eq!(
        cursors,
        [Some("10"), Some("15"), Some("20")],
        "the rerun starts at the cursor the failed page was asked with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_offset_stream_that_failed_resumes_at_the_saved_offset() {
    let api = Api::start(
        data(13),
        fail_once(
            |seen| body_integer(seen, "from") == Some(10),
            |seen, data| {
                let from = body_integer(seen, "from").unwrap_or(usize::MAX);
                json(json!({ "hits": window(data, from, PAGE) }))
            },
        ),
    )
    .await;
    let project = project(&body_offset_job(&api.base, "[output]\nmode = \"append\"\n"));
    let rerun = fail_then_rerun(&project, &api).await;
    assert_table(&project, &api);
    let bodies: Vec<Option<Value>> = rerun.into_iter().map(|s| s.body).collect();
    let body = |from: u64| Some(json!({ "filter": "open", "paging": { "from": from, "size": 5 } }));
    assert_eq!(
        bodies,
        [body(10), body(13)],
        "the rerun starts at the offset of the failed page, in the body"
    );
}
