//! A hostile server that knows the credential (it was sent it) and places
//! it where apisync cuts server text short: across the end of the quoted
//! error body, of an `error_path` value, of a non-JSON body, of an OAuth
//! `error_description`. Scrubbed after the cut, all but the last
//! characters of the credential would reach stderr, the runs table and
//! `status`. And a next URL that carries the credential (the Graph API's
//! `paging.next` holds `access_token`) must not be stored as the position.

mod common;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{Project, describe};

/// No character that any encoding changes: the raw form is the only one.
const KEY: &str = "sk_CUTSECRET_0123456789abcdef";
const CLIENT_SECRET: &str = "cs_CUTSECRET_fedcba9876543210";
/// What would show of a credential cut before its last character.
const MARKER: &str = "CUTSECRET";

/// `filler` characters, then `secret`, placed so that a cut after `limit`
/// characters keeps all of `secret` but its last character.
fn across(limit: usize, secret: &str) -> String {
    format!(
        "{}{secret} and more text after it",
        "x".repeat(limit + 1 - secret.len())
    )
}

async fn status_body() -> Response {
    // The quoted start of an error body is 300 bytes.
    (StatusCode::BAD_REQUEST, across(300, KEY)).into_response()
}

async fn error_path() -> Response {
    // A value at records.error_path is quoted up to 200 characters; the
    // opening quote of the JSON string is the first of them.
    let body = serde_json::json!({ "data": [], "error": across(199, KEY) });
    (StatusCode::OK, body.to_string()).into_response()
}

async fn not_json() -> Response {
    // A body that is not JSON is quoted up to 60 characters.
    (StatusCode::OK, across(60, KEY)).into_response()
}

async fn token(_request: Request) -> Response {
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": across(300, CLIENT_SECRET),
    });
    (StatusCode::BAD_REQUEST, body.to_string()).into_response()
}

/// 400 whose description quotes the client_secret_basic header it was sent.
async fn token_echo(request: Request) -> Response {
    let auth = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": format!("you sent {auth}"),
    });
    (StatusCode::BAD_REQUEST, body.to_string()).into_response()
}

/// The base64 of `client_id:client_secret`, as client_secret_basic sends it.
fn basic_base64() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("cid-cut:{CLIENT_SECRET}"))
}

async fn api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/status_body", get(status_body))
        .route("/error_path", get(error_path))
        .route("/not_json", get(not_json))
        .route("/oauth", get(|| async { "{\"data\":[]}" }))
        .route("/token", post(token))
        .route("/token_echo", post(token_echo));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn project(base: &str) -> Project {
    let project = Project::new();
    project.config(&format!(
        "[auth.keyed]\ntype = \"api_key\"\nheader = \"X-Api-Key\"\nkey = {{ env = \"CUT_KEY\" }}\n\
         [auth.acme]\ntype = \"oauth2_client_credentials\"\ntoken_url = \"{base}/token\"\n\
         client_id = \"cid-cut\"\nclient_secret = {{ env = \"CUT_CLIENT_SECRET\" }}\n\
         [auth.echo]\ntype = \"oauth2_client_credentials\"\ntoken_url = \"{base}/token_echo\"\n\
         client_id = \"cid-cut\"\nclient_secret = {{ env = \"CUT_CLIENT_SECRET\" }}\n"
    ));
    let job = |auth: &str, path: &str, records: &str| {
        format!(
            "auth = \"{auth}\"\n[request]\nurl = \"{base}/{path}\"\n[records]\npath = \"/data\"\n{records}\
             [output]\nmode = \"append\"\n[retry]\nmax_attempts = 1\n"
        )
    };
    project.job("status_body", &job("keyed", "status_body", ""));
    project.job(
        "error_path",
        &job("keyed", "error_path", "error_path = \"/error\"\n"),
    );
    project.job("not_json", &job("keyed", "not_json", ""));
    project.job("oauth", &job("acme", "oauth", ""));
    project.job("oauth_echo", &job("echo", "oauth", ""));
    project
}

