//! A real OAuth2 token endpoint and a bearer-protected, paginated API on
//! 127.0.0.1, for end-to-end tests of the built binary.
//!
//! The token endpoint checks the client as RFC 6749 2.3.1 says (Basic with
//! each part form-urlencoded, or the form body), issues distinctive access
//! tokens with the lifetimes a test asks for, and can rotate refresh tokens
//! (a spent one is refused with `invalid_grant`, as strict providers do).
//! The API enforces what it issued: an unknown, revoked or expired token
//! gets 401 with an `invalid_token` challenge, so a sync only completes if
//! the client really refreshes. Every request is recorded for assertions.
//!
//! `Foreign` is a second server on another port that records whether a
//! request carried credentials.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::Project;

/// The client id: a `:` in it must survive Basic encoding too.
pub const CLIENT_ID: &str = "e2e:client";
/// `/`, `+`, `:` and `%` (and a literal `%2F`, which a double decode would
/// turn into `/`).
pub const CLIENT_SECRET: &str = "s3/cr+et:50%off%2F";
/// The refresh token a refresh-token auth is configured with.
pub const FIRST_REFRESH: &str = "rfr000-Wx9pK";

/// What a test wants the servers to do. Change it between runs with
/// [`OAuthServer::configure`].
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Pages per partition.
    pub pages: u64,
    pub page_size: u64,
    /// Lifetimes (`expires_in`) of the tokens in the order they are issued;
    /// the last one repeats.
    pub lifetimes: Vec<Duration>,
    /// Every token request is refused with `invalid_client`.
    pub invalid_client: bool,
    /// A refresh grant answers with a new refresh token and retires the old.
    pub rotate: bool,
    /// The first request for this page revokes the token it carries (401).
    pub revoke_at_page: Option<u64>,
    /// This page always answers 401, whatever the token.
    pub unauthorized_page: Option<u64>,
    /// This page answers 403 with an `insufficient_scope` challenge.
    pub forbidden_page: Option<u64>,
    /// How long each page takes to answer (a slow API, so a run spans time).
    pub page_delay: Duration,
    /// Requests for page 1 are answered only once this many have arrived
    /// and the token each carried has expired: that many tasks then hold
    /// an expired token at the same moment.
    pub hold_first_pages: Option<usize>,
    /// The next link of the last page of every partition, instead of null.
    pub last_next: Option<String>,
    /// A 401 carries no `WWW-Authenticate` header (many APIs send none).
    pub bare_401: bool,
    /// Pages answer 206 Partial Content instead of 200 (PostgREST does
    /// when a count is asked for).
    pub partial_content: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            pages: 3,
            page_size: 2,
            lifetimes: vec![Duration::from_secs(3600)],
            invalid_client: false,
            rotate: false,
            revoke_at_page: None,
            unauthorized_page: None,
            forbidden_page: None,
            page_delay: Duration::ZERO,
            hold_first_pages: None,
            last_next: None,
            bare_401: false,
            partial_content: false,
        }
    }
}

/// One request to the token endpoint.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub grant_type: String,
    /// Client id and secret as decoded from Basic or the body.
    pub client: Option<(String, String)>,
    pub basic: bool,
    pub refresh_token: Option<String>,
    pub status: u16,
}

/// One request to the API.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub partition: String,
    pub page: u64,
    /// The bearer token sent, if any.
    pub token: Option<String>,
    pub status: u16,
    pub at: Instant,
}

struct Issued {
    issued: Instant,
    lifetime: Duration,
    revoked: bool,
}

#[derive(Default)]
struct State0 {
    behaviour: Behaviour,
    tokens: HashMap<String, Issued>,
    /// Every access token in the order issued.
    issued_order: Vec<String>,
    valid_refresh: HashSet<String>,
    every_refresh: Vec<String>,
    token_requests: Vec<TokenRequest>,
    api_requests: Vec<ApiRequest>,
    revoked_once: bool,
}

