//! A server that echoes what it was sent (the request URL with its api_key,
//! the Authorization header) must not make apisync leak a credential: not
//! in stdout or stderr at any verbosity, not in any text stored in the
//! database, not in `status` or `status --json`.

mod common;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use common::{Project, describe};

/// The api key: characters that URL encoding changes, around a marker that
/// every percent-encoding keeps intact.
const KEY: &str = "sk_SECRETVALUE+/= 9";
const USER: &str = "alice";
const PASSWORD: &str = "pw:MARKERPASS w0rd/x";

/// 400 with the request URL as the server saw it (the key URL-encoded) and
/// as decoded, and the Authorization header, both in the body and in a
/// header.
async fn echo(request: Request) -> Response {
    let uri = request.uri().to_string();
    let decoded: String =
        url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = format!("bad request: {uri} ({decoded}) authorization: {auth}");
    (StatusCode::BAD_REQUEST, [("x-echo", auth)], body).into_response()
}

/// 401 whose challenge quotes the Authorization header it was sent.
async fn challenge(request: Request) -> Response {
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let challenge = format!("Basic realm=\"x\", error_description=\"you sent {auth}\"");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        auth,
    )
        .into_response()
}

async fn api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/keyed", get(echo))
        .route("/basic", get(echo))
        .route("/challenged", get(challenge));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn project(base: &str) -> Project {
    let project = Project::new();
    project.config(
        "[auth.keyed]\ntype = \"api_key\"\nquery = \"api_key\"\nkey = { env = \"LEAK_KEY\" }\n\
         [auth.intranet]\ntype = \"basic\"\nusername = { env = \"LEAK_USER\" }\npassword = { env = \"LEAK_PASS\" }\n",
    );
    let job = |auth: &str, path: &str| {
        format!(
            "auth = \"{auth}\"\n[request]\nurl = \"{base}/{path}\"\n[records]\npath = \"/data\"\n\
             [output]\nmode = \"append\"\n[retry]\nmax_attempts = 1\n"
        )
    };
    project.job("keyed", &job("keyed", "keyed"));
    project.job("basic", &job("intranet", "basic"));
    project.job("challenged", &job("intranet", "challenged"));
    project
}

/// Every form of the credentials a leak could take.
fn forbidden() -> Vec<String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    vec![
        KEY.to_string(),
        url::form_urlencoded::byte_serialize(KEY.as_bytes()).collect(),
        // Every percent-encoding keeps these letters as they are.
        "SECRETVALUE".to_string(),
        PASSWORD.to_string(),
        "MARKERPASS".to_string(),
        basic,
    ]
}

fn assert_clean(what: &str, text: &str) {
    for secret in forbidden() {
        assert!(!text.contains(&secret), "{what} holds {secret:?}:\n{text}");
    }
}

async fn run(project: &Project, args: &[&str]) -> std::process::Output {
    project
        .command(args)
        .env("LEAK_KEY", KEY)
        .env("LEAK_USER", USER)
        .env("LEAK_PASS", PASSWORD)
        .output()
        .await
        .expect("run apisync")
}

#[tokio::test]
async fn echoed_credentials_reach_no_output_no_table_and_no_status() {
    let base = api().await;
    let project = project(&base);
    for verbosity in [None, Some("-v"), Some("-vv")] {
        let mut args = vec!["run"];
        args.extend(verbosity);
        let output = run(&project, &args).await;
        // The jobs fail (the server refuses them) and say why.
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let text = common::text(&output);
        assert!(text.contains("returned 400"), "{}", describe(&output));
        assert!(text.contains("bad request"), "{}", describe(&output));
        assert!(text.contains("401"), "{}", describe(&output));
        assert_clean(&format!("run {verbosity:?}"), &text);
    }
    let stored = project.database_text();
    assert!(
        stored.contains("bad request"),
        "the error is stored: {stored}"
    );
    assert_clean("the database", &stored);
    for args in [&["status"][..], &["status", "--json"]] {
        let output = run(&project, args).await;
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let text = common::text(&output);
        assert!(text.contains("keyed"), "{args:?}: {}", describe(&output));
        assert_clean(&format!("{args:?}"), &text);
    }
}

