//! OAuth2 token sources against a real token endpoint on 127.0.0.1: client
//! authentication, single-flight refresh, retries, final errors, refresh
//! token rotation across runs and processes, and that nothing leaks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apisync::auth::{Credential, Credentials, NoTokenStore, Placement, RefreshOutcome, TokenStore};
use apisync::plan::{AuthPlan, ClientAuthMethod, OAuthPlan, SecretSource};
use apisync::secret::Secret;
use apisync::token_store::SqliteTokenStore;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;

const CLIENT_ID: &str = "client:one";
const CLIENT_SECRET: &str = "s3cr/t+with:odd%chars é";

/// What the endpoint saw of one token request.
#[derive(Debug, Clone)]
struct Seen {
    query: Option<String>,
    content_type: String,
    form: HashMap<String, String>,
    /// Client id and secret, decoded from Basic or taken from the body.
    client: Option<(String, String)>,
    basic: bool,
}

#[derive(Default)]
struct Server {
    seen: Mutex<Vec<Seen>>,
    issued: AtomicU64,
    /// Lifetime of the next tokens (any JSON: a number or a string).
    expires_in: Mutex<serde_json::Value>,
    /// Answer 503 (Retry-After: 0) this many times first.
    unavailable: AtomicU32,
    invalid_client: AtomicBool,
    /// Each refresh grant answers with a new refresh token and retires the old.
    rotate: AtomicBool,
    valid_refresh: Mutex<HashSet<String>>,
    refresh_uses: Mutex<HashMap<String, u32>>,
    /// While set, token answers wait for `release` after announcing `arrived`.
    gate: AtomicBool,
    arrived: tokio::sync::Notify,
    release: Gate,
}

/// Permits to answer, none at first.
struct Gate(tokio::sync::Semaphore);

impl Default for Gate {
    fn default() -> Self {
        Gate(tokio::sync::Semaphore::new(0))
    }
}

impl Server {
    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn uses(&self, refresh_token: &str) -> u32 {
        self.refresh_uses
            .lock()
            .unwrap()
            .get(refresh_token)
            .copied()
            .unwrap_or(0)
    }
}

fn client_of(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (Option<(String, String)>, bool) {
    if let Some(value) = headers.get("authorization") {
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let decoded = String::from_utf8(decoded).unwrap();
        let (id, secret) = decoded.split_once(':').unwrap();
        let unescape = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        };
        return (Some((unescape(id), unescape(secret))), true);
    }
    let pair = form.get("client_id").zip(form.get("client_secret"));
    (pair.map(|(i, s)| (i.clone(), s.clone())), false)
}

async fn token(
    State(server): State<Arc<Server>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    let (client, basic) = client_of(&headers, &form);
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    server.seen.lock().unwrap().push(Seen {
        query,
        content_type: content_type.unwrap_or_default(),
        form: form.clone(),
        client: client.clone(),
        basic,
    });
    if server.unavailable.load(Ordering::SeqCst) > 0 {
        server.unavailable.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "busy",
        )
            .into_response();
    }
    let right_client = client == Some((CLIENT_ID.into(), CLIENT_SECRET.into()));
    if server.invalid_client.load(Ordering::SeqCst) || !right_client {
        // A careless server that echoes the secret back.
        let description = format!("bad secret {CLIENT_SECRET}");
        let body = json!({"error": "invalid_client", "error_description": description});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let n = server.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let mut answer = json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": server.expires_in.lock().unwrap().clone(),
        "unknown_field": {"ignored": true},
    });
    if let Some(refused) = rotate(&server, &form, n, &mut answer) {
        return refused;
    }
    // Held after the server has issued (and rotated): an answer in flight.
    if server.gate.load(Ordering::SeqCst) {
        server.arrived.notify_one();
        server.release.0.acquire().await.unwrap().forget();
    }
    axum::Json(answer).into_response()
}

