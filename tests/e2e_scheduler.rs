//! The scheduler end to end, with the built binary, a real local API and
//! real SQLite: job leases between processes, `from_job` fan-out over 1,000
//! parents surviving SIGKILL, a 30-slice backfill resuming after SIGKILL
//! without moving the incremental mark, `run --due` at an injected clock,
//! and a failing partition that leaves the others complete.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{BEARER, Project, TOKEN, describe};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::watch;

/// A local API that counts every request by path (and query), can hold
/// `/slow` requests at a gate, and fails `/part/bad` while `fail` is set.
#[derive(Clone)]
struct Api {
    hits: Arc<Mutex<BTreeMap<String, u64>>>,
    total: Arc<watch::Sender<u64>>,
    gate: Arc<watch::Sender<bool>>,
    in_flight: Arc<AtomicU64>,
    max_in_flight: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
    parents: u64,
    delay: Duration,
}

impl Api {
    async fn start(parents: u64, delay: Duration) -> (Api, String) {
        let api = Api {
            hits: Arc::default(),
            total: Arc::new(watch::channel(0).0),
            gate: Arc::new(watch::channel(true).0),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            fail: Arc::new(AtomicBool::new(true)),
            parents,
            delay,
        };
        let app = Router::new()
            .route("/parents", get(parents_page))
            .route("/children/{parent}", get(children))
            .route("/daily", get(daily))
            .route("/slow", get(slow))
            .route("/part/{name}", get(part))
            .route("/plain/{name}", get(plain))
            .with_state(api.clone());
        let base = common::serve(app).await;
        (api, base)
    }

    /// Count a request; false when it lacks the bearer token.
    async fn arrive(&self, key: String, headers: &HeaderMap) -> bool {
        *self.hits.lock().unwrap().entry(key).or_default() += 1;
        self.total.send_modify(|n| *n += 1);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"))
    }

    fn hits(&self, key: &str) -> u64 {
        self.hits.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn hits_with_prefix(&self, prefix: &str) -> BTreeMap<String, u64> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    fn total(&self) -> u64 {
        *self.total.borrow()
    }

    async fn wait_for_total(&self, n: u64) {
        let mut seen = self.total.subscribe();
        seen.wait_for(|total| *total >= n).await.unwrap();
    }
}

fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

fn parent(id: u64) -> Value {
    json!({ "id": id, "name": format!("parent {id}") })
}

fn child(parent: &str, n: u64) -> Value {
    json!({ "id": format!("{parent}-{n}"), "parent": parent })
}

fn day_record(start: &str, n: u64) -> Value {
    json!({ "id": format!("{start}-{n}"), "updated_at": format!("{start}T0{n}:00:00Z") })
}

async fn parents_page(State(api): State<Api>, headers: HeaderMap) -> Response {
    if !api.arrive("/parents".into(), &headers).await {
        return unauthorized();
    }
    let data: Vec<Value> = (1..=api.parents).map(parent).collect();
    axum::Json(json!({ "data": data })).into_response()
}

async fn children(State(api): State<Api>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !api.arrive(format!("/children/{id}"), &headers).await {
        return unauthorized();
    }
    axum::Json(json!({ "data": [child(&id, 1), child(&id, 2)] })).into_response()
}

async fn daily(
    State(api): State<Api>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let start = q.get("start").cloned().unwrap_or_default();
    let end = q.get("end").cloned().unwrap_or_default();
    if !api.arrive(format!("/daily?{start}..{end}"), &headers).await {
        return unauthorized();
    }
    let data: Vec<Value> = (1..=3).map(|n| day_record(&start, n)).collect();
    axum::Json(json!({ "data": data })).into_response()
}

/// Held at the gate while it is closed; records how many wait at once.
async fn slow(State(api): State<Api>, headers: HeaderMap) -> Response {
    if !api.arrive("/slow".into(), &headers).await {
        return unauthorized();
    }
    let now = api.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    api.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut gate = api.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    api.in_flight.fetch_sub(1, Ordering::SeqCst);
    axum::Json(json!({ "data": [{ "id": 1 }] })).into_response()
}

async fn part(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if !api.arrive(format!("/part/{name}"), &headers).await {
        return unauthorized();
    }
    if name == "bad" && api.fail.load(Ordering::SeqCst) {
        return (StatusCode::BAD_REQUEST, "no such region").into_response();
    }
    axum::Json(json!({ "data": [{ "id": format!("{name}-1") }, { "id": format!("{name}-2") }] }))
        .into_response()
}

async fn plain(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if !api.arrive(format!("/plain/{name}"), &headers).await {
        return unauthorized();
    }
    axum::Json(json!({ "data": [{ "id": 1, "job": name }] })).into_response()
}

/// A one-page job at `url`.
fn simple_job(url: &str, extra: &str) -> String {
    format!(
        "{extra}\n{BEARER}\n[request]\nurl = \"{url}\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n"
    )
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The summary line of `job` (the table the run prints).
fn summary_status(output: &std::process::Output, job: &str) -> Option<String> {
    stdout(output)
        .lines()
        .find(|line| line.split_whitespace().next() == Some(job))
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_string))
}

