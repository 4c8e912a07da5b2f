//! Limits shared by every job of one `apisync run`, seen from the server
//! side: test servers record how many requests they have in flight and
//! when each arrived, and the assertions read that record. Several jobs,
//! each with several partitions, hit the servers at once.
//!
//! Each server is its own host key (`127.0.0.1:PORT`): the port form of a
//! `[hosts]` key, so two local servers can have different limits.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use common::{BEARER, Project, TOKEN, describe};

/// Requests in flight: now and the most seen at once. One may be shared
/// by several servers to watch the global limit.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// What a server answers instead of a page.
#[derive(Clone, Copy)]
enum Script {
    /// Every request gets its page.
    Pages,
    /// The first request for each page gets a 503; the retry gets the page.
    FailEachPageOnce,
    /// The `n`th request (1-based) gets 429 with `Retry-After: secs`.
    TooManyAt { n: usize, secs: u64 },
}

struct Arrival {
    at: Instant,
    status: u16,
}

struct Shared {
    /// How long each response takes, so that requests overlap.
    hold: Duration,
    pages: u64,
    script: Script,
    host: InFlight,
    global: Arc<InFlight>,
    arrivals: Mutex<Vec<Arrival>>,
    /// Pages asked for once already (for `FailEachPageOnce`).
    seen: Mutex<HashMap<String, usize>>,
    /// When the scripted 429 went out.
    too_many_sent: Mutex<Option<Instant>>,
}

struct Server {
    base: String,
    shared: Arc<Shared>,
}

impl Server {
    async fn start(global: &Arc<InFlight>, hold: Duration, pages: u64, script: Script) -> Server {
        let shared = Arc::new(Shared {
            hold,
            pages,
            script,
            host: InFlight::default(),
            global: global.clone(),
            arrivals: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            too_many_sent: Mutex::new(None),
        });
        let app = Router::new()
            .route("/items", get(items))
            .with_state(shared.clone());
        let base = common::serve(app).await;
        Server { base, shared }
    }

    /// `127.0.0.1:PORT`, the `[hosts]` key of this server alone.
    fn host_key(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// A job with `parts` partitions, each `pages` pages of one record.
    fn job(&self, parts: &[&str]) -> String {
        let values: Vec<String> = parts.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "{BEARER}\n[request]\nurl = \"{base}/items\"\nquery = {{ part = \"{{partition}}\" }}\n\
             [pagination]\ntype = \"page\"\ntotal_pages_path = \"/total_pages\"\n\
             [partitions]\nvalues = [{values}]\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
             [retry]\nmax_attempts = 4\ninitial_backoff = \"1ms\"\nmax_backoff = \"5s\"\n",
            base = self.base,
            values = values.join(", "),
        )
    }

    fn max_in_flight(&self) -> usize {
        self.shared.host.max()
    }

    /// Arrival times, in order, and their statuses.
    fn arrivals(&self) -> Vec<(Instant, u16)> {
        let arrivals = self.shared.arrivals.lock().unwrap();
        let mut out: Vec<_> = arrivals.iter().map(|a| (a.at, a.status)).collect();
        out.sort_by_key(|(at, _)| *at);
        out
    }
}

async fn items(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let at = Instant::now();
    shared.host.enter();
    shared.global.enter();
    let number = {
        let mut arrivals = shared.arrivals.lock().unwrap();
        arrivals.push(Arrival { at, status: 200 });
        arrivals.len()
    };
    // Simulates a slow API, so that requests overlap; not synchronisation.
    tokio::time::sleep(shared.hold).await;
    let response = answer(&shared, &headers, &q, number);
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        *shared.too_many_sent.lock().unwrap() = Some(Instant::now());
    }
    shared.arrivals.lock().unwrap()[number - 1].status = response.status().as_u16();
    shared.global.leave();
    shared.host.leave();
    response
}

fn answer(
    shared: &Shared,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    number: usize,
) -> Response {
    let bearer = format!("Bearer {TOKEN}");
    if headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) != Some(bearer.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let part = q.get("part").cloned().unwrap_or_default();
    let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    match shared.script {
        Script::Pages => {}
        Script::FailEachPageOnce => {
            let mut seen = shared.seen.lock().unwrap();
            let count = seen.entry(format!("{part}/{page}")).or_default();
            *count += 1;
            if *count == 1 {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
        Script::TooManyAt { n, secs } if n == number => {
            let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
            let after = HeaderValue::from_str(&secs.to_string()).expect("header value");
            response.headers_mut().insert(header::RETRY_AFTER, after);
            return response;
        }
        Script::TooManyAt { .. } => {}
    }
    let body = json!({
        "data": [{ "id": format!("{part}-{page}") }],
        "total_pages": shared.pages,
    });
    axum::Json(body).into_response()
}

/// Run every job of `project`, insist on success and return the JSON summary.
async fn run_all(project: &Project) -> Value {
    let output = project.run(&["--log-format", "json", "run"]).await;
    let text = describe(&output);
    assert!(output.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|value| value.get("jobs").is_some());
    summary.unwrap_or_else(|| panic!("a JSON summary on stdout: {text}"))
}

/// The summary entry of `job`.
fn job_summary<'a>(summary: &'a Value, job: &str) -> &'a Value {
    let jobs = summary["jobs"].as_array().expect("jobs");
    jobs.iter()
        .find(|j| j["job"] == job)
        .unwrap_or_else(|| panic!("{job} in {summary}"))
}

