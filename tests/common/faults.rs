//! A fault-injecting API for tests: it serves `records` records `{id, v}`
//! in pages of `page_size`, paginated in any of apisync's styles, and for a
//! configurable share of requests misbehaves: 5xx, 429 with Retry-After in
//! seconds or as an HTTP date, a connection reset before or in the middle of
//! the body, a stall past the client's timeout, truncated JSON, HTML with
//! 200, a wrong content type, an oversize page, or a repeated cursor.
//!
//! Faults are drawn from a seeded generator, so a failing run can be
//! replayed exactly.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Cursor,
    NextUrl,
    LinkHeader,
    Offset,
    Page,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Status500,
    Status502,
    Status503,
    TooMany,
    TooManyDate,
    ResetBeforeBody,
    ResetMidBody,
    Stall,
    TruncatedJson,
    Html,
    WrongContentType,
    Oversize,
    RepeatCursor,
}

/// The faults a sync must survive by retrying (no rerun needed).
pub const TRANSIENT: &[Fault] = &[
    Fault::Status500,
    Fault::Status502,
    Fault::Status503,
    Fault::TooMany,
    Fault::TooManyDate,
    Fault::ResetBeforeBody,
    Fault::ResetMidBody,
    Fault::Stall,
    Fault::TruncatedJson,
];

/// Every fault, including those that fail the stream until a rerun.
pub const ALL: &[Fault] = &[
    Fault::Status500,
    Fault::Status502,
    Fault::Status503,
    Fault::TooMany,
    Fault::TooManyDate,
    Fault::ResetBeforeBody,
    Fault::ResetMidBody,
    Fault::Stall,
    Fault::TruncatedJson,
    Fault::Html,
    Fault::WrongContentType,
    Fault::Oversize,
    Fault::RepeatCursor,
];

#[derive(Clone)]
pub struct FaultConfig {
    pub style: Style,
    pub records: u64,
    pub page_size: u64,
    /// Share of requests that get a fault, 0.0 to 1.0.
    pub share: f64,
    pub faults: &'static [Fault],
    pub seed: u64,
    /// How long a stall lasts; longer than the job's request timeout.
    pub stall: Duration,
    /// Bytes of an oversize page (more than the job's max_page_bytes).
    pub oversize_bytes: usize,
    pub token: String,
}

struct Shared {
    config: FaultConfig,
    rng: Mutex<rand::rngs::StdRng>,
    log: Mutex<Vec<(String, Option<Fault>)>>,
}

pub struct FaultServer {
    pub base: String,
    shared: Arc<Shared>,
}