struct Shared {
    base: String,
    state: Mutex<State0>,
    /// Page-1 requests arrived so far (for `hold_first_pages`).
    arrived: tokio::sync::watch::Sender<usize>,
}

/// The token endpoint (`/oauth/token`) and the API (`/items/{partition}`).
pub struct OAuthServer {
    shared: Arc<Shared>,
}

impl OAuthServer {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let mut state = State0 {
            behaviour,
            ..State0::default()
        };
        state.valid_refresh.insert(FIRST_REFRESH.to_string());
        state.every_refresh.push(FIRST_REFRESH.to_string());
        let shared = Arc::new(Shared {
            base,
            state: Mutex::new(state),
            arrived: tokio::sync::watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/items/{partition}", get(items))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        OAuthServer { shared }
    }

    pub fn base(&self) -> &str {
        &self.shared.base
    }

    /// With a query, which must never be printed.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token?tenant=e2e", self.shared.base)
    }

    pub fn configure(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state().behaviour);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State0> {
        self.shared.state.lock().expect("server state")
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state().token_requests.clone()
    }

    pub fn api_requests(&self) -> Vec<ApiRequest> {
        self.state().api_requests.clone()
    }

    /// The token each request for `page` carried, in arrival order.
    pub fn tokens_on_page(&self, page: u64) -> Vec<Option<String>> {
        self.state()
            .api_requests
            .iter()
            .filter(|r| r.page == page)
            .map(|r| r.token.clone())
            .collect()
    }

    /// Every access token issued, in order.
    pub fn access_tokens(&self) -> Vec<String> {
        self.state().issued_order.clone()
    }

    /// Every refresh token that existed (the configured one and rotations).
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state().every_refresh.clone()
    }

    /// Records one full sync of `partitions` should write.
    pub fn expected_rows(&self, partitions: usize) -> usize {
        let state = self.state();
        partitions * (state.behaviour.pages * state.behaviour.page_size) as usize
    }

    /// An `[auth.NAME]` table of `kind` (`oauth2_client_credentials` or
    /// `oauth2_refresh_token`) reading the client from the environment
    /// that [`OAuthServer::command`] sets.
    pub fn auth_table(&self, name: &str, kind: &str, client_auth: &str) -> String {
        let refresh = match kind {
            "oauth2_refresh_token" => "refresh_token = { env = \"E2E_REFRESH_TOKEN\" }\n",
            _ => "",
        };
        format!(
            r#"[auth.{name}]
type = "{kind}"
token_url = "{}"
client_id = {{ env = "E2E_CLIENT_ID" }}
client_secret = {{ env = "E2E_CLIENT_SECRET" }}
client_auth = "{client_auth}"
scopes = ["items:read"]
# Refresh exactly at expiry: one token request per token lifetime.
refresh_before = "0s"
{refresh}"#,
            self.token_url()
        )
    }

    /// A job reading `/items/{partition}` (or `/items/all`) page by page
    /// through next links, with fast retries.
    pub fn job(&self, auth: &str, partitions: Option<usize>) -> String {
        let (path, fan_out) = match partitions {
            Some(n) => {
                let values: Vec<String> = (0..n).map(|i| format!("\"p{i}\"")).collect();
                (
                    "{partition}".to_string(),
                    format!("[partitions]\nvalues = [{}]\n", values.join(", ")),
                )
            }
            None => ("all".to_string(), String::new()),
        };
        format!(
            r#"auth = "{auth}"
[request]
url = "{}/items/{path}"
timeout = "60s"
[pagination]
type = "next_url"
next_url_path = "/next"
[records]
path = "/data"
primary_key = ["/id"]
[retry]
max_attempts = 3
initial_backoff = "1ms"
max_backoff = "5ms"
{fan_out}"#,
            self.shared.base
        )
    }

    /// The binary with the client credentials and refresh token in its environment.
    pub fn command(&self, project: &Project, args: &[&str]) -> tokio::process::Command {
        let mut command = project.command(args);
        command
            .env("E2E_CLIENT_ID", CLIENT_ID)
            .env("E2E_CLIENT_SECRET", CLIENT_SECRET)
            .env("E2E_REFRESH_TOKEN", FIRST_REFRESH);
        command
    }

    pub async fn run(&self, project: &Project, args: &[&str]) -> std::process::Output {
        self.command(project, args)
            .output()
            .await
            .expect("run apisync")
    }
}