const PARTS: &[&str] = &["a", "b", "c", "d"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_flight_requests_never_exceed_the_global_or_the_host_limit() {
    let global = Arc::new(InFlight::default());
    let hold = Duration::from_millis(100);
    let limited = Server::start(&global, hold, 3, Script::Pages).await;
    let other = Server::start(&global, hold, 3, Script::Pages).await;
    let project = Project::new();
    project.config(&format!(
        "concurrency = 3\njob_concurrency = 4\n[hosts.\"{}\"]\nconcurrency = 2\n",
        limited.host_key()
    ));
    project.job("first", &limited.job(PARTS));
    project.job("second", &limited.job(PARTS));
    project.job("third", &other.job(PARTS));
    let summary = run_all(&project).await;

    assert!(
        limited.max_in_flight() <= 2,
        "host limit: {}",
        limited.max_in_flight()
    );
    assert!(global.max() <= 3, "global limit: {}", global.max());
    // The limits were reached, so the bounds above were tested.
    assert_eq!(
        limited.max_in_flight(),
        2,
        "16 streams compete for the host"
    );
    assert_eq!(global.max(), 3, "24 streams compete for 3 slots");
    for job in ["first", "second", "third"] {
        assert_eq!(project.rows(job).len(), 12, "{job} synced every page");
        let entry = job_summary(&summary, job);
        assert_eq!(entry["requests"], 12, "{entry}");
        assert_eq!(entry["retries"], 0, "{entry}");
    }
    assert_eq!(limited.arrivals().len(), 24);
}

/// The client may be descheduled between taking a rate cell and the
/// request reaching the server (the machine is busy in CI), which shortens
/// the span between first and last arrival by up to this much. Without the
/// limit the span is a few tens of milliseconds, far below every bound.
const DELIVERY_SLACK: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_host_gets_no_more_than_its_rate() {
    let global = Arc::new(InFlight::default());
    let server = Server::start(&global, Duration::ZERO, 3, Script::Pages).await;
    let project = Project::new();
    project.config(&format!(
        "concurrency = 8\n[hosts.\"{}\"]\nrate_limit = \"10/s\"\n",
        server.host_key()
    ));
    project.job("first", &server.job(&["a", "b"]));
    project.job("second", &server.job(&["c", "d"]));
    run_all(&project).await;

    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 12);
    // One request every 100 ms, no burst: 12 requests span at least 1.1 s.
    // (Evenness itself is tested with paused time beside the limiter.)
    let span = arrivals[11].0 - arrivals[0].0;
    let least = Duration::from_millis(1_100) - DELIVERY_SLACK;
    assert!(span >= least, "12 requests at 10/s arrived within {span:?}");
    assert_eq!(
        project.rows("first").len() + project.rows("second").len(),
        12
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_count_against_the_host_rate_and_concurrency() {
    let global = Arc::new(InFlight::default());
    let hold = Duration::from_millis(20);
    let server = Server::start(&global, hold, 2, Script::FailEachPageOnce).await;
    let project = Project::new();
    project.config(&format!(
        "concurrency = 8\n[hosts.\"{}\"]\nrate_limit = \"5/s\"\nconcurrency = 1\n",
        server.host_key()
    ));
    project.job("first", &server.job(&["a", "b"]));
    project.job("second", &server.job(&["c"]));
    let summary = run_all(&project).await;

    let arrivals = server.arrivals();
    // 6 pages, each failed once: 12 requests, every one under the limits.
    assert_eq!(arrivals.len(), 12);
    assert_eq!(arrivals.iter().filter(|(_, s)| *s == 503).count(), 6);
    assert_eq!(server.max_in_flight(), 1, "a retry takes a host slot too");
    // 12 cells at 5/s span 2.2 s; were retries free, 6 cells and 12
    // responses of 20 ms would take about 1.2 s.
    let span = arrivals[11].0 - arrivals[0].0;
    let least = Duration::from_millis(2_200) - DELIVERY_SLACK;
    assert!(span >= least, "retries took rate cells too: {span:?}");
    let first = job_summary(&summary, "first");
    assert_eq!(
        (first["requests"].as_u64(), first["retries"].as_u64()),
        (Some(8), Some(4))
    );
    let second = job_summary(&summary, "second");
    assert_eq!(
        (second["requests"].as_u64(), second["retries"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(project.rows("first").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_pauses_the_host_for_every_stream() {
    let global = Arc::new(InFlight::default());
    let hold = Duration::from_millis(10);
    let script = Script::TooManyAt { n: 2, secs: 1 };
    let server = Server::start(&global, hold, 3, script).await;
    let project = Project::new();
    // One slot: every other stream is queued for the host when the 429
    // comes, and the pause is in place before the slot is free again.
    project.config(&format!(
        "concurrency = 8\n[hosts.\"{}\"]\nconcurrency = 1\n",
        server.host_key()
    ));
    project.job("first", &server.job(&["a", "b"]));
    project.job("second", &server.job(&["c", "d"]));
    let summary = run_all(&project).await;

    let sent = server
        .shared
        .too_many_sent
        .lock()
        .unwrap()
        .expect("a 429 was sent");
    let pause_end = sent + Duration::from_secs(1);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 13, "12 pages and one retry");
    let during: Vec<Duration> = arrivals
        .iter()
        .filter(|(at, _)| *at > sent && *at < pause_end)
        .map(|(at, _)| *at - sent)
        .collect();
    assert!(
        during.is_empty(),
        "requests arrived during the pause, after {during:?}"
    );
    let after = arrivals.iter().filter(|(at, _)| *at >= pause_end).count();
    assert_eq!(after, 11, "every later request waited the pause out");
    let retries: u64 = ["first", "second"]
        .iter()
        .map(|job| job_summary(&summary, job)["retries"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(retries, 1);
}