fn lease_rows(project: &Project) -> Vec<(String, String)> {
    let db = project.open();
    let mut stmt = db
        .prepare("SELECT job, holder FROM _apisync_job_leases ORDER BY job")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Start `apisync ARGS`, wait until the server has seen `requests` more
/// requests, then SIGKILL it.
async fn run_and_kill(project: &Project, api: &Api, args: &[&str], requests: u64) {
    let start = api.total();
    let mut child = project.command(args).spawn().expect("spawn apisync");
    tokio::select! {
        _ = api.wait_for_total(start + requests) => child.kill().await.expect("kill"),
        status = child.wait() => panic!("the run ended before it could be killed: {status:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_skips_a_job_the_first_one_is_running_and_wait_waits() {
    let (api, base) = Api::start(0, Duration::ZERO).await;
    let project = Project::new();
    project
        .job("slow", &simple_job(&format!("{base}/slow"), ""))
        .job("other", &simple_job(&format!("{base}/plain/other"), ""));
    api.gate.send_replace(false);
    let mut first = project.command(&["run", "slow"]).spawn().unwrap();
    api.wait_for_total(1).await;
    // The first process is inside the job: it holds the lease.
    assert_eq!(lease_rows(&project).len(), 1);

    let second = project.run(&["run"]).await;
    assert_eq!(
        second.status.code(),
        Some(0),
        "another process doing the work is not a failure: {}",
        describe(&second)
    );
    assert_eq!(summary_status(&second, "slow").as_deref(), Some("held"));
    assert_eq!(
        summary_status(&second, "other").as_deref(),
        Some("succeeded")
    );
    let text = describe(&second);
    assert!(
        text.contains("another process is running it") && text.contains("--wait"),
        "{text}"
    );
    assert_eq!(
        api.hits("/slow"),
        1,
        "the second process sent nothing for slow"
    );
    assert_eq!(project.rows("other").len(), 1);

    // With --wait the second process waits until the first is done.
    let mut waiting = project
        .command(&["run", "slow", "--wait"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(waiting.stderr.take().unwrap()).lines();
    let mut waited = false;
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("waiting for another process") {
            waited = true;
            break;
        }
    }
    assert!(waited, "the second process said it waits for the lease");
    assert_eq!(api.hits("/slow"), 1, "nothing sent while waiting");
    api.gate.send_replace(true);
    assert!(first.wait().await.unwrap().success());
    // Drain stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = waiting.wait().await.unwrap();
    assert!(status.success());
    assert_eq!(
        api.hits("/slow"),
        2,
        "the waiting process ran the job after"
    );
    assert_eq!(
        api.max_in_flight.load(Ordering::SeqCst),
        1,
        "never two processes in the job at once"
    );
    assert!(lease_rows(&project).is_empty(), "both released the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_of_a_killed_or_stale_holder_is_taken_over() {
    let (api, base) = Api::start(0, Duration::ZERO).await;
    let project = Project::new();
    project
        .job("slow", &simple_job(&format!("{base}/slow"), ""))
        .job("remote", &simple_job(&format!("{base}/plain/remote"), ""));

    // kill -9 on this host: the dead pid is noticed and the lease taken at once.
    api.gate.send_replace(false);
    run_and_kill(&project, &api, &["run", "slow"], 1).await;
    api.gate.send_replace(true);
    assert_eq!(lease_rows(&project).len(), 1, "kill -9 leaves the lease");
    let rerun = project.run(&["run", "slow"]).await;
    assert!(rerun.status.success(), "{}", describe(&rerun));
    assert_eq!(summary_status(&rerun, "slow").as_deref(), Some("succeeded"));
    assert_eq!(api.hits("/slow"), 2);

    // A holder on another host whose heartbeat went stale long ago.
    let db = project.open();
    db.execute_batch(
        "INSERT INTO _apisync_job_leases VALUES ('remote', 'elsewhere:4242:cafe',
             '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z');
         INSERT INTO _apisync_runs (job, started_at, status) VALUES ('remote', '2020-01-01T00:00:00.000Z', 'running');",
    )
    .unwrap();
    let taken = project.run(&["run", "remote"]).await;
    assert!(taken.status.success(), "{}", describe(&taken));
    assert_eq!(api.hits("/plain/remote"), 1);
    assert!(lease_rows(&project).is_empty());
    let statuses: Vec<(String, String)> = db
        .prepare("SELECT job, status FROM _apisync_runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let statuses: Vec<(&str, &str)> = statuses
        .iter()
        .map(|(j, s)| (j.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("slow", "interrupted"),
            ("slow", "succeeded"),
            ("remote", "interrupted"),
            ("remote", "succeeded"),
        ],
        "the runs the dead holders left running are marked interrupted"
    );

    // A live holder elsewhere with a fresh heartbeat is respected.
    let fresh = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    db.execute(
        "INSERT INTO _apisync_job_leases VALUES ('remote', 'elsewhere:4242:cafe', ?1, ?1)",
        [&fresh],
    )
    .unwrap();
    let skipped = project.run(&["run", "remote"]).await;
    assert_eq!(skipped.status.code(), Some(0), "{}", describe(&skipped));
    assert_eq!(summary_status(&skipped, "remote").as_deref(), Some("held"));
    assert_eq!(api.hits("/plain/remote"), 1);
}

fn parents_job(base: &str) -> String {
    simple_job(&format!("{base}/parents"), "")
}

fn children_job(base: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/children/{{partition}}"
[partitions]
from_job = "parents"
field = "/id"
[records]
path = "/data"
[output]
mode = "append"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_partitions_from_a_parent_table_survive_a_kill_and_rerun() {
    let (api, base) = Api::start(1000, Duration::from_millis(2)).await;
    let project = Project::new();
    project
        .job("parents", &parents_job(&base))
        .job("children", &children_job(&base));
    let parents = project.run(&["run", "parents"]).await;
    assert!(parents.status.success(), "{}", describe(&parents));
    assert_eq!(project.rows("parents").len(), 1000);

    run_and_kill(&project, &api, &["run", "children"], 150).await;
    run_and_kill(&project, &api, &["run", "children"], 300).await;
    let done_before = api.hits_with_prefix("/children/").len();
    assert!(done_before < 1000, "killed before the end");
    let rerun = project
        .run(&["run", "children", "--concurrency", "4"])
        .await;
    assert!(rerun.status.success(), "{}", describe(&rerun));

    // Append mode: a partition written twice would show as duplicate rows.
    let rows = project.rows("children");
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 2000, "no duplicate and nothing missing");
    let expected: BTreeSet<String> = (1..=1000)
        .flat_map(|p| [1, 2].map(|n| child(&p.to_string(), n)["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(unique, expected);

    let hits = api.hits_with_prefix("/children/");
    assert_eq!(hits.len(), 1000, "every parent's partition was requested");
    let repeated: u64 = hits.values().map(|n| n - 1).sum();
    // Only partitions in flight at a kill are asked again (8 streams each).
    assert!(repeated <= 16, "{repeated} repeated requests");

    // The pass completed: the next run starts a new one over all parents.
    let again = project.run(&["run", "children"]).await;
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(
        api.hits_with_prefix("/children/").values().sum::<u64>(),
        1000 + repeated + 1000
    );
}

fn daily_job(base: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/daily"
query = {{ start = "{{partition.start}}", end = "{{partition.end}}" }}
[partitions]
dates = {{ from = "2024-01-01", to = "2024-01-03", step = "1d" }}
[records]
path = "/data"
primary_key = ["/id"]
[incremental]
cursor_field = "/updated_at"
cursor_type = "timestamp"
param = "updated_since"
initial = "2020-01-01T00:00:00Z"
"#
    )
}

fn marks(project: &Project) -> Vec<(String, String)> {
    let db = project.open();
    let mut stmt = db
        .prepare(
            "SELECT partition, value FROM _apisync_marks WHERE job = 'daily' ORDER BY partition",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_thirty_daily_slices_resumes_after_a_kill_and_keeps_the_mark() {
    let (api, base) = Api::start(0, Duration::from_millis(20)).await;
    let project = Project::new();
    project.job("daily", &daily_job(&base));
    let regular = project.run(&["run", "daily"]).await;
    assert!(regular.status.success(), "{}", describe(&regular));
    let marks_before = marks(&project);
    assert_eq!(marks_before.len(), 2, "one mark per regular partition");

    let backfill = [
        "backfill",
        "daily",
        "--from",
        "2024-02-01",
        "--to",
        "2024-03-02",
        "--concurrency",
        "2",
    ];
    run_and_kill(&project, &api, &backfill, 10).await;
    let finished_at_kill: i64 = project
        .open()
        .query_row(
            "SELECT count(*) FROM _apisync_finished_streams WHERE job = 'daily'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(finished_at_kill >= 5, "slices finished before the kill");
    let rerun = project.run(&backfill).await;
    assert!(rerun.status.success(), "{}", describe(&rerun));

    let slices = api.hits_with_prefix("/daily?2024-02");
    let slices_march = api.hits_with_prefix("/daily?2024-03");
    assert_eq!(slices.len() + slices_march.len(), 30, "{slices:?}");
    let repeated: u64 = slices
        .values()
        .chain(slices_march.values())
        .map(|n| n - 1)
        .sum();
    assert!(
        repeated <= 2,
        "only the slices in flight at the kill are asked again ({repeated})"
    );
    assert_eq!(api.hits("/daily?2024-02-29..2024-03-01"), 1);
    assert_eq!(api.hits("/daily?2024-03-01..2024-03-02"), 1);

    let days: BTreeSet<String> = project
        .rows("daily")
        .iter()
        .map(|r| r["id"].as_str().unwrap()[..10].to_string())
        .collect();
    assert_eq!(
        days.len(),
        2 + 30,
        "the regular days and every backfilled day"
    );
    assert_eq!(
        marks(&project),
        marks_before,
        "a backfill never moves the mark"
    );
    let left: i64 = project
        .open()
        .query_row(
            "SELECT count(*) FROM _apisync_finished_streams WHERE job = 'daily'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "a complete backfill forgets its finished slices");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_selects_exactly_the_jobs_due_at_the_given_clock() {
    let (api, base) = Api::start(0, Duration::ZERO).await;
    let project = Project::new();
    let job = |name: &str, schedule: &str| simple_job(&format!("{base}/plain/{name}"), schedule);
    project
        .job(
            "quarterly",
            &job("quarterly", "schedule = \"*/15 * * * *\""),
        )
        .job("nightly", &job("nightly", "schedule = \"0 3 * * *\""))
        .job("fresh", &job("fresh", "schedule = \"0 3 * * *\""))
        .job("always", &job("always", ""));
    let created = project.run(&["status"]).await;
    assert!(created.status.success(), "{}", describe(&created));
    project
        .open()
        .execute_batch(
            "INSERT INTO _apisync_runs (job, started_at, status) VALUES
                 ('quarterly', '2026-01-01T10:00:00.000Z', 'succeeded'),
                 ('nightly', '2026-01-01T03:00:05.000Z', 'succeeded'),
                 ('nightly', '2026-01-01T09:00:00.000Z', 'failed'),
                 ('always', '2026-01-01T10:19:00.000Z', 'succeeded');",
        )
        .unwrap();

    let early = project
        .command(&["run", "--due"])
        .env("APISYNC_NOW", "2026-01-01T10:14:59Z")
        .output()
        .await
        .unwrap();
    assert!(early.status.success(), "{}", describe(&early));
    let names = |output: &std::process::Output| -> BTreeSet<String> {
        ["quarterly", "nightly", "fresh", "always"]
            .into_iter()
            .filter(|j| summary_status(output, j).is_some())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        names(&early),
        BTreeSet::from(["fresh".into(), "always".into()])
    );

    let later = project
        .command(&["run", "--due"])
        .env("APISYNC_NOW", "2026-01-01T10:15:00Z")
        .output()
        .await
        .unwrap();
    assert!(later.status.success(), "{}", describe(&later));
    assert_eq!(
        names(&later),
        BTreeSet::from(["quarterly".into(), "always".into()]),
        "fresh succeeded at real time, after its 03:00 slot of the fake clock"
    );
    assert_eq!(
        api.hits("/plain/nightly"),
        0,
        "not due until 03:00 tomorrow"
    );
    assert_eq!(api.hits("/plain/quarterly"), 1);
    assert_eq!(api.hits("/plain/fresh"), 1);
    assert_eq!(api.hits("/plain/always"), 2);

    let status = project
        .command(&["status", "--json", "nightly", "always"])
        .env("APISYNC_NOW", "2026-01-01T10:15:00Z")
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{}", describe(&status));
    let lines: Vec<Value> = serde_json::from_slice(&status.stdout).unwrap();
    let next_due = |job: &str| {
        lines
            .iter()
            .find(|line| line["job"] == job)
            .map(|line| line["next_due"].clone())
    };
    assert_eq!(next_due("nightly"), Some(json!("2026-01-02T03:00:00Z")));
    assert_eq!(
        next_due("always"),
        Some(Value::Null),
        "no schedule: every run"
    );

    let bad_clock = project
        .command(&["run", "--due"])
        .env("APISYNC_NOW", "yesterday")
        .output()
        .await
        .unwrap();
    assert_eq!(bad_clock.status.code(), Some(2), "{}", describe(&bad_clock));
    assert!(describe(&bad_clock).contains("APISYNC_NOW"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_partition_leaves_the_others_complete_and_a_rerun_only_retries_it() {
    let (api, base) = Api::start(0, Duration::ZERO).await;
    let project = Project::new();
    project.job(
        "regions",
        &format!(
            r#"{BEARER}
[request]
url = "{base}/part/{{partition}}"
[partitions]
values = ["us", "bad", "eu"]
[records]
path = "/data"
primary_key = ["/id"]
[retry]
max_attempts = 2
initial_backoff = "1ms"
max_backoff = "2ms"
"#
        ),
    );
    let failed = project.run(&["run"]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", describe(&failed));
    assert!(
        describe(&failed).contains("/part/bad"),
        "{}",
        describe(&failed)
    );
    let ids: BTreeSet<String> = project
        .rows("regions")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["us-1", "us-2", "eu-1", "eu-2"].map(String::from))
    );

    api.fail.store(false, Ordering::SeqCst);
    let (us, eu, bad) = (
        api.hits("/part/us"),
        api.hits("/part/eu"),
        api.hits("/part/bad"),
    );
    let rerun = project.run(&["run"]).await;
    assert!(rerun.status.success(), "{}", describe(&rerun));
    assert_eq!(api.hits("/part/us"), us, "finished partitions are skipped");
    assert_eq!(api.hits("/part/eu"), eu);
    assert_eq!(api.hits("/part/bad"), bad + 1);
    assert_eq!(project.rows("regions").len(), 6);
}