/// The client of a token request: Basic (each part form-urldecoded after
/// base64) or `client_id`/`client_secret` in the body.
fn client_of(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (Option<(String, String)>, bool) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    if let Some(encoded) = basic {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let unescape = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let pair = decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .map(|(id, secret)| (unescape(id), unescape(secret)));
        return (pair, true);
    }
    let pair = form.get("client_id").zip(form.get("client_secret"));
    (pair.map(|(i, s)| (i.clone(), s.clone())), false)
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description});
    (status, axum::Json(body)).into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let (client, basic) = client_of(&headers, &form);
    let mut state = shared.state.lock().expect("server state");
    let mut seen = TokenRequest {
        grant_type: form.get("grant_type").cloned().unwrap_or_default(),
        client: client.clone(),
        basic,
        refresh_token: form.get("refresh_token").cloned(),
        status: 200,
    };
    let right_client = client == Some((CLIENT_ID.into(), CLIENT_SECRET.into()));
    let answer = if state.behaviour.invalid_client || !right_client {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    } else if query.as_deref() != Some("tenant=e2e") {
        oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "no tenant")
    } else {
        issue(&mut state, &seen)
    };
    seen.status = answer.status().as_u16();
    state.token_requests.push(seen);
    answer
}

/// A token answer for a request whose client is right.
fn issue(state: &mut State0, request: &TokenRequest) -> Response {
    let mut rotated = None;
    match request.grant_type.as_str() {
        "client_credentials" => {}
        "refresh_token" => {
            let used = request.refresh_token.clone().unwrap_or_default();
            if !state.valid_refresh.contains(&used) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the refresh token is unknown or was already used",
                );
            }
            if state.behaviour.rotate {
                state.valid_refresh.remove(&used);
                let fresh = format!("rfr{:03}-Wx9pK", state.every_refresh.len());
                state.valid_refresh.insert(fresh.clone());
                state.every_refresh.push(fresh.clone());
                rotated = Some(fresh);
            }
        }
        _ => {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "");
        }
    }
    let n = state.issued_order.len();
    let lifetimes = &state.behaviour.lifetimes;
    let lifetime = lifetimes
        .get(n)
        .or(lifetimes.last())
        .copied()
        .unwrap_or(Duration::from_secs(3600));
    let access = format!("acc{:03}-QvT7m", n + 1);
    state.tokens.insert(
        access.clone(),
        Issued {
            issued: Instant::now(),
            lifetime,
            revoked: false,
        },
    );
    state.issued_order.push(access.clone());
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs_f64(),
        "scope": "items:read",
        "unknown_field": {"ignored": true},
    });
    if let Some(fresh) = rotated {
        answer["refresh_token"] = json!(fresh);
    }
    axum::Json(answer).into_response()
}

fn challenge(status: StatusCode, value: &str) -> Response {
    (
        status,
        [(header::WWW_AUTHENTICATE, value.to_string())],
        "{}",
    )
        .into_response()
}

