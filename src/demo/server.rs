//! A small bearer-protected JSON API on 127.0.0.1, deterministic, with three
//! endpoints that paginate three different ways. It backs `apisync demo` and
//! the end-to-end tests, so it is a real server, not a stand-in.
//!
//! - `GET /v1/customers`: cursor pagination (`meta.next_cursor`, `has_more`).
//! - `GET /v1/orders`: page pagination announced by a relative `Link` header.
//! - `GET /v1/events`: offset pagination with a `total`.
//!
//! Every endpoint accepts `updated_since` (RFC 3339) and answers records
//! ordered by id, so incremental jobs can be shown too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The token the demo API accepts, unless configured otherwise.
pub const DEMO_TOKEN: &str = "demo-token-not-a-secret";

/// What the demo API serves.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub customers: u64,
    pub orders: u64,
    pub events: u64,
    /// Added to every response: makes "kill it half way" easy to show.
    pub delay: Duration,
    pub token: String,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            customers: 2_000,
            orders: 6_000,
            events: 2_000,
            delay: Duration::ZERO,
            token: DEMO_TOKEN.to_string(),
        }
    }
}

struct DemoState {
    config: DemoConfig,
    /// Requests received so far; a watch so tests can wait for "n requests
    /// in" (to kill a sync half way) without sleeping.
    requests: tokio::sync::watch::Sender<u64>,
}

/// A running demo API. Dropping it does not stop it; call `shutdown`.
pub struct DemoServer {
    pub addr: SocketAddr,
    state: Arc<DemoState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DemoServer {
    /// Serve on `listener` until `shutdown`.
    pub fn start(listener: TcpListener, config: DemoConfig) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(DemoState {
            config,
            requests: tokio::sync::watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/v1/customers", get(customers))
            .route("/v1/orders", get(orders))
            .route("/v1/events", get(events))
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(err) = served.await {
                tracing::error!(error = %err, "demo API stopped");
            }
        });
        Ok(DemoServer {
            addr,
            state,
            stop,
            task,
        })
    }