/// A paged API that writes the api_key it was sent into its next links (as
/// many do), answers 503 once on page 2 (a retry), and, once `fail` is set,
/// refuses page 3 with a 400 that echoes the request.
async fn paged_api(fail: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let page_two_calls = std::sync::Arc::new(AtomicUsize::new(0));
    let link_base = base.clone();
    let handler = move |request: Request| {
        let fail: std::sync::Arc<AtomicBool> = fail.clone();
        let calls = page_two_calls.clone();
        let link_base = link_base.clone();
        async move {
            let query: Vec<(String, String)> =
                url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let get = |name: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let key = get("api_key").unwrap_or_default();
            let page: u64 = get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let next = |page: u64| {
                let mut url = url::Url::parse(&format!("{link_base}/paged")).unwrap();
                url.query_pairs_mut()
                    .append_pair("page", &page.to_string())
                    .append_pair("api_key", &key);
                url.to_string()
            };
            let body = match page {
                1 => serde_json::json!({"data": [{"id": 1}], "next": next(2)}),
                2 if calls.fetch_add(1, Ordering::SeqCst) == 0 => {
                    return (StatusCode::SERVICE_UNAVAILABLE, format!("busy, key {key}"))
                        .into_response();
                }
                2 => serde_json::json!({"data": [{"id": 2}], "next": next(3)}),
                _ if fail.load(Ordering::SeqCst) => return echo(request).await,
                _ => serde_json::json!({"data": [], "next": null}),
            };
            axum::Json(body).into_response()
        }
    };
    let app = Router::new().route("/paged", get(handler));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// issue 21: "secrets never in the database", after runs that use a
/// query-string key, a server that echoes it into next links (saved as the
/// checkpoint of a failed stream), a retry, a mark and a stored error.
#[tokio::test]
async fn no_table_holds_a_query_key_after_echoed_links_retries_marks_and_failures() {
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let base = paged_api(fail.clone()).await;
    let project = Project::new();
    project.config(
        "[auth.keyed]\ntype = \"api_key\"\nquery = \"api_key\"\nkey = { env = \"LEAK_KEY\" }\n",
    );
    project.job(
        "paged",
        &format!(
            "auth = \"keyed\"\n[request]\nurl = \"{base}/paged\"\n\
             [pagination]\ntype = \"next_url\"\nnext_url_path = \"/next\"\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
             [incremental]\ncursor_field = \"/id\"\ncursor_type = \"integer\"\nparam = \"since\"\n\
             [retry]\nmax_attempts = 3\ninitial_backoff = \"1ms\"\n"
        ),
    );
    let first = run(&project, &["run"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_clean("the first run's output", &common::text(&first));
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = run(&project, &["run"]).await;
    assert_eq!(second.status.code(), Some(1), "{}", describe(&second));
    assert_clean("the failed run's output", &common::text(&second));

    let stored = project.database_text();
    // What the scan must have seen, so that a clean scan means something.
    assert!(
        stored.contains("page=3"),
        "the failed stream's checkpoint: {stored}"
    );
    assert!(stored.contains("bad request"), "the stored error: {stored}");
    let marks: i64 = project
        .open()
        .query_row("SELECT count(*) FROM _apisync_marks", [], |row| row.get(0))
        .unwrap();
    assert_eq!(marks, 1, "the first run's mark");
    assert_clean("the database", &stored);
}

/// A cursor API that hands the api_key it was sent back as the next
/// page's cursor (an echo). The cursor would be saved as the stream's
/// checkpoint and sent back as a query parameter: the stream fails at that
/// page instead, and the key is in no table.
#[tokio::test]
async fn a_credential_echoed_as_the_next_cursor_is_neither_saved_nor_sent() {
    async fn echo_cursor(request: Request) -> Response {
        let key = url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        axum::Json(serde_json::json!({ "data": [{ "id": 1 }, { "id": 2 }], "next": key }))
            .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let app = Router::new().route(
        "/items",
        get(move |request: Request| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            echo_cursor(request)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let project = Project::new();
    project.config(
        "[auth.keyed]\ntype = \"api_key\"\nquery = \"api_key\"\nkey = { env = \"LEAK_KEY\" }\n",
    );
    project.job(
        "items",
        &format!(
            "auth = \"keyed\"\n[request]\nurl = \"{base}/items\"\n\
             [pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"after\"\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[retry]\nmax_attempts = 1\n"
        ),
    );
    let output = run(&project, &["run", "-vv"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = common::text(&output);
    assert!(
        text.contains("returned a credential of this job in the next page's cursor"),
        "{}",
        describe(&output)
    );
    assert_clean("the run's output", &text);
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no request carries the echoed key as a cursor"
    );
    assert_clean("the database", &project.database_text());
}