/// Why `token` may not read (None: it may).
fn refusal(state: &mut State0, page: u64, token: Option<&str>) -> Option<Response> {
    let bare = state.behaviour.bare_401;
    let invalid = || {
        if bare {
            return (StatusCode::UNAUTHORIZED, "{}").into_response();
        }
        challenge(
            StatusCode::UNAUTHORIZED,
            "Bearer error=\"invalid_token\", error_description=\"the token is invalid\"",
        )
    };
    let Some(token) = token else {
        return Some(invalid());
    };
    if state.behaviour.revoke_at_page == Some(page) && !state.revoked_once {
        state.revoked_once = true;
        if let Some(issued) = state.tokens.get_mut(token) {
            issued.revoked = true;
        }
    }
    let valid = state
        .tokens
        .get(token)
        .is_some_and(|t| !t.revoked && t.issued.elapsed() < t.lifetime);
    if !valid || state.behaviour.unauthorized_page == Some(page) {
        return Some(invalid());
    }
    if state.behaviour.forbidden_page == Some(page) {
        return Some(challenge(
            StatusCode::FORBIDDEN,
            "Bearer error=\"insufficient_scope\", scope=\"items:admin\"",
        ));
    }
    None
}

async fn items(
    State(shared): State<Arc<Shared>>,
    Path(partition): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let page: u64 = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let (refused, behaviour, expiry) = {
        let mut state = shared.state.lock().expect("server state");
        let refused = refusal(&mut state, page, token.as_deref());
        let success = if state.behaviour.partial_content {
            206
        } else {
            200
        };
        let status = refused.as_ref().map_or(success, |r| r.status().as_u16());
        state.api_requests.push(ApiRequest {
            partition: partition.clone(),
            page,
            token: token.clone(),
            status,
            at: Instant::now(),
        });
        let expiry = token
            .as_deref()
            .and_then(|t| state.tokens.get(t))
            .map(|t| t.issued + t.lifetime);
        (refused, state.behaviour.clone(), expiry)
    };
    if let Some(refused) = refused {
        return refused;
    }
    if let (1, Some(count)) = (page, behaviour.hold_first_pages) {
        hold(&shared, count, expiry).await;
    }
    tokio::time::sleep(behaviour.page_delay).await;
    let first = (page - 1) * behaviour.page_size;
    let data: Vec<Value> = (first..first + behaviour.page_size)
        .map(|i| json!({"id": format!("{partition}-{i}"), "page": page}))
        .collect();
    let next = if page < behaviour.pages {
        json!(format!(
            "{}/items/{partition}?page={}",
            shared.base,
            page + 1
        ))
    } else {
        json!(behaviour.last_next)
    };
    // `total_pages` lets a `page` job fetch ahead; `next_url` jobs ignore it.
    let status = if behaviour.partial_content {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let body = json!({"data": data, "next": next, "total_pages": behaviour.pages});
    (status, axum::Json(body)).into_response()
}

/// Wait until `count` page-1 requests have arrived, then until `expiry`
/// has passed (the answer then reaches a client whose token is expired).
async fn hold(shared: &Shared, count: usize, expiry: Option<Instant>) {
    shared.arrived.send_modify(|n| *n += 1);
    let mut arrived = shared.arrived.subscribe();
    let _ = arrived.wait_for(|n| *n >= count).await;
    if let Some(expiry) = expiry {
        let margin = Duration::from_millis(50);
        tokio::time::sleep_until((expiry + margin).into()).await;
    }
}

/// A server on another origin: every request is recorded with its
/// Authorization header, and answered with one record and no next link.
pub struct Foreign {
    pub base: String,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Foreign {
    pub async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let app = Router::new()
            .fallback({
                let seen = seen.clone();
                move |headers: HeaderMap| async move {
                    let authorization = headers
                        .get(header::AUTHORIZATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    seen.lock().expect("foreign log").push(authorization);
                    axum::Json(json!({"data": [{"id": "foreign-1"}], "next": null}))
                }
            })
            .with_state(());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Foreign { base, seen }
    }

    /// The Authorization header of every request, in order.
    pub fn requests(&self) -> Vec<Option<String>> {
        self.seen.lock().expect("foreign log").clone()
    }
}