    /// Bind 127.0.0.1:`port` (0 = any free port) and serve.
    pub async fn bind(port: u16, config: DemoConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        Self::start(listener, config)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far (any status).
    pub fn requests(&self) -> u64 {
        *self.state.requests.borrow()
    }

    /// Resolves once at least `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: u64) {
        let mut seen = self.state.requests.subscribe();
        let _ = seen.wait_for(|count| *count >= n).await;
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Wait until the server stops (for `demo --serve`).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// The records of one endpoint, generated on demand: nothing big in memory.
pub fn customer(id: u64) -> Value {
    const COUNTRIES: [&str; 5] = ["DE", "FR", "US", "JP", "BR"];
    json!({
        "id": id,
        "name": format!("Customer {id}"),
        "email": format!("customer{id}@example.com"),
        "country": COUNTRIES[(id % 5) as usize],
        "updated_at": timestamp(id),
    })
}

pub fn order(id: u64) -> Value {
    const STATUSES: [&str; 3] = ["open", "paid", "shipped"];
    json!({
        "id": format!("ord_{id:06}"),
        "customer_id": id % 2_000 + 1,
        "status": STATUSES[(id % 3) as usize],
        "amount": { "total": (id * 37 % 10_000) as f64 / 100.0, "currency": "EUR" },
        "updated_at": timestamp(id),
    })
}

pub fn event(id: u64) -> Value {
    json!({
        "id": id,
        "type": if id.is_multiple_of(2) { "login" } else { "logout" },
        "at": timestamp(id),
    })
}

/// A deterministic timestamp per id: one minute apart from 2024-01-01.
fn timestamp(id: u64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    (base + chrono::Duration::minutes(id as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

type Params = Query<HashMap<String, String>>;

/// Count, delay, and check the bearer token; `Err` is the response to send.
async fn admit(state: &DemoState, headers: &HeaderMap) -> Result<(), Response> {
    state.requests.send_modify(|count| *count += 1);
    if !state.config.delay.is_zero() {
        tokio::time::sleep(state.config.delay).await;
    }
    let expected = format!("Bearer {}", state.config.token);
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if given == Some(expected.as_bytes()) {
        return Ok(());
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": "missing or wrong bearer token" })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"demo\", error=\"invalid_token\""),
    );
    Err(response)
}

/// A 400 answer naming the parameter the client got wrong.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.0 });
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }
}

fn number(params: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, BadRequest> {
    match params.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| BadRequest(format!("{name} must be a whole number"))),
    }
}

/// First id (1-based) whose timestamp is at or after `updated_since`.
fn first_id_since(params: &HashMap<String, String>) -> Result<u64, BadRequest> {
    let Some(since) = params.get("updated_since") else {
        return Ok(1);
    };
    let since = chrono::DateTime::parse_from_rfc3339(since)
        .map_err(|_| BadRequest("updated_since must be an RFC 3339 timestamp".into()))?;
    let base = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap_or(since);
    let minutes = (since - base).num_seconds().div_euclid(60).max(0) as u64;
    let exact = (since - base).num_seconds().rem_euclid(60) == 0;
    Ok(if exact { minutes } else { minutes + 1 }.max(1))
}

async fn customers(
    State(state): State<Arc<DemoState>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(refused) = admit(&state, &headers).await {
        return refused;
    }
    let result = (|| {
        let limit = number(&params, "limit", 100)?.clamp(1, 500);
        let after = match params.get("cursor") {
            Some(cursor) => cursor
                .strip_prefix("c_")
                .and_then(|id| id.parse::<u64>().ok())
                .ok_or_else(|| BadRequest("unknown cursor".into()))?,
            None => first_id_since(&params)?.saturating_sub(1),
        };
        let last = (after + limit).min(state.config.customers);
        let data: Vec<Value> = (after + 1..=last).map(customer).collect();
        let has_more = last < state.config.customers;
        let next = has_more.then(|| format!("c_{last}"));
        Ok(axum::Json(
            json!({ "data": data, "meta": { "next_cursor": next }, "has_more": has_more }),
        )
        .into_response())
    })();
    result.unwrap_or_else(|refused: BadRequest| refused.into_response())
}

async fn orders(
    State(state): State<Arc<DemoState>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(refused) = admit(&state, &headers).await {
        return refused;
    }
    let result = (|| {
        let per_page = number(&params, "per_page", 100)?.clamp(1, 500);
        let page = number(&params, "page", 1)?.max(1);
        let first = first_id_since(&params)?;
        let start = first + (page - 1) * per_page;
        let end = (start + per_page - 1).min(state.config.orders);
        let data: Vec<Value> = (start..=end).map(order).collect();
        let mut response = axum::Json(Value::Array(data)).into_response();
        if end < state.config.orders {
            let mut link = format!("</v1/orders?page={}&per_page={per_page}", page + 1);
            if let Some(since) = params.get("updated_since") {
                link.push_str("&updated_since=");
                link.push_str(
                    &url::form_urlencoded::byte_serialize(since.as_bytes()).collect::<String>(),
                );
            }
            link.push_str(">; rel=\"next\"");
            if let Ok(value) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
        Ok(response)
    })();
    result.unwrap_or_else(|refused: BadRequest| refused.into_response())
}

async fn events(
    State(state): State<Arc<DemoState>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(refused) = admit(&state, &headers).await {
        return refused;
    }
    let result = (|| {
        let limit = number(&params, "limit", 100)?.clamp(1, 250);
        let offset = number(&params, "offset", 0)?;
        let total = state.config.events;
        let end = (offset + limit).min(total);
        let data: Vec<Value> = (offset + 1..=end).map(event).collect();
        Ok(axum::Json(json!({ "events": data, "total": total })).into_response())
    })();
    result.unwrap_or_else(|refused: BadRequest| refused.into_response())
}
