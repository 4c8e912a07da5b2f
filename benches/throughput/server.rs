//! The servers the benchmark syncs from, on 127.0.0.1 in this process:
//!
//! - `/next/{auth}/{stream}/{delay_ms}/{size}/{pages}/{n}`: page `n` of a
//!   `next_url` stream of `pages` pages of `size` records, answered after
//!   `delay_ms`. Pages of 1,000 records are built once at start and served
//!   from memory (the static page server); other sizes are built per request.
//!   `auth` is `open` (no check) or `bearer` (any token this server issued,
//!   or [`STATIC_TOKEN`]).
//! - `/offset/{delay_ms}/{total}?offset=&limit=`: offset pagination with the
//!   total in the body (`/total`).
//! - `POST /oauth/token/{lifetime}`: client credentials; tokens live
//!   `lifetime` seconds and each answer takes `token_delay`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::common::TOKEN;

/// Records per page of the static stream.
pub const PAGE_SIZE: u64 = 1_000;
/// A static bearer token the data routes always accept (the tests' token,
/// which `Project` puts in `TEST_TOKEN`).
pub const STATIC_TOKEN: &str = TOKEN;

struct Shared {
    /// Page `n` of the static stream: its records array's JSON text.
    pages: Vec<Bytes>,
    token_delay: Duration,
    issued: Mutex<HashSet<String>>,
    token_requests: AtomicU64,
    requests: AtomicU64,
    /// Token requests being answered right now.
    tokens_in_flight: AtomicU64,
    /// Data requests that arrived while a token request was being answered:
    /// if reading the token waited for a refresh, there would be none.
    requests_during_refresh: AtomicU64,
}

pub struct BenchServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl BenchServer {
    /// Serve on a free port; `static_pages` pages of the static stream are
    /// built up front.
    pub async fn start(static_pages: u64, token_delay: Duration) -> std::io::Result<Self> {
        let pages = (0..static_pages)
            .map(|n| Bytes::from(records_text(n * PAGE_SIZE, PAGE_SIZE)))
            .collect();
        let shared = Arc::new(Shared {
            pages,
            token_delay,
            issued: Mutex::new(HashSet::new()),
            token_requests: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tokens_in_flight: AtomicU64::new(0),
            requests_during_refresh: AtomicU64::new(0),
        });
        let app = Router::new()
            .route(
                "/next/{auth}/{stream}/{delay}/{size}/{pages}/{n}",
                get(next_page),
            )
            .route("/offset/{delay}/{total}", get(offset_page))
            .route("/oauth/token/{lifetime}", post(token))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("bench server stopped: {err}");
            }
        });
        Ok(BenchServer { addr, shared })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Token requests answered so far.
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::Relaxed)
    }

    /// Data requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Data requests that arrived while a token request was in flight.
    pub fn requests_during_refresh(&self) -> u64 {
        self.shared.requests_during_refresh.load(Ordering::Relaxed)
    }
}

/// One record of about 230 bytes, shaped like a typical API object.
fn write_record(out: &mut String, id: u64) {
    let _ = write!(
        out,
        r#"{{"id":{id},"updated_at":"2024-05-{day:02}T12:{min:02}:{sec:02}Z","name":"Customer {id:07}","email":"customer{id:07}@example.com","status":"{status}","country":"DE","amount":{{"total":{cents}.{frac:02},"currency":"EUR"}},"tags":["alpha","beta"],"note":"lorem"}}"#,
        day = id % 28 + 1,
        min = id % 60,
        sec = (id / 60) % 60,
        status = if id.is_multiple_of(3) {
            "inactive"
        } else {
            "active"
        },
        cents = id % 10_000,
        frac = id % 100,
    );
}

/// The JSON array of `count` records from id `first + 1`.
fn records_text(first: u64, count: u64) -> String {
    let mut out = String::with_capacity(count as usize * 240 + 2);
    out.push('[');
    for i in 0..count {
        if i > 0 {
            out.push(',');
        }
        write_record(&mut out, first + i + 1);
    }
    out.push(']');
    out
}

/// Length of one record's JSON text, for the report.
pub fn record_bytes() -> usize {
    let mut out = String::new();
    write_record(&mut out, 123_456);
    out.len()
}

fn json(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn authorized(shared: &Shared, auth: &str, headers: &HeaderMap) -> bool {
    if auth == "open" {
        return true;
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    token == STATIC_TOKEN || shared.issued.lock().is_ok_and(|t| t.contains(token))
}

async fn next_page(
    State(shared): State<Arc<Shared>>,
    Path((auth, stream, delay, size, pages, n)): Path<(String, String, u64, u64, u64, u64)>,
    headers: HeaderMap,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if shared.tokens_in_flight.load(Ordering::Relaxed) > 0 {
        shared
            .requests_during_refresh
            .fetch_add(1, Ordering::Relaxed);
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if !authorized(&shared, &auth, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let next = if n + 1 < pages {
        format!("\"/next/{auth}/{stream}/{delay}/{size}/{pages}/{}\"", n + 1)
    } else {
        "null".to_string()
    };
    let built;
    let records: &[u8] = match shared.pages.get(n as usize) {
        Some(page) if size == PAGE_SIZE => page,
        _ => {
            built = records_text(n * size, size);
            built.as_bytes()
        }
    };
    let mut body = Vec::with_capacity(records.len() + next.len() + 32);
    body.extend_from_slice(b"{\"links\":{\"next\":");
    body.extend_from_slice(next.as_bytes());
    body.extend_from_slice(b"},\"data\":");
    body.extend_from_slice(records);
    body.push(b'}');
    json(body)
}

async fn offset_page(
    State(shared): State<Arc<Shared>>,
    Path((delay, total)): Path<(u64, u64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let number = |name: &str, default: u64| {
        q.get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let offset = number("offset", 0).min(total);
    let limit = number("limit", 100).min(total - offset);
    let body = format!(
        "{{\"total\":{total},\"data\":{}}}",
        records_text(offset, limit)
    );
    json(body.into_bytes())
}

async fn token(State(shared): State<Arc<Shared>>, Path(lifetime): Path<u64>) -> Response {
    let n = shared.token_requests.fetch_add(1, Ordering::Relaxed) + 1;
    shared.tokens_in_flight.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(shared.token_delay).await;
    shared.tokens_in_flight.fetch_sub(1, Ordering::Relaxed);
    let token = format!("bench-oauth-{n}");
    if let Ok(mut issued) = shared.issued.lock() {
        issued.insert(token.clone());
    }
    let body = format!(
        "{{\"access_token\":\"{token}\",\"token_type\":\"Bearer\",\"expires_in\":{lifetime}}}"
    );
    json(body.into_bytes())
}
