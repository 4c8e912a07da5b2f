//! `--metrics-file` and `--pushgateway` end to end: the built binary syncs
//! from the demo API; the file it writes is parsed with a Prometheus text
//! parser (not a regex) and must hold the run's figures; the push must
//! reach a local Pushgateway stand-in with the right method, path and body.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apisync::demo::{DemoConfig, DemoServer};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use common::{BEARER, Project, TOKEN, describe};
use prometheus_parse::{Scrape, Value};

const CUSTOMERS: u64 = 25;

async fn demo() -> DemoServer {
    let config = DemoConfig {
        customers: CUSTOMERS,
        orders: 0,
        events: 0,
        delay: Duration::ZERO,
        token: TOKEN.to_string(),
    };
    DemoServer::bind(0, config).await.expect("bind demo server")
}

/// A customers job (cursor, 10 per page: 3 pages) and a job whose URL is
/// a 404 (fails at once, so the file shows both outcomes).
fn project(base: &str) -> Project {
    let project = Project::new();
    project.job("customers", &common::demo_customers_job(base, ""));
    project.job(
        "missing",
        &format!(
            r#"{BEARER}
[request]
url = "{base}/v1/no-such-endpoint"
[records]
path = "/data"
[retry]
max_attempts = 1
"#
        ),
    );
    project
}

fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).expect("the metrics parse as Prometheus text")
}

