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