/// A refresh grant: refuse a spent refresh token, rotate a valid one.
fn rotate(
    server: &Server,
    form: &HashMap<String, String>,
    n: u64,
    answer: &mut serde_json::Value,
) -> Option<Response> {
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let used = form["refresh_token"].clone();
        *server
            .refresh_uses
            .lock()
            .unwrap()
            .entry(used.clone())
            .or_default() += 1;
        let mut valid = server.valid_refresh.lock().unwrap();
        if !valid.contains(&used) {
            let body =
                json!({"error": "invalid_grant", "error_description": "refresh token reused"});
            return Some((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
        }
        if server.rotate.load(Ordering::SeqCst) {
            valid.remove(&used);
            let fresh = format!("rt-{}", n + 1);
            valid.insert(fresh.clone());
            answer["refresh_token"] = json!(fresh);
        }
    }
    None
}

async fn start() -> (Arc<Server>, url::Url) {
    let server = Arc::new(Server::default());
    *server.expires_in.lock().unwrap() = json!(3600);
    server.valid_refresh.lock().unwrap().insert("rt-1".into());
    let app = axum::Router::new()
        .route("/oauth/token", post(token))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/oauth/token?tenant=acme",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, url.parse().unwrap())
}

fn oauth(url: &url::Url, client_auth: ClientAuthMethod) -> OAuthPlan {
    OAuthPlan {
        token_url: url.clone(),
        client_id: SecretSource::Plain(Secret::new(CLIENT_ID)),
        client_secret: Some(SecretSource::Plain(Secret::new(CLIENT_SECRET))),
        scopes: vec!["orders:read".into(), "orders:write".into()],
        client_auth,
        refresh_before: Duration::from_secs(60),
        audience: Some("https://api.acme.example".into()),
        default_lifetime: Duration::from_secs(3600),
    }
}

fn refresh_plan(url: &url::Url) -> AuthPlan {
    AuthPlan::RefreshToken {
        oauth: oauth(url, ClientAuthMethod::Basic),
        refresh_token: SecretSource::Plain(Secret::new("rt-1")),
    }
}

/// The credential named "acme", built as the process builds it.
fn credential(plan: AuthPlan, store: Arc<dyn TokenStore>) -> Arc<Credential> {
    let auths = BTreeMap::from([("acme".to_string(), plan)]);
    let credentials = Credentials::build(&auths, ["acme"], &reqwest::Client::new(), store).unwrap();
    credentials.get("acme").unwrap()
}

async fn bearer(credential: &Credential) -> (String, u64) {
    let applied = credential.current().await.unwrap();
    match applied.placement {
        Placement::Header { name, value } => {
            assert_eq!(name, "Authorization");
            (value.expose().to_string(), applied.generation)
        }
        Placement::Query { .. } => panic!("oauth2 tokens go in a header"),
    }
}

#[tokio::test]
async fn client_secret_basic_form_encodes_odd_characters() {
    let (server, url) = start().await;
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let credential = credential(plan, Arc::new(NoTokenStore));
    assert_eq!(bearer(&credential).await, ("Bearer at-1".to_string(), 1));
    let seen = server.seen.lock().unwrap()[0].clone();
    assert!(seen.basic);
    assert_eq!(seen.client, Some((CLIENT_ID.into(), CLIENT_SECRET.into())));
    assert_eq!(seen.query.as_deref(), Some("tenant=acme"));
    assert_eq!(seen.content_type, "application/x-www-form-urlencoded");
    assert_eq!(seen.form["grant_type"], "client_credentials");
    assert_eq!(seen.form["scope"], "orders:read orders:write");
    assert_eq!(seen.form["audience"], "https://api.acme.example");
    assert!(!seen.form.contains_key("client_secret"));
}

#[tokio::test]
async fn client_secret_post_sends_credentials_in_the_body_only() {
    let (server, url) = start().await;
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Post));
    let credential = credential(plan, Arc::new(NoTokenStore));
    assert_eq!(bearer(&credential).await.0, "Bearer at-1");
    let seen = server.seen.lock().unwrap()[0].clone();
    assert!(!seen.basic);
    assert_eq!(seen.client, Some((CLIENT_ID.into(), CLIENT_SECRET.into())));
    assert_eq!(seen.query.as_deref(), Some("tenant=acme"));
}

/// The expired-token variant (which needs a clock to move) is the unit test
/// of the same name in `auth/oauth/source.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_without_a_token_cause_one_token_request() {
    let (server, url) = start().await;
    *server.expires_in.lock().unwrap() = json!("3600"); // as a string: some providers do
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let credential = credential(plan, Arc::new(NoTokenStore));
    server.gate.store(true, Ordering::SeqCst);

    let start = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (credential, start) = (credential.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                bearer(&credential).await
            })
        })
        .collect();
    server.arrived.notified().await;
    server.release.0.add_permits(64);
    for task in tasks {
        assert_eq!(task.await.unwrap(), ("Bearer at-1".to_string(), 1));
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(credential.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_invalidates_of_one_generation_cause_one_refresh() {
    let (server, url) = start().await;
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let credential = credential(plan, Arc::new(NoTokenStore));
    assert_eq!(bearer(&credential).await.1, 1);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let credential = credential.clone();
            tokio::spawn(async move { credential.invalidate(1).await.unwrap() })
        })
        .collect();
    let mut refreshed = 0;
    for task in tasks {
        if task.await.unwrap() == RefreshOutcome::Refreshed {
            refreshed += 1;
        }
    }
    assert_eq!(refreshed, 1);
    assert_eq!(server.requests(), 2);
    assert_eq!(bearer(&credential).await, ("Bearer at-2".to_string(), 2));
    assert_eq!(
        credential.invalidate(1).await.unwrap(),
        RefreshOutcome::AlreadyNewer
    );
}