/// The value of `metric` whose labels include every pair of `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {metric} {labels:?}"));
    match sample.value {
        Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => v,
        ref other => panic!("{metric} is not a plain value: {other:?}"),
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn the_metrics_file_holds_the_run_s_figures() {
    let server = demo().await;
    let project = project(&server.base_url());
    std::fs::create_dir(project.path().join("textfile")).expect("folder");
    let before = unix_now();
    let output = project
        .run(&["run", "--metrics-file", "textfile/apisync.prom"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = std::fs::read_to_string(project.path().join("textfile/apisync.prom"))
        .expect("the metrics file was written although a job failed");
    let scrape = parse(&text);

    let customers = [("apisync_job", "customers")];
    let synced = project.rows("customers").len() as f64;
    assert_eq!(synced, CUSTOMERS as f64);
    assert_eq!(value(&scrape, "apisync_job_records", &customers), synced);
    assert_eq!(value(&scrape, "apisync_job_pages", &customers), 3.0);
    // Three pages, no failures: three 2xx requests and no retry.
    let ok_requests = [("apisync_job", "customers"), ("class", "2xx")];
    assert_eq!(value(&scrape, "apisync_job_requests", &ok_requests), 3.0);
    let server_errors = [("apisync_job", "customers"), ("class", "5xx")];
    assert_eq!(value(&scrape, "apisync_job_requests", &server_errors), 0.0);
    assert_eq!(value(&scrape, "apisync_job_retries", &customers), 0.0);
    assert!(value(&scrape, "apisync_job_duration_seconds", &customers) > 0.0);
    let last = value(
        &scrape,
        "apisync_job_last_success_timestamp_seconds",
        &customers,
    );
    assert!(
        last >= before - 1.0 && last <= unix_now(),
        "{last} vs {before}"
    );
    let ok = [("apisync_job", "customers"), ("status", "succeeded")];
    assert_eq!(value(&scrape, "apisync_job_status", &ok), 1.0);
    let not_failed = [("apisync_job", "customers"), ("status", "failed")];
    assert_eq!(value(&scrape, "apisync_job_status", &not_failed), 0.0);

    let failed = [("apisync_job", "missing"), ("status", "failed")];
    assert_eq!(value(&scrape, "apisync_job_status", &failed), 1.0);
    assert_eq!(
        value(
            &scrape,
            "apisync_job_records",
            &[("apisync_job", "missing")]
        ),
        0.0
    );
    // A job that never succeeded has no last-success sample at all.
    assert!(!scrape.samples.iter().any(|s| {
        s.metric == "apisync_job_last_success_timestamp_seconds"
            && s.labels.get("apisync_job") == Some("missing")
    }));
    for name in [
        "apisync_job_records",
        "apisync_job_pages",
        "apisync_job_requests",
        "apisync_job_retries",
        "apisync_job_duration_seconds",
        "apisync_job_last_success_timestamp_seconds",
        "apisync_job_status",
    ] {
        assert!(
            scrape.docs.contains_key(name),
            "no HELP for {name}:\n{text}"
        );
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{text}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(project.path().join("textfile"))
        .expect("folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_metrics_file_that_cannot_be_written_fails_the_run() {
    let server = demo().await;
    let project = project(&server.base_url());
    std::fs::remove_file(project.path().join("jobs/missing.toml")).expect("remove");
    let output = project
        .run(&["run", "--metrics-file", "no-such-dir/apisync.prom"])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot write the metrics file"), "{stderr}");
    // The sync itself committed.
    assert_eq!(project.rows("customers").len() as u64, CUSTOMERS);
    server.shutdown().await;
}

/// One request the Pushgateway stand-in received.
#[derive(Debug, Clone)]
struct Pushed {
    method: Method,
    path: String,
    content_type: String,
    body: String,
}

type Received = Arc<Mutex<Vec<Pushed>>>;

async fn record(
    State(seen): State<Received>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.lock().expect("lock").push(Pushed {
        method,
        path: uri.path().to_string(),
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    StatusCode::OK
}

/// A local Pushgateway stand-in that records every request.
async fn pushgateway() -> (String, Received) {
    let seen: Received = Arc::default();
    let app = Router::new().fallback(record).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), seen)
}

#[tokio::test]
async fn every_job_is_pushed_to_its_own_pushgateway_group() {
    let server = demo().await;
    let project = project(&server.base_url());
    let (url, seen) = pushgateway().await;
    let output = project.run(&["run", "--pushgateway", &url]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let mut pushed = seen.lock().expect("lock").clone();
    pushed.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = pushed.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/metrics/job/apisync/apisync_job/customers",
            "/metrics/job/apisync/apisync_job/missing"
        ]
    );
    let customers = &pushed[0];
    assert_eq!(customers.method, Method::PUT);
    assert!(
        customers
            .content_type
            .starts_with("text/plain; version=0.0.4"),
        "{customers:?}"
    );
    let scrape = parse(&customers.body);
    assert_eq!(value(&scrape, "apisync_job_records", &[]), CUSTOMERS as f64);
    assert_eq!(
        value(&scrape, "apisync_job_status", &[("status", "succeeded")]),
        1.0
    );
    // The grouping key carries the job; the body must not repeat it.
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.labels.get("apisync_job").is_none())
    );
    let missing = parse(&pushed[1].body);
    assert_eq!(
        value(&missing, "apisync_job_status", &[("status", "failed")]),
        1.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_push_is_a_warning_not_a_failed_run() {
    let server = demo().await;
    let project = project(&server.base_url());
    std::fs::remove_file(project.path().join("jobs/missing.toml")).expect("remove");
    // A port that was free a moment ago: nothing listens there now.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let url = format!("http://{closed}/");
    let output = project.run(&["run", "--pushgateway", &url]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("metrics not pushed"), "{stderr}");
    assert_eq!(project.rows("customers").len() as u64, CUSTOMERS);
    server.shutdown().await;
}

#[tokio::test]
async fn each_shard_pushes_to_its_own_group_so_pods_never_overwrite_each_other() {
    let server = demo().await;
    let project = project(&server.base_url());
    std::fs::remove_file(project.path().join("jobs/missing.toml")).expect("remove");
    let (url, seen) = pushgateway().await;
    for shard in ["0/2", "1/2"] {
        let output = project
            .run(&[
                "run",
                "--shard",
                shard,
                "--invocation",
                "metrics-test",
                "--pushgateway",
                &url,
            ])
            .await;
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }
    let mut paths: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|p| p.path.clone())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/metrics/job/apisync/apisync_job/customers/shard/0",
            "/metrics/job/apisync/apisync_job/customers/shard/1"
        ]
    );
    assert_eq!(project.rows("customers").len() as u64, CUSTOMERS);
    server.shutdown().await;
}
