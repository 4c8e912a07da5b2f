//! A scriptable local API for end-to-end pagination and write-mode tests.
//!
//! It holds records the test may change between runs, logs every request
//! (method, path and raw query, JSON body, whether the bearer token was
//! right) and answers through a responder the test writes, so each test
//! states its API's paging exactly and can assert what was asked for. A
//! gate holds one chosen request until the test releases it, so a test can
//! look at the database in the middle of a sync without sleeping.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::oneshot;

use super::TOKEN;

/// Requests after which the server refuses with 400: a client that loops
/// fails its test instead of hanging it.
pub const RUNAWAY: usize = 200;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query exactly as sent (still percent-encoded).
    pub query: Option<String>,
    /// The query decoded, in order.
    pub params: Vec<(String, String)>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    pub authorized: bool,
    /// `http://host:port` of the server, for absolute links.
    pub origin: String,
}

impl Seen {
    /// `METHOD /path?query`, for comparing request logs.
    pub fn line(&self) -> String {
        match &self.query {
            Some(query) => format!("{} {}?{query}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A numeric query parameter (a test server's own paging state).
    pub fn number(&self, name: &str) -> Option<usize> {
        self.param(name).and_then(|v| v.parse().ok())
    }
}

type Responder = dyn Fn(&Seen, &[Value]) -> Response + Send + Sync;
type Predicate = dyn Fn(&Seen) -> bool + Send + Sync;

struct Gate {
    when: Box<Predicate>,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

struct Shared {
    data: Mutex<Vec<Value>>,
    seen: Mutex<Vec<Seen>>,
    gate: Mutex<Option<Gate>>,
    responder: Box<Responder>,
}

/// A running API on 127.0.0.1.
pub struct Api {
    pub base: String,
    shared: Arc<Shared>,
}

/// A request held at the gate: the server answers it only after `release`.
pub struct Held {
    reached: Option<oneshot::Receiver<()>>,
    release: oneshot::Sender<()>,
}

impl Held {
    /// Returns once the held request has arrived.
    pub async fn reached(&mut self) {
        if let Some(reached) = self.reached.take() {
            reached.await.expect("the server dropped the gate");
        }
    }

    /// Let the held request be answered.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl Api {
    /// Serve `data` through `responder`, which sees each request (already
    /// checked for the bearer token) and the records as they are now.
    pub async fn start(
        data: Vec<Value>,
        responder: impl Fn(&Seen, &[Value]) -> Response + Send + Sync + 'static,
    ) -> Api {
        let shared = Arc::new(Shared {
            data: Mutex::new(data),
            seen: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
            responder: Box::new(responder),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let base = super::serve(app).await;
        Api { base, shared }
    }

    pub fn data(&self) -> Vec<Value> {
        self.shared.data.lock().unwrap().clone()
    }

    /// Change the records upstream (between runs, or while a request is held).
    pub fn update(&self, change: impl FnOnce(&mut Vec<Value>)) {
        change(&mut self.shared.data.lock().unwrap());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Every request so far as `METHOD /path?query`.
    pub fn lines(&self) -> Vec<String> {
        self.seen().iter().map(Seen::line).collect()
    }

    pub fn clear_seen(&self) {
        self.shared.seen.lock().unwrap().clear();
    }

    /// Hold the first request for which `when` is true until the test
    /// releases it.
    pub fn hold(&self, when: impl Fn(&Seen) -> bool + Send + Sync + 'static) -> Held {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.shared.gate.lock().unwrap() = Some(Gate {
            when: Box::new(when),
            reached: reached_tx,
            release: release_rx,
        });
        Held {
            reached: Some(reached_rx),
            release: release_tx,
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let query = parts.uri.query().map(str::to_string);
    let params = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let expected = format!("Bearer {TOKEN}");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query,
        params,
        body: serde_json::from_slice(&body).ok(),
        authorized: parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            == Some(expected.as_bytes()),
        origin: format!("http://{host}"),
    };
    let count = {
        let mut log = shared.seen.lock().unwrap();
        log.push(seen.clone());
        log.len()
    };
    if count > RUNAWAY {
        return (StatusCode::BAD_REQUEST, "runaway client: too many requests").into_response();
    }
    if !seen.authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let gate = {
        let mut gate = shared.gate.lock().unwrap();
        match gate.as_ref() {
            Some(g) if (g.when)(&seen) => gate.take(),
            _ => None,
        }
    };
    if let Some(gate) = gate {
        let _ = gate.reached.send(());
        let _ = gate.release.await;
    }
    let data = shared.data.lock().unwrap();
    (shared.responder)(&seen, &data)
}

/// `data[start..start + len]`, clipped to the data.
pub fn window(data: &[Value], start: usize, len: usize) -> Vec<Value> {
    data.iter().skip(start).take(len).cloned().collect()
}

/// A 200 JSON response.
pub fn json(body: Value) -> Response {
    axum::Json(body).into_response()
}

/// `response` with one `Link` field per entry of `fields`.
pub fn with_links(mut response: Response, fields: &[String]) -> Response {
    for field in fields {
        let value = HeaderValue::from_str(field).expect("a valid header value");
        response.headers_mut().append(header::LINK, value);
    }
    response
}

/// A 302 to `location`.
pub fn redirect(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// Records sorted by their `id`, for tables whose row order is not the server's.
pub fn by_id(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|row| row["id"].as_u64());
    rows
}