impl FaultServer {
    pub async fn start(config: FaultConfig) -> Self {
        let shared = Arc::new(Shared {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(config.seed)),
            config,
            log: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/items", get(items))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultServer { base, shared }
    }

    /// The faults injected so far.
    pub fn injected(&self) -> Vec<Fault> {
        let log = self.shared.log.lock().unwrap();
        log.iter().filter_map(|(_, f)| *f).collect()
    }

    pub fn requests(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// The records the server holds, as apisync should store them.
    pub fn data(&self) -> Vec<Value> {
        (1..=self.shared.config.records).map(record).collect()
    }

    /// The job file's [request] and [pagination] for this server's style.
    pub fn job_pagination(&self) -> String {
        let base = &self.base;
        let size = self.shared.config.page_size;
        match self.shared.config.style {
            Style::Cursor => format!(
                "[request]\nurl = \"{base}/items\"\nquery = {{ size = \"{size}\" }}\n[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"after\"\n"
            ),
            Style::NextUrl => format!(
                "[request]\nurl = \"{base}/items\"\nquery = {{ size = \"{size}\" }}\n[pagination]\ntype = \"next_url\"\nnext_url_path = \"/links/next\"\n"
            ),
            Style::LinkHeader => format!(
                "[request]\nurl = \"{base}/items\"\nquery = {{ size = \"{size}\" }}\n[pagination]\ntype = \"link_header\"\n"
            ),
            Style::Offset => format!(
                "[request]\nurl = \"{base}/items\"\n[pagination]\ntype = \"offset\"\nlimit = {size}\ntotal_path = \"/total\"\n"
            ),
            Style::Page => format!(
                "[request]\nurl = \"{base}/items\"\n[pagination]\ntype = \"page\"\nsize_param = \"size\"\nsize = {size}\ntotal_pages_path = \"/total_pages\"\n"
            ),
        }
    }
}

pub fn record(id: u64) -> Value {
    json!({ "id": id, "v": format!("value-{id}") })
}

fn draw(shared: &Shared) -> Option<Fault> {
    let config = &shared.config;
    let mut rng = shared.rng.lock().unwrap();
    if config.faults.is_empty() || !rng.random_bool(config.share.clamp(0.0, 1.0)) {
        return None;
    }
    Some(config.faults[rng.random_range(0..config.faults.len())])
}

async fn items(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let fault = draw(&shared);
    let uri = format!("{q:?}");
    shared.log.lock().unwrap().push((uri, fault));
    let expected = format!("Bearer {}", shared.config.token);
    if headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let (start, page) = position(&shared.config, &q);
    let body = page_body(
        &shared.config,
        start,
        page,
        fault == Some(Fault::RepeatCursor),
        &q,
    );
    match fault {
        None | Some(Fault::RepeatCursor) => json_response(&shared.config, start, page, body),
        Some(fault) => faulty(&shared.config, fault, body),
    }
}

/// The first record index (0-based) and the page number (1-based) asked for.
fn position(config: &FaultConfig, q: &HashMap<String, String>) -> (u64, u64) {
    let number = |name: &str| q.get(name).and_then(|v| v.parse::<u64>().ok());
    let start = match config.style {
        Style::Cursor => number("after").unwrap_or(0),
        Style::NextUrl | Style::LinkHeader => number("from").unwrap_or(0),
        Style::Offset => number("offset").unwrap_or(0),
        Style::Page => (number("page").unwrap_or(1).max(1) - 1) * config.page_size,
    };
    (start, start / config.page_size.max(1) + 1)
}

fn page_body(
    config: &FaultConfig,
    start: u64,
    page: u64,
    repeat: bool,
    q: &HashMap<String, String>,
) -> Value {
    let end = (start + config.page_size).min(config.records);
    let data: Vec<Value> = (start + 1..=end).map(record).collect();
    let more = end < config.records;
    // A repeated cursor: the next position is the one just asked for.
    let next = if repeat { start } else { end };
    let size = config.page_size;
    let pages = config.records.div_ceil(size.max(1));
    let _ = (page, q);
    match config.style {
        Style::Cursor => json!({ "data": data, "next": more.then(|| next.to_string()) }),
        Style::NextUrl => {
            json!({ "data": data, "links": { "next": more.then(|| format!("/items?from={next}&size={size}")) } })
        }
        Style::LinkHeader => json!({ "data": data }),
        Style::Offset => json!({ "data": data, "total": config.records }),
        Style::Page => json!({ "data": data, "total_pages": pages }),
    }
}

fn json_response(config: &FaultConfig, start: u64, _page: u64, body: Value) -> Response {
    let mut response = axum::Json(&body).into_response();
    if config.style == Style::LinkHeader {
        let end = (start + config.page_size).min(config.records);
        if end < config.records {
            let link = format!(
                "</items?from={end}&size={}>; rel=\"next\"",
                config.page_size
            );
            if let Ok(value) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
    }
    response
}

fn faulty(config: &FaultConfig, fault: Fault, body: Value) -> Response {
    let text = body.to_string();
    match fault {
        Fault::Status500 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Fault::Status502 => StatusCode::BAD_GATEWAY.into_response(),
        Fault::Status503 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Fault::TooMany => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "0")]).into_response()
        }
        Fault::TooManyDate => {
            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, date)]).into_response()
        }
        Fault::ResetBeforeBody => broken_body(Vec::new(), text.len() + 10),
        Fault::ResetMidBody => {
            let half = text.as_bytes()[..text.len() / 2].to_vec();
            broken_body(half, text.len())
        }
        Fault::Stall => {
            let stall = config.stall;
            let stream = futures::stream::once(async move {
                tokio::time::sleep(stall).await;
                Ok::<_, std::io::Error>(axum::body::Bytes::new())
            });
            Response::new(Body::from_stream(stream))
        }
        Fault::TruncatedJson => (
            [(header::CONTENT_TYPE, "application/json")],
            text[..text.len() / 2].to_string(),
        )
            .into_response(),
        Fault::Html => (
            [(header::CONTENT_TYPE, "text/html")],
            "<!doctype html><title>Maintenance</title>",
        )
            .into_response(),
        Fault::WrongContentType => (
            [(header::CONTENT_TYPE, "text/plain")],
            "service temporarily unavailable",
        )
            .into_response(),
        Fault::Oversize => {
            let padding = "x".repeat(config.oversize_bytes);
            axum::Json(json!({ "data": [], "padding": padding })).into_response()
        }
        Fault::RepeatCursor => axum::Json(body).into_response(),
    }
}

/// A response that promises `length` bytes, sends `sent`, then fails: the
/// client sees the connection break in the middle of the body.
fn broken_body(sent: Vec<u8>, length: usize) -> Response {
    let chunks = futures::stream::iter(vec![
        Ok(axum::body::Bytes::from(sent)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected reset",
        )),
    ]);
    let mut response = Response::new(Body::from_stream(chunks));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