async fn run(project: &Project, args: &[&str]) -> std::process::Output {
    project
        .command(args)
        .env("CUT_KEY", KEY)
        .env("CUT_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .await
        .expect("run apisync")
}

#[tokio::test]
async fn a_credential_placed_across_a_cut_is_not_shown_in_part() {
    let base = api().await;
    let project = project(&base);
    for verbosity in [None, Some("-vv")] {
        let mut args = vec!["run"];
        args.extend(verbosity);
        let output = run(&project, &args).await;
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let text = common::text(&output);
        // Every job failed and was quoted (the filler shows).
        assert!(text.contains("returned 400"), "{}", describe(&output));
        assert!(text.contains("reports an error"), "{}", describe(&output));
        assert!(text.contains("not JSON"), "{}", describe(&output));
        assert!(text.contains("invalid_client"), "{}", describe(&output));
        assert!(text.contains("you sent"), "{}", describe(&output));
        assert!(
            !text.contains(MARKER),
            "run {verbosity:?} shows a cut credential:\n{text}"
        );
        assert!(
            !text.contains(&basic_base64()),
            "run {verbosity:?} shows the client credentials in base64:\n{text}"
        );
    }
    let stored = project.database_text();
    assert!(stored.contains("xxxxxxxx"), "errors are stored: {stored}");
    assert!(!stored.contains(MARKER), "the database: {stored}");
    assert!(!stored.contains(&basic_base64()), "the database: {stored}");
    for args in [&["status"][..], &["status", "--json"]] {
        let output = run(&project, args).await;
        let text = common::text(&output);
        assert!(text.contains("status_body"), "{}", describe(&output));
        assert!(!text.contains(MARKER), "{args:?}: {text}");
        assert!(!text.contains(&basic_base64()), "{args:?}: {text}");
    }
}

const TOKEN: &str = "tok_NEXTSECRET_0123456789";

/// Page 1 links page 2 with the token in its query, as the Graph API's
/// `paging.next` does; page 2 fails, so the position stays stored.
async fn graph(request: Request) -> Response {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if request.uri().query().is_some() {
        return (StatusCode::NOT_FOUND, "gone").into_response();
    }
    let host = request.headers().get("host").unwrap().to_str().unwrap();
    let next = format!("http://{host}/graph?after=2&access_token={token}");
    let body = serde_json::json!({ "data": [{ "id": 1 }], "next": next });
    (StatusCode::OK, body.to_string()).into_response()
}

/// Fails on this commit: the position stored in `_apisync_checkpoints` is
/// the next URL as the server sent it, token and all, and `status` prints
/// it (its process has no credentials registered, so nothing would be
/// scrubbed there even if positions were scrubbed on output).
#[tokio::test]
async fn a_credential_in_a_next_url_is_not_stored_or_shown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/graph", get(graph));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let project = Project::new();
    project.job(
        "graph",
        &format!(
            "auth = {{ type = \"bearer\", token = {{ env = \"NEXT_TOKEN\" }} }}\n\
             [request]\nurl = \"{base}/graph\"\n[pagination]\ntype = \"next_url\"\n\
             next_url_path = \"/next\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
             [retry]\nmax_attempts = 1\n"
        ),
    );
    let output = project
        .command(&["run"])
        .env("NEXT_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        !common::text(&output).contains("NEXTSECRET"),
        "{}",
        describe(&output)
    );
    let stored = project.database_text();
    assert!(
        stored.contains("after=2"),
        "the position is stored: {stored}"
    );
    assert!(!stored.contains("NEXTSECRET"), "the database: {stored}");
    for args in [&["status"][..], &["status", "--json"]] {
        let output = project.command(args).output().await.unwrap();
        let text = common::text(&output);
        assert!(text.contains("after=2"), "{}", describe(&output));
        assert!(!text.contains("NEXTSECRET"), "{args:?}: {text}");
    }
}
