//! A fault-injecting API for tests: it serves `records` records `{id, v}`
//! in pages of `page_size`, paginated in any of apisync's styles, and for a
//! configurable share of requests misbehaves: 5xx, 429 with Retry-After in
//! seconds or as an HTTP date, a connection reset before or in the middle of
//! the body, a stall past the client's timeout, truncated JSON, HTML with
//! 200, a wrong content type, an oversize page, or a repeated cursor.
//!
//! Faults are drawn from a seeded generator, so a failing run can be
//! replayed exactly; a script can also put a given fault on a given request.
//! A `since` query parameter serves only records with a larger id (for
//! incremental jobs), and every request counts towards a `Hits` counter that
//! tests wait on (to kill or signal a sync half way without sleeping).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// A page nested thousands of levels deep.
    DeepNesting,
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
    Fault::DeepNesting,
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
    /// Bytes of an oversize page (more than the job's max_page_bytes),
    /// streamed in chunks without a Content-Length.
    pub oversize_bytes: usize,
    /// Accepted as `Authorization: Bearer <token>` or as `?api_key=<token>`.
    pub token: String,
}

/// Options beyond the fault mix, kept apart so that `FaultConfig` literals
/// written before them still compile.
#[derive(Clone, Default)]
pub struct Extras {
    /// Added to every answer, so a sync takes long enough to interrupt.
    pub delay: Duration,
    /// (request number counted from 1, fault): that request gets that fault,
    /// whatever the generator draws.
    pub script: Vec<(usize, Fault)>,
    /// Counts requests; share one between servers to wait on their sum.
    pub hits: Hits,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            style: Style::Cursor,
            records: 120,
            page_size: 10,
            share: 0.0,
            faults: &[],
            seed: 1,
            stall: Duration::from_secs(3),
            oversize_bytes: 300_000,
            token: super::TOKEN.to_string(),
        }
    }
}

/// A request counter tests can wait on.
#[derive(Clone)]
pub struct Hits(Arc<tokio::sync::watch::Sender<usize>>);