#[tokio::test]
async fn invalid_client_fails_fast_once_and_quotes_no_secret() {
    let (server, url) = start().await;
    server.invalid_client.store(true, Ordering::SeqCst);
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let credential = credential(plan, Arc::new(NoTokenStore));
    let error = credential.current().await.unwrap_err().to_string();
    assert!(error.contains("invalid_client"), "{error}");
    assert!(error.contains("bad secret [redacted]"), "{error}");
    assert!(error.contains("hint: check client_id"), "{error}");
    assert!(
        !error.contains(CLIENT_SECRET) && !error.contains("tenant"),
        "{error}"
    );
    assert_eq!(server.requests(), 1);
    // A final error is remembered: no second request for the same answer.
    assert!(credential.current().await.is_err());
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn unavailable_endpoint_is_retried_then_succeeds() {
    let (server, url) = start().await;
    server.unavailable.store(2, Ordering::SeqCst);
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let credential = credential(plan, Arc::new(NoTokenStore));
    assert_eq!(bearer(&credential).await.0, "Bearer at-1");
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn unavailable_endpoint_gives_up_after_a_few_attempts() {
    let (server, url) = start().await;
    server.unavailable.store(100, Ordering::SeqCst);
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let credential = credential(plan, Arc::new(NoTokenStore));
    let error = credential.current().await.unwrap_err().to_string();
    assert!(error.contains("returned 503 after 4 attempt(s)"), "{error}");
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused() {
    let url: url::Url = "http://auth.acme.example/oauth/token".parse().unwrap();
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let auths = BTreeMap::from([("acme".to_string(), plan)]);
    let error = Credentials::build(
        &auths,
        ["acme"],
        &reqwest::Client::new(),
        Arc::new(NoTokenStore),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("must use https"), "{error}");
}

#[tokio::test]
async fn rotated_refresh_token_survives_into_the_next_run() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("apisync.db");

    let first = credential(
        refresh_plan(&url),
        Arc::new(SqliteTokenStore::open(&db).unwrap()),
    );
    assert_eq!(bearer(&first).await.0, "Bearer at-1");
    assert_eq!(
        first.invalidate(1).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    drop(first);

    // The next run is configured with the original, now spent, refresh token.
    let store = Arc::new(SqliteTokenStore::open(&db).unwrap());
    let second = credential(refresh_plan(&url), store.clone());
    assert_eq!(bearer(&second).await.0, "Bearer at-3");
    assert_eq!(server.seen.lock().unwrap()[2].form["refresh_token"], "rt-3");
    assert_eq!(
        (
            server.uses("rt-1"),
            server.uses("rt-2"),
            server.uses("rt-3")
        ),
        (1, 1, 1)
    );
    assert_eq!(store.load("acme").await.unwrap().unwrap().expose(), "rt-4");
}

#[tokio::test]
async fn rotation_without_a_store_is_remembered_in_memory() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    let credential = credential(refresh_plan(&url), Arc::new(NoTokenStore));
    assert_eq!(bearer(&credential).await.1, 1);
    assert_eq!(
        credential.invalidate(1).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    assert_eq!(server.uses("rt-2"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_spend_a_refresh_token_once() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("apisync.db");
    // Separate stores and sources: nothing shared but the database file.
    let one = credential(
        refresh_plan(&url),
        Arc::new(SqliteTokenStore::open(&db).unwrap()),
    );
    let two = credential(
        refresh_plan(&url),
        Arc::new(SqliteTokenStore::open(&db).unwrap()),
    );
    let (a, b) = tokio::join!(
        tokio::spawn(async move { bearer(&one).await }),
        tokio::spawn(async move { bearer(&two).await }),
    );
    let mut tokens = [a.unwrap().0, b.unwrap().0];
    tokens.sort();
    assert_eq!(tokens, ["Bearer at-1", "Bearer at-2"]);
    assert_eq!((server.uses("rt-1"), server.uses("rt-2")), (1, 1));
}

#[tokio::test]
async fn other_token_types_are_refused() {
    let app = axum::Router::new().route(
        "/token",
        post(|| async { axum::Json(json!({"access_token": "x", "token_type": "MAC"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mac_url = format!("http://{}/token", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let plan = AuthPlan::ClientCredentials(oauth(&mac_url, ClientAuthMethod::Basic));
    let error = credential(plan, Arc::new(NoTokenStore))
        .current()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"MAC\"") && error.contains("only bearer"),
        "{error}"
    );
}

/// Collects everything logged, at every level, on this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_debug_errors_or_logs() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    server.unavailable.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteTokenStore::open(&dir.path().join("apisync.db")).unwrap());
    let auths = BTreeMap::from([
        ("crm".to_string(), refresh_plan(&url)),
        (
            "acme".to_string(),
            AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Post)),
        ),
    ]);
    let credentials = Credentials::build(
        &auths,
        ["crm", "acme"],
        &reqwest::Client::new(),
        store.clone(),
    )
    .unwrap();
    let crm = credentials.get("crm").unwrap();
    let applied = crm.current().await.unwrap();
    assert_eq!(
        crm.invalidate(applied.generation).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    server.invalid_client.store(true, Ordering::SeqCst);
    let error = credentials
        .get("acme")
        .unwrap()
        .current()
        .await
        .unwrap_err();

    let mut shown =
        format!("{credentials:?}\n{crm:?}\n{applied:?}\n{store:?}\n{error:?}\n{error}\n");
    shown.push_str(&String::from_utf8_lossy(&logs.0.lock().unwrap()));
    assert!(
        shown.contains("token request failed; retrying"),
        "logs were captured: {shown}"
    );
    for secret in [CLIENT_SECRET, "at-1", "at-2", "rt-1", "rt-2", "rt-3"] {
        assert!(!shown.contains(secret), "{secret} leaked into: {shown}");
    }
}

#[tokio::test]
async fn final_error_message() {
    let (server, url) = start().await;
    server.invalid_client.store(true, Ordering::SeqCst);
    let plan = AuthPlan::ClientCredentials(oauth(&url, ClientAuthMethod::Basic));
    let error = credential(plan, Arc::new(NoTokenStore))
        .current()
        .await
        .unwrap_err();
    let port = url.port().unwrap().to_string();
    insta::assert_snapshot!(error.to_string().replace(&port, "PORT"));
}

/// Issue 14 item 3: the request that triggered a refresh is dropped (its
/// timeout, SIGTERM, the stall watchdog) after the server rotated the
/// refresh token but before the answer arrived. The refresh must still
/// finish and store the rotated token, or the next refresh sends the spent
/// one and the provider answers invalid_grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_survives_the_caller_being_dropped_mid_refresh() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    server.gate.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteTokenStore::open(&dir.path().join("apisync.db")).unwrap());
    let credential = credential(refresh_plan(&url), store.clone());

    let caller = tokio::spawn({
        let credential = credential.clone();
        async move { bearer(&credential).await }
    });
    // The server has rotated rt-1 into rt-2 and holds its answer.
    server.arrived.notified().await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    server.gate.store(false, Ordering::SeqCst);
    server.release.0.add_permits(1);

    // The next caller gets the token of the refresh that kept going.
    assert_eq!(bearer(&credential).await, ("Bearer at-1".to_string(), 1));
    assert_eq!(store.load("acme").await.unwrap().unwrap().expose(), "rt-2");
    // And the next refresh sends the rotated token, which the server takes.
    assert_eq!(
        credential.invalidate(1).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    assert_eq!((server.uses("rt-1"), server.uses("rt-2")), (1, 1));
    assert_eq!(server.requests(), 2);
}

/// Shutdown: `settle` waits for the refresh in flight, so the rotated
/// token is stored before the process exits even though no request waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_waits_for_the_refresh_in_flight_to_store_its_rotation() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    server.gate.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteTokenStore::open(&dir.path().join("apisync.db")).unwrap());
    let credential = credential(refresh_plan(&url), store.clone());

    let caller = tokio::spawn({
        let credential = credential.clone();
        async move { bearer(&credential).await }
    });
    server.arrived.notified().await;
    caller.abort();
    let settling = tokio::spawn({
        let credential = credential.clone();
        async move { credential.settle(Duration::from_secs(600)).await }
    });
    server.release.0.add_permits(1);
    assert!(settling.await.unwrap(), "the refresh finished");
    assert_eq!(store.load("acme").await.unwrap().unwrap().expose(), "rt-2");
    // Settled: no new token request starts while the process stops.
    assert!(credential.invalidate(1).await.is_err());
    assert_eq!(server.requests(), 1);
}

/// Issue 14 item 7: a refresh held at the token endpoint does not hold the
/// database's write lock: another connection commits at once (a busy
/// timeout of 0 fails on the first SQLITE_BUSY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_in_flight_does_not_hold_the_database_write_lock() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    server.gate.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("apisync.db");
    let store = Arc::new(SqliteTokenStore::open(&db).unwrap());
    let credential = credential(refresh_plan(&url), store.clone());
    let caller = tokio::spawn({
        let credential = credential.clone();
        async move { bearer(&credential).await }
    });
    server.arrived.notified().await;

    let other = rusqlite::Connection::open(&db).unwrap();
    other.busy_timeout(Duration::ZERO).unwrap();
    let written = other.execute_batch(
        "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS pages (n INTEGER);
         INSERT INTO pages VALUES (1); COMMIT;",
    );
    server.release.0.add_permits(1);
    assert!(written.is_ok(), "{written:?}");
    assert_eq!(caller.await.unwrap().0, "Bearer at-1");
    assert_eq!(store.load("acme").await.unwrap().unwrap().expose(), "rt-2");
}

/// Two processes (separate sources and stores, one database file) whose
/// refreshes overlap: the second waits for the first's lock, then reads
/// the rotated token; each refresh token is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_refreshes_of_two_processes_spend_each_refresh_token_once() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    server.gate.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("apisync.db");
    let one = credential(
        refresh_plan(&url),
        Arc::new(SqliteTokenStore::open(&db).unwrap()),
    );
    let two = credential(
        refresh_plan(&url),
        Arc::new(SqliteTokenStore::open(&db).unwrap()),
    );
    let first = tokio::spawn(async move { bearer(&one).await });
    server.arrived.notified().await;
    // The first holds the lock at the token endpoint; the second starts now.
    let second = tokio::spawn(async move { bearer(&two).await });
    server.gate.store(false, Ordering::SeqCst);
    server.release.0.add_permits(1);
    assert_eq!(first.await.unwrap().0, "Bearer at-1");
    assert_eq!(second.await.unwrap().0, "Bearer at-2");
    assert_eq!((server.uses("rt-1"), server.uses("rt-2")), (1, 1));
    assert_eq!(server.requests(), 2);
}

/// A 200 answer that rotates the refresh token but whose access token is
/// unusable (here a negative expires_in) has spent the refresh token sent:
/// the new one is stored all the same, and the next refresh sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_in_an_unusable_answer_is_kept() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    *server.expires_in.lock().unwrap() = json!(-1);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteTokenStore::open(&dir.path().join("apisync.db")).unwrap());
    let credential = credential(refresh_plan(&url), store.clone());
    assert!(
        credential.current().await.is_err(),
        "the answer is unusable"
    );
    assert_eq!(store.load("acme").await.unwrap().unwrap().expose(), "rt-2");

    *server.expires_in.lock().unwrap() = json!(3600);
    let fresh = self::credential(refresh_plan(&url), store.clone());
    assert!(fresh.current().await.is_ok(), "the stored rotation works");
    assert_eq!((server.uses("rt-1"), server.uses("rt-2")), (1, 1));
}

/// semantics.md: "a rotated refresh token is stored before the new access
/// token is used". While the database refuses the save (another connection
/// holds its write lock past the busy timeout), the access token of that
/// refresh is never handed out; once the database is free, the next call
/// sends the rotation kept in memory (never the spent token) and stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_is_handed_out_only_after_its_rotation_is_stored() {
    let (server, url) = start().await;
    server.rotate.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apisync.db");
    let store = Arc::new(SqliteTokenStore::open(&path).unwrap());
    assert!(
        store.load("acme").await.unwrap().is_none(),
        "table made, empty"
    );
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let credential = credential(refresh_plan(&url), store.clone());
    let refused = credential.current().await;
    assert!(
        refused.is_err(),
        "no access token while its rotation is unsaved"
    );
    assert_eq!(server.requests(), 1, "the server did rotate rt-1 into rt-2");

    blocker.execute_batch("COMMIT").unwrap();
    assert!(credential.current().await.is_ok());
    assert_eq!(store.load("acme").await.unwrap().unwrap().expose(), "rt-3");
    assert_eq!(
        (server.uses("rt-1"), server.uses("rt-2")),
        (1, 1),
        "never the spent one"
    );
}