impl Default for Hits {
    fn default() -> Self {
        Hits(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl Hits {
    pub fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Resolves once at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) {
        let mut seen = self.0.subscribe();
        let _ = seen.wait_for(|count| *count >= n).await;
    }

    fn add(&self) -> usize {
        let mut number = 0;
        self.0.send_modify(|count| {
            *count += 1;
            number = *count;
        });
        number
    }
}

struct Shared {
    config: FaultConfig,
    extras: Extras,
    rng: Mutex<rand::rngs::StdRng>,
    log: Mutex<Vec<(String, Option<Fault>)>>,
    /// Bytes of oversize bodies the server has produced so far.
    oversize_sent: AtomicUsize,
}

pub struct FaultServer {
    pub base: String,
    shared: Arc<Shared>,
}

impl FaultServer {
    pub async fn start(config: FaultConfig) -> Self {
        Self::start_with(config, Extras::default()).await
    }

    pub async fn start_with(config: FaultConfig, extras: Extras) -> Self {
        let shared = Arc::new(Shared {
            extras,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(config.seed)),
            config,
            log: Mutex::new(Vec::new()),
            oversize_sent: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/items", get(items))
            .with_state(shared.clone());
        let base = super::serve(app).await;
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

    /// The request counter this server counts into.
    pub fn hits(&self) -> &Hits {
        &self.shared.extras.hits
    }

    /// Bytes of oversize bodies handed to the connection so far: far below
    /// the body's size when the client stops reading at its limit.
    pub fn oversize_sent(&self) -> usize {
        self.shared.oversize_sent.load(Ordering::SeqCst)
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

fn draw(shared: &Shared, number: usize) -> Option<Fault> {
    let config = &shared.config;
    let mut rng = shared.rng.lock().unwrap();
    if let Some((_, fault)) = shared.extras.script.iter().find(|(n, _)| *n == number) {
        return Some(*fault);
    }
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
    shared.extras.hits.add();
    let fault = {
        let mut log = shared.log.lock().unwrap();
        let fault = draw(&shared, log.len() + 1);
        log.push((format!("{q:?}"), fault));
        fault
    };
    let expected = format!("Bearer {}", shared.config.token);
    let bearer =
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) == Some(expected.as_bytes());
    if !bearer && q.get("api_key") != Some(&shared.config.token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if !shared.extras.delay.is_zero() {
        tokio::time::sleep(shared.extras.delay).await;
    }
    let (start, page) = position(&shared.config, &q);
    let since = q
        .get("since")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let window = Window {
        since,
        count: shared.config.records.saturating_sub(since),
    };
    let body = page_body(
        &shared.config,
        window,
        start,
        fault == Some(Fault::RepeatCursor),
    );
    match fault {
        None | Some(Fault::RepeatCursor) => {
            json_response(&shared.config, window, start, page, body)
        }
        Some(Fault::Oversize) => oversize(shared.clone()),
        Some(fault) => faulty(&shared.config, fault, body),
    }
}

/// `{"data":[],"padding":"xxx..."}` of `oversize_bytes`, produced lazily in
/// 64 KiB chunks with no Content-Length: only a limit enforced while
/// reading stops it early.
fn oversize(shared: Arc<Shared>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let total = shared.config.oversize_bytes;
    let chunks = futures::stream::unfold(0usize, move |sent| {
        let shared = shared.clone();
        async move {
            if sent >= total {
                return None;
            }
            let text = match sent {
                0 => format!("{{\"data\":[],\"padding\":\"{}", "x".repeat(CHUNK)),
                _ if sent + CHUNK >= total => "\"}".to_string(),
                _ => "x".repeat(CHUNK),
            };
            let size = text.len().max(CHUNK);
            shared.oversize_sent.fetch_add(text.len(), Ordering::SeqCst);
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from(text)),
                sent + size,
            ))
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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

/// The records a request can see: ids above `since`, `count` of them.
/// Positions (cursor, offset, from) index into this window.
#[derive(Clone, Copy)]
struct Window {
    since: u64,
    count: u64,
}

impl Window {
    /// The next URL's query after `next`, keeping `since`.
    fn next_query(&self, next: u64, size: u64) -> String {
        match self.since {
            0 => format!("from={next}&size={size}"),
            since => format!("from={next}&size={size}&since={since}"),
        }
    }
}

fn page_body(config: &FaultConfig, window: Window, start: u64, repeat: bool) -> Value {
    let end = (start + config.page_size).min(window.count);
    let data: Vec<Value> = (start + 1..=end)
        .map(|i| record(window.since + i))
        .collect();
    let more = end < window.count;
    // A repeated cursor: the next position is the one just asked for.
    let next = if repeat { start } else { end };
    let size = config.page_size;
    let pages = window.count.div_ceil(size.max(1));
    match config.style {
        Style::Cursor => json!({ "data": data, "next": more.then(|| next.to_string()) }),
        Style::NextUrl => {
            json!({ "data": data, "links": { "next": more.then(|| format!("/items?{}", window.next_query(next, size))) } })
        }
        Style::LinkHeader => json!({ "data": data }),
        Style::Offset => json!({ "data": data, "total": window.count }),
        Style::Page => json!({ "data": data, "total_pages": pages }),
    }
}

fn json_response(
    config: &FaultConfig,
    window: Window,
    start: u64,
    _page: u64,
    body: Value,
) -> Response {
    let mut response = axum::Json(&body).into_response();
    if config.style == Style::LinkHeader {
        let end = (start + config.page_size).min(window.count);
        if end < window.count {
            let link = format!(
                "</items?{}>; rel=\"next\"",
                window.next_query(end, config.page_size)
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
        Fault::DeepNesting => {
            let levels = 10_000;
            let text = format!(
                "{{\"data\":[],\"x\":{}{}}}",
                "[".repeat(levels),
                "]".repeat(levels)
            );
            ([(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        // Handled before (they need the server's state or are no fault).
        Fault::Oversize | Fault::RepeatCursor => axum::Json(body).into_response(),
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

/// Fail when `text` holds any of `secrets` as written, percent-encoded (as
/// in a URL query) or form-encoded (spaces as `+`).
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    for secret in secrets {
        let forms = [
            secret.to_string(),
            utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
        ];
        for form in forms {
            assert!(
                !text.contains(&form),
                "a secret reached the output as {form:?}"
            );
        }
    }
}

/// A secret that URL encoding changes, sent as `?api_key=` by query auth.
pub const API_KEY: &str = "k3y/with+plus&amp=eq uals";
