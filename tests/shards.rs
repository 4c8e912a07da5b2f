//! Sharded runs end to end: several `apisync run --shard I/N` processes of
//! the built binary on one database, against a real local API that knows
//! which shard sent each request (every shard has its own bearer token).
//!
//! - four shards over 200 partitions: every page requested exactly once,
//!   by the shard the hash assigns it to, and the table equals the data;
//! - a shard killed with SIGKILL mid-stream: `--steal` on another shard
//!   finishes its streams from their checkpoints, and a rerun of the
//!   killed index has nothing left to do;
//! - `depends_on` across shards: the child's shard waits for the parent's
//!   shard, by the server's order of requests.
//!
//! Every test runs twice: on a SQLite file and on a fresh PostgreSQL
//! database (`APISYNC_TEST_POSTGRES`; see `common::databases`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use apisync::run::{STALE_ENV, job_shard, stream_shard};
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::databases::{Backend, TestDatabase};
use common::{Project, describe};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::oneshot;

/// Pages of every stream, and records on each page.
const PAGES: u32 = 3;
const PER_PAGE: u32 = 2;

/// Where the shards' database is: a SQLite file in the project folder or a
/// fresh PostgreSQL database. None: this backend is not available (skip).
fn database_for_test(backend: Backend, project: &Project) -> Option<TestDatabase> {
    TestDatabase::new(backend, project.path())
}

/// Each `name` (an `async fn name(backend: Backend)`) as two tests,
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(Backend::Postgres).await;
            }
        }
    )*};
}

on_both_backends!(
    four_shards_sync_two_hundred_partitions_each_page_exactly_once,
    a_killed_shard_is_finished_by_a_stealing_shard_and_its_rerun_has_nothing_left,
    a_child_waits_for_its_parent_on_another_shard,
    a_child_whose_parent_shard_never_starts_fails_with_what_to_do,
    a_stealing_shard_runs_a_parent_whose_shard_never_starts_then_the_child,
    incomplete_shard_settings_are_usage_errors,
    due_shards_decide_as_of_their_invocation_start,
    a_retried_shard_waits_for_a_dead_predecessor_on_another_node_then_takes_over,
    sigterm_gives_a_shards_streams_back_and_the_rerun_resumes_them,
    a_shard_killed_while_waiting_for_its_streams_leaves_no_run_running,
    stealing_survivors_finish_a_job_whose_shard_was_killed_mid_stream,
);

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    job: String,
    partition: String,
    page: u32,
    /// From the bearer token `shard-N`.
    shard: u32,
}

/// A request to hold: its sender hears when it arrives; it is never
/// answered (the test kills the process that waits for it).
struct Hold {
    job: String,
    partition: String,
    page: u32,
    reached: Option<oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Server {
    hits: Arc<Mutex<Vec<Hit>>>,
    hold: Arc<Mutex<Option<Hold>>>,
    /// True once the test lets a held request go on.
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            hits: Arc::default(),
            hold: Arc::default(),
            released: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl Server {
    async fn start() -> (Server, String) {
        let server = Server::default();
        let app = Router::new()
            .route("/{job}/{partition}", get(page))
            .with_state(server.clone());
        let base = common::serve(app).await;
        (server, base)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Answer the held request (and any later one) after all.
    fn release(&self) {
        self.released.send_replace(true);
    }

    /// Hold `job`/`partition` page `page` (the first request for it only)
    /// until [`Server::release`]; the receiver fires when it arrives.
    fn hold(&self, job: &str, partition: &str, page: u32) -> oneshot::Receiver<()> {
        let (reached, arrived) = oneshot::channel();
        *self.hold.lock().unwrap() = Some(Hold {
            job: job.into(),
            partition: partition.into(),
            page,
            reached: Some(reached),
        });
        arrived
    }
}

/// The records of one page: what the table must hold, exactly once.
fn records(job: &str, partition: &str, page: u32) -> Vec<Value> {
    (1..=PER_PAGE)
        .map(|n| json!({ "id": format!("{job}/{partition}/{page}/{n}") }))
        .collect()
}

/// Every record of the streams `partitions` of `job`.
fn all_records(job: &str, partitions: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = partitions
        .iter()
        .flat_map(|p| (1..=PAGES).flat_map(move |page| records(job, p, page)))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn page(
    State(server): State<Server>,
    UrlPath((job, partition)): UrlPath<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let shard = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer shard-"))
        .and_then(|n| n.parse::<u32>().ok());
    let Some(shard) = shard else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some(page) = query.get("page").and_then(|p| p.parse::<u32>().ok()) else {
        return (StatusCode::BAD_REQUEST, "no page").into_response();
    };
    server.hits.lock().unwrap().push(Hit {
        job: job.clone(),
        partition: partition.clone(),
        page,
        shard,
    });
    let held = {
        let mut hold = server.hold.lock().unwrap();
        match hold.as_mut() {
            Some(h) if h.job == job && h.partition == partition && h.page == page => {
                h.reached.take()
            }
            _ => None,
        }
    };
    if let Some(reached) = held {
        let mut released = server.released.subscribe();
        let _ = reached.send(());
        let _ = released.wait_for(|go| *go).await;
    }
    axum::Json(json!({ "data": records(&job, &partition, page), "total_pages": PAGES }))
        .into_response()
}

/// An append-mode job of `PAGES` pages per stream; `extra` adds lines
/// (partitions, depends_on) before the tables.
fn job_file(base: &str, name: &str, extra: &str) -> String {
    let url = if extra.contains("[partitions]") {
        format!("{base}/{name}/{{partition}}")
    } else {
        format!("{base}/{name}/whole")
    };
    format!(
        r#"auth = {{ type = "bearer", token = {{ env = "SHARD_TOKEN" }} }}
{extra}
[request]
url = "{url}"

[pagination]
type = "page"
page_param = "page"
start = 1
total_pages_path = "/total_pages"

[records]
path = "/data"

[output]
mode = "append"
"#
    )
}

fn partitions(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i:03}")).collect()
}

fn partitions_section(keys: &[String]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!("[partitions]\nvalues = [{}]\n", quoted.join(", "))
}

/// A project whose apisync.toml points at the shared database; None when
/// `backend` is not available.
fn project(backend: Backend, concurrency: usize) -> Option<(Project, TestDatabase)> {
    let project = Project::new();
    let db = database_for_test(backend, &project)?;
    project.config(&format!(
        "database = \"{}\"\nconcurrency = {concurrency}\n",
        db.setting()
    ));
    Some((project, db))
}

/// `apisync --log-format json run --shard INDEX/COUNT --invocation ID EXTRA`,
/// authenticating as that shard.
fn shard_command(
    project: &Project,
    index: u32,
    count: u32,
    invocation: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let shard = format!("{index}/{count}");
    let mut args = vec![
        "--log-format",
        "json",
        "run",
        "--shard",
        &shard,
        "--invocation",
        invocation,
    ];
    args.extend_from_slice(extra);
    let mut command = project.command(&args);
    command.env("SHARD_TOKEN", format!("shard-{index}"));
    command
}

/// The JSON summary a run printed on stdout.
fn summary_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary\n{}", describe(output)));
    serde_json::from_str(line).expect("the summary is JSON")
}

/// The `job` line of a JSON summary.
fn job_line<'a>(summary: &'a Value, job: &str) -> &'a Value {
    summary["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job"] == job))
        .unwrap_or_else(|| panic!("no job {job} in {summary}"))
}

/// Every record id in `table`, sorted (duplicates kept).
fn table_ids(db: &TestDatabase, table: &str) -> Vec<String> {
    let mut ids: Vec<String> = db
        .rows(table)
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_string())
        .collect();
    ids.sort();
    ids
}

/// `(partition, page) -> number of requests` for `job`.
fn requests_per_page(hits: &[Hit], job: &str) -> BTreeMap<(String, u32), usize> {
    let mut counts = BTreeMap::new();
    for hit in hits.iter().filter(|h| h.job == job) {
        *counts.entry((hit.partition.clone(), hit.page)).or_default() += 1;
    }
    counts
}

async fn four_shards_sync_two_hundred_partitions_each_page_exactly_once(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, db)) = project(backend, 8) else {
        return;
    };
    let keys = partitions(200);
    project.job(
        "items",
        &job_file(&base, "items", &partitions_section(&keys)),
    );
    let runs = (0..4).map(|index| shard_command(&project, index, 4, "inv-four", &[]).output());
    let outputs: Vec<Output> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|o| o.expect("run apisync"))
        .collect();
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", describe(output));
    }

    // Every page of every stream requested exactly once, by its own shard.
    let hits = server.hits();
    let per_page = requests_per_page(&hits, "items");
    let expected: BTreeMap<(String, u32), usize> = keys
        .iter()
        .flat_map(|k| (1..=PAGES).map(move |page| ((k.clone(), page), 1)))
        .collect();
    assert_eq!(per_page, expected, "each page exactly once");
    for hit in &hits {
        assert_eq!(
            hit.shard,
            stream_shard("items", &hit.partition, 4),
            "{hit:?} was requested by another shard than its own"
        );
    }

    // The table is the server's data: nothing missing, nothing doubled.
    assert_eq!(table_ids(&db, "items"), all_records("items", &keys));

    // Each process reports its own streams and only them.
    let mut completed_seen = 0;
    for (index, output) in outputs.iter().enumerate() {
        let index = u32::try_from(index).unwrap();
        let own = keys
            .iter()
            .filter(|k| stream_shard("items", k, 4) == index)
            .count() as u64;
        assert!(own > 0);
        let summary = summary_json(output);
        assert_eq!(summary["shard"]["index"], index);
        assert_eq!(summary["shard"]["count"], 4);
        assert_eq!(summary["shard"]["invocation"], "inv-four");
        let line = job_line(&summary, "items");
        // `succeeded` when the job was complete in the invocation as the
        // shard ended, else `held`: left to the shards still running.
        match line["status"].as_str() {
            Some("succeeded") => completed_seen += 1,
            Some("held") => {
                let error = line["error"].as_str().unwrap_or_default();
                assert!(error.contains("not complete in invocation"), "{summary}");
            }
            _ => panic!("{summary}"),
        }
        assert_eq!(line["streams"]["run"], own, "{summary}");
        assert_eq!(line["streams"]["stolen"], 0, "{summary}");
        assert_eq!(line["pages"], own * u64::from(PAGES), "{summary}");
    }
    assert!(
        completed_seen >= 1,
        "the shard that completed the pass says so"
    );

    // The pass completed once, on whichever shard finished last: the
    // finished set is cleared and the job is complete in the invocation.
    let count = |query: &str| db.scalar(query).expect("a count");
    assert_eq!(count("SELECT count(*) FROM _apisync_finished_streams"), "0");
    assert_eq!(
        count(
            "SELECT count(*) FROM _apisync_invocation_jobs WHERE invocation = 'inv-four' AND job = 'items'"
        ),
        "1"
    );
    let shards = db.query(
        "SELECT s.shard FROM _apisync_runs r JOIN _apisync_run_shards s ON s.run_id = r.id
         WHERE r.job = 'items' AND r.status = 'succeeded' ORDER BY s.shard",
    );
    let shard = |n: &str| vec![Some(n.to_string())];
    assert_eq!(
        shards,
        [shard("0"), shard("1"), shard("2"), shard("3")],
        "one run row per shard"
    );
}

async fn a_killed_shard_is_finished_by_a_stealing_shard_and_its_rerun_has_nothing_left(
    backend: Backend,
) {
    let (server, base) = Server::start().await;
    // One stream at a time per process: at the kill exactly one stream of
    // the killed shard is in flight.
    let Some((project, db)) = project(backend, 1) else {
        return;
    };
    let keys = partitions(24);
    project.job(
        "items",
        &job_file(&base, "items", &partitions_section(&keys)),
    );
    let theirs: Vec<&String> = keys
        .iter()
        .filter(|k| stream_shard("items", k, 2) == 1)
        .collect();
    assert!(theirs.len() >= 3, "{theirs:?}");
    // Shard 1 stops on the second page of one of its streams.
    let victim = theirs[1].clone();
    let arrived = server.hold("items", &victim, 2);
    let mut killed = shard_command(&project, 1, 2, "inv-kill", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shard 1");
    tokio::select! {
        reached = arrived => reached.expect("the held page arrived"),
        status = killed.wait() => panic!("shard 1 ended before the kill: {status:?}"),
    }
    killed.kill().await.expect("kill -9 shard 1");
    let before_kill = server.hits().len();

    let stealer = shard_command(&project, 0, 2, "inv-kill", &["--steal"])
        .output()
        .await
        .expect("run shard 0");
    assert_eq!(stealer.status.code(), Some(0), "{}", describe(&stealer));

    // Every record once: the victim's first page was committed by shard 1
    // (or is fetched again), never written twice.
    assert_eq!(table_ids(&db, "items"), all_records("items", &keys));
    let hits = server.hits();
    // Shard 0 fetched every page shard 1 had not: shard 1's other streams
    // whole, the victim from its checkpoint.
    let after: Vec<&Hit> = hits[before_kill..].iter().collect();
    assert!(after.iter().all(|h| h.shard == 0));
    for key in &theirs {
        let pages: BTreeSet<u32> = hits
            .iter()
            .filter(|h| &&h.partition == key)
            .map(|h| h.page)
            .collect();
        assert_eq!(pages, (1..=PAGES).collect(), "stream {key}");
    }
    // Only the stream in flight at the kill may see a page twice.
    for ((partition, page), n) in requests_per_page(&hits, "items") {
        assert!(
            n == 1 || (partition == victim && page <= 2),
            "{partition} page {page} requested {n} times"
        );
    }
    let summary = summary_json(&stealer);
    let line = job_line(&summary, "items");
    let stolen = line["streams"]["stolen"].as_u64().unwrap();
    assert!(stolen >= 1, "{summary}");
    assert_eq!(summary["shard"]["steal"], true);

    // The killed run is interrupted (its streams were taken over).
    let killed_status = db.scalar(
        "SELECT r.status FROM _apisync_runs r JOIN _apisync_run_shards s ON s.run_id = r.id
         WHERE s.invocation = 'inv-kill' AND s.shard = 1",
    );
    assert_eq!(killed_status.as_deref(), Some("interrupted"));

    // Kubernetes restarts index 1 in the same invocation: nothing to do.
    let requests = server.hits().len();
    let rerun = shard_command(&project, 1, 2, "inv-kill", &[])
        .output()
        .await
        .expect("rerun shard 1");
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    assert_eq!(server.hits().len(), requests, "the rerun sent no request");
    assert_eq!(job_line(&summary_json(&rerun), "items")["pages"], 0);
    assert_eq!(table_ids(&db, "items"), all_records("items", &keys));
}

async fn a_child_waits_for_its_parent_on_another_shard(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, db)) = project(backend, 4) else {
        return;
    };
    let (parent, parent_shard, child, child_shard) = parent_and_child(&project, &base);

    // The child's shard starts alone and says it waits.
    let mut waiting = shard_command(&project, child_shard, 2, "inv-deps", &[])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child's shard");
    let mut lines = BufReader::new(waiting.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .expect("read stderr")
            .unwrap_or_else(|| panic!("the child's shard ended without waiting"));
        if line.contains("waiting for the parent job") {
            break;
        }
    }
    assert!(
        server.hits().is_empty(),
        "nothing was fetched before the parent ran: {:?}",
        server.hits()
    );
    // Keep draining stderr so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let parent_run = shard_command(&project, parent_shard, 2, "inv-deps", &[])
        .output()
        .await
        .expect("run the parent's shard");
    assert_eq!(
        parent_run.status.code(),
        Some(0),
        "{}",
        describe(&parent_run)
    );
    let child_run = waiting.wait_with_output().await.expect("the child's shard");
    assert_eq!(child_run.status.code(), Some(0), "{}", describe(&child_run));

    // By the server's order: every parent page before any child page.
    let hits = server.hits();
    let order: Vec<&str> = hits.iter().map(|h| h.job.as_str()).collect();
    let last_parent = order
        .iter()
        .rposition(|j| *j == parent)
        .expect("parent pages");
    let first_child = order.iter().position(|j| *j == child).expect("child pages");
    assert!(last_parent < first_child, "{order:?}");
    assert_eq!(order.len(), 2 * PAGES as usize, "{order:?}");
    assert!(hits.iter().all(|h| if h.job == parent {
        h.shard == parent_shard
    } else {
        h.shard == child_shard
    }));
    let whole = ["whole".to_string()];
    assert_eq!(table_ids(&db, parent), all_records(parent, &whole));
    assert_eq!(table_ids(&db, child), all_records(child, &whole));
}

/// A parent job and its child, each on its own shard of two.
fn parent_and_child(project: &Project, base: &str) -> (&'static str, u32, &'static str, u32) {
    let (parent, child) = ("accounts", "contacts");
    let (parent_shard, child_shard) = (job_shard(parent, 2), job_shard(child, 2));
    assert_ne!(parent_shard, child_shard, "the test needs them apart");
    project.job(parent, &job_file(base, parent, ""));
    project.job(
        child,
        &job_file(base, child, &format!("depends_on = [\"{parent}\"]")),
    );
    (parent, parent_shard, child, child_shard)
}

async fn a_child_whose_parent_shard_never_starts_fails_with_what_to_do(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, _db)) = project(backend, 4) else {
        return;
    };
    let (parent, parent_shard, child, child_shard) = parent_and_child(&project, &base);
    let started = std::time::Instant::now();
    let output = shard_command(&project, child_shard, 2, "inv-gone", &[])
        .env(STALE_ENV, "1s")
        .output()
        .await
        .expect("run the child's shard");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let summary = summary_json(&output);
    let line = job_line(&summary, child);
    assert_eq!(line["status"], "failed", "{summary}");
    let error = line["error"].as_str().expect("an error");
    for needed in [
        format!("gave up waiting for job \"{parent}\""),
        format!("rerun shard(s) {parent_shard}/2 with the same --invocation"),
        "--steal".to_string(),
    ] {
        assert!(error.contains(&needed), "{needed:?} not in {error}");
    }
    assert!(server.hits().is_empty(), "{:?}", server.hits());
}

async fn a_stealing_shard_runs_a_parent_whose_shard_never_starts_then_the_child(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, _db)) = project(backend, 4) else {
        return;
    };
    let (parent, _, child, child_shard) = parent_and_child(&project, &base);
    let output = shard_command(&project, child_shard, 2, "inv-alone", &["--steal"])
        .output()
        .await
        .expect("run the child's shard");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let order: Vec<String> = server.hits().iter().map(|h| h.job.clone()).collect();
    let expected: Vec<&str> = [parent; PAGES as usize]
        .into_iter()
        .chain([child; PAGES as usize])
        .collect();
    assert_eq!(order, expected);
    assert_eq!(
        job_line(&summary_json(&output), parent)["streams"]["stolen"],
        1
    );
}

async fn incomplete_shard_settings_are_usage_errors(backend: Backend) {
    let Some((project, _db)) = project(backend, 1) else {
        return;
    };
    for (args, env, needed) in [
        (vec!["run", "--shard", "1/4"], vec![], "--invocation ID"),
        (
            vec!["run", "--shard", "4/4", "--invocation", "x"],
            vec![],
            "INDEX 4 is not below COUNT 4",
        ),
        (
            vec!["run"],
            vec![("JOB_COMPLETION_INDEX", "2")],
            "APISYNC_SHARD_COUNT",
        ),
        (vec!["run", "--steal"], vec![], "--steal"),
    ] {
        let mut command = project.command(&args);
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().await.expect("run apisync");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needed), "{args:?}: {stderr}");
    }
}

async fn due_shards_decide_as_of_their_invocation_start(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, db)) = project(backend, 4) else {
        return;
    };
    let keys = partitions(12);
    let schedule = "schedule = \"0 3 1 1 *\"\n";
    project.job(
        "items",
        &job_file(
            &base,
            "items",
            &format!("{schedule}{}", partitions_section(&keys)),
        ),
    );
    // Shard 0 runs its part to the end before shard 1 starts: its success
    // must not make the job look done to shard 1 of the same invocation.
    for index in 0..2 {
        let output = shard_command(&project, index, 2, "inv-due", &["--due"])
            .output()
            .await
            .expect("run a shard");
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }
    assert_eq!(table_ids(&db, "items"), all_records("items", &keys));
    let requests = server.hits().len();
    assert_eq!(requests, keys.len() * PAGES as usize);

    // The next invocation a minute later: the job succeeded in the last
    // one, so it is not due on any shard.
    let started = db
        .scalar("SELECT started_at FROM _apisync_invocations WHERE invocation = 'inv-due'")
        .expect("the invocation's start");
    let later =
        chrono::DateTime::parse_from_rfc3339(&started).unwrap() + chrono::Duration::minutes(1);
    for index in 0..2 {
        let output = shard_command(&project, index, 2, "inv-due-next", &["--due"])
            .env("APISYNC_NOW", later.to_rfc3339())
            .output()
            .await
            .expect("run a shard");
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }
    assert_eq!(server.hits().len(), requests, "nothing was due");
}

async fn a_retried_shard_waits_for_a_dead_predecessor_on_another_node_then_takes_over(
    backend: Backend,
) {
    let (server, base) = Server::start().await;
    let Some((project, db)) = project(backend, 4) else {
        return;
    };
    let keys = partitions(8);
    project.job(
        "items",
        &job_file(&base, "items", &partitions_section(&keys)),
    );
    let first = shard_command(&project, 0, 2, "inv-node", &[])
        .output()
        .await
        .expect("run shard 0");
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let mine: Vec<&String> = keys
        .iter()
        .filter(|k| stream_shard("items", k, 2) == 1)
        .collect();
    assert!(!mine.is_empty());
    // Shard 1's first pod died on another node in the middle of a stream:
    // its claim looks alive until its heartbeat is older than the limit.
    let started = std::time::Instant::now();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let dead = "other-node:4242:0badf00d";
    db.execute(&format!(
        "INSERT INTO _apisync_invocation_holders VALUES ('inv-node', '{dead}', 1, FALSE, '{now}', '{now}', NULL);
         INSERT INTO _apisync_invocation_streams VALUES ('inv-node', 'items', '{}', 1, 'running', '{dead}', '{now}', NULL);",
        mine[0]
    ));
    let retry = shard_command(&project, 1, 2, "inv-node", &[])
        .env(STALE_ENV, "2s")
        .output()
        .await
        .expect("run shard 1 again");
    assert_eq!(retry.status.code(), Some(0), "{}", describe(&retry));
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    // Nothing left undone, nothing twice.
    assert_eq!(table_ids(&db, "items"), all_records("items", &keys));
    let per_page = requests_per_page(&server.hits(), "items");
    assert!(per_page.values().all(|n| *n == 1), "{per_page:?}");
    assert_eq!(per_page.len(), keys.len() * PAGES as usize);
    let summary = summary_json(&retry);
    assert_eq!(
        job_line(&summary, "items")["streams"]["run"],
        mine.len() as u64
    );
}

async fn sigterm_gives_a_shards_streams_back_and_the_rerun_resumes_them(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, db)) = project(backend, 1) else {
        return;
    };
    let keys = partitions(8);
    project.job(
        "items",
        &job_file(&base, "items", &partitions_section(&keys)),
    );
    let mine: Vec<String> = keys
        .iter()
        .filter(|k| stream_shard("items", k, 2) == 0)
        .cloned()
        .collect();
    assert!(mine.len() >= 2, "{mine:?}");
    // One stream at a time: the first of shard 0's streams waits on page 2.
    let arrived = server.hold("items", &mine[0], 2);
    let mut first = shard_command(&project, 0, 2, "inv-term", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shard 0");
    tokio::select! {
        reached = arrived => reached.expect("the held page arrived"),
        status = first.wait() => panic!("shard 0 ended early: {status:?}"),
    }
    let pid = first.id().expect("pid");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = first.wait().await.expect("shard 0 exits");
    assert_eq!(status.code(), Some(143));

    // The stream was given back and the process recorded its end.
    let running = db.scalar(
        "SELECT count(*) FROM _apisync_invocation_streams
         WHERE invocation = 'inv-term' AND status = 'running'",
    );
    assert_eq!(running.as_deref(), Some("0"));
    let ended = db
        .query("SELECT ended_at IS NOT NULL FROM _apisync_invocation_holders WHERE invocation = 'inv-term'");
    assert_eq!(ended.len(), 1, "one process: {ended:?}");
    assert!(
        matches!(ended[0][0].as_deref(), Some("1" | "t")),
        "{ended:?}"
    );

    let rerun = shard_command(&project, 0, 2, "inv-term", &[])
        .output()
        .await
        .expect("rerun shard 0");
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    assert_eq!(table_ids(&db, "items"), all_records("items", &mine));
    // Page 1 committed before the stop: only the page in flight is asked twice.
    for ((partition, page), n) in requests_per_page(&server.hits(), "items") {
        let expected = if partition == mine[0] && page == 2 {
            2
        } else {
            1
        };
        assert_eq!(n, expected, "{partition} page {page}");
    }
}

/// Four unpartitioned jobs, the first of them run whole by shard 2 of 4,
/// and `items` over 24 partitions: `(job, its partitions)`.
fn five_jobs(project: &Project, base: &str) -> Vec<(String, Vec<String>)> {
    let names = [
        "accounts", "contacts", "orders", "offset", "events", "invoices", "users", "charges",
    ];
    let victim = names
        .iter()
        .find(|name| job_shard(name, 4) == 2)
        .expect("a job of shard 2");
    let mut jobs: Vec<(String, Vec<String>)> = std::iter::once(victim)
        .chain(names.iter().filter(|name| *name != victim).take(3))
        .map(|name| (name.to_string(), vec!["whole".to_string()]))
        .collect();
    for (name, _) in &jobs {
        project.job(name, &job_file(base, name, ""));
    }
    let keys = partitions(24);
    project.job(
        "items",
        &job_file(base, "items", &partitions_section(&keys)),
    );
    jobs.push(("items".into(), keys));
    jobs
}

/// Poll `query` (one value) until `done` says so; a bounded deadline turns
/// a state never reached into a failure, not a hang.
async fn wait_until(db: &TestDatabase, what: &str, query: &str, done: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let value = db.scalar(query).unwrap_or_default();
        if done(&value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {what} (last: {value:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// SIGKILL without reaping: until the test waits for it, the killed shard
/// is a zombie that /proc still lists, as a killed pod's process can be.
fn kill_9(child: &tokio::process::Child) {
    let pid = i32::try_from(child.id().expect("a running child")).expect("a pid");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let sent = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(sent, 0, "kill -9 {pid}");
}

/// Every table holds its server's data exactly once; no `runs` row of the
/// invocation is left `running`.
fn assert_exact_and_closed(db: &TestDatabase, jobs: &[(String, Vec<String>)], invocation: &str) {
    for (job, keys) in jobs {
        assert_eq!(table_ids(db, job), all_records(job, keys), "table {job}");
    }
    let running = db.query(&format!(
        "SELECT r.job, s.shard FROM _apisync_runs r JOIN _apisync_run_shards s ON s.run_id = r.id
         WHERE s.invocation = '{invocation}' AND r.status = 'running'"
    ));
    assert!(running.is_empty(), "runs left running: {running:?}");
    let completed = db.scalar(&format!(
        "SELECT count(*) FROM _apisync_invocation_jobs WHERE invocation = '{invocation}'"
    ));
    assert_eq!(completed.as_deref(), Some("5"), "every job complete");
}

/// Issue 20, first reproduction: a stealing shard holds a stream of shard
/// 2 when shard 2 starts; shard 2 opens its run and waits for it, and is
/// killed while waiting. Nobody has to take a stream over from it, yet its
/// run must not stay `running`.
async fn a_shard_killed_while_waiting_for_its_streams_leaves_no_run_running(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, db)) = project(backend, 2) else {
        return;
    };
    let jobs = five_jobs(&project, &base);
    let victim = jobs[0].0.clone();
    let invocation = "inv-wait";
    // Shard 3 steals shard 2's job and stops on its second page.
    let arrived = server.hold(&victim, "whole", 2);
    let mut stealer = shard_command(&project, 3, 4, invocation, &["--steal"])
        .env(STALE_ENV, "10m")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shard 3");
    tokio::select! {
        reached = arrived => reached.expect("the held page arrived"),
        status = stealer.wait() => panic!("shard 3 ended early: {status:?}"),
    }
    // Shard 2 opens its run of the job and waits for the stream shard 3 holds.
    let mut waiting = shard_command(&project, 2, 4, invocation, &[])
        .env(STALE_ENV, "10m")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shard 2");
    wait_until(
        &db,
        "shard 2 waiting in an open run",
        &format!(
            "SELECT count(*) FROM _apisync_runs r JOIN _apisync_run_shards s ON s.run_id = r.id
             WHERE s.invocation = '{invocation}' AND s.shard = 2 AND r.job = '{victim}'
               AND r.status = 'running'"
        ),
        |n| n == "1",
    )
    .await;
    kill_9(&waiting);
    server.release();
    let survivors = [0, 1].map(|index| {
        shard_command(&project, index, 4, invocation, &["--steal"])
            .env(STALE_ENV, "10m")
            .output()
    });
    let (stealer, survivors) = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        futures::future::join(
            stealer.wait_with_output(),
            futures::future::join_all(survivors),
        ),
    )
    .await
    .expect("the shards end (a dead holder must not be waited for until it is stale)");
    let stealer = stealer.expect("shard 3");
    assert_eq!(stealer.status.code(), Some(0), "{}", describe(&stealer));
    for output in survivors {
        let output = output.expect("a shard");
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }
    assert_exact_and_closed(&db, &jobs, invocation);
    let killed = db.query(&format!(
        "SELECT r.status FROM _apisync_runs r JOIN _apisync_run_shards s ON s.run_id = r.id
         WHERE s.invocation = '{invocation}' AND s.shard = 2"
    ));
    assert!(!killed.is_empty());
    assert!(
        killed
            .iter()
            .all(|row| row[0].as_deref() == Some("interrupted")),
        "{killed:?}"
    );
    waiting.wait().await.expect("reap shard 2");
}

/// Issue 20, second reproduction: shard 2 runs its job and is killed in
/// the middle of it while the other three, all `--steal`, run. They must
/// not exit with the job half done: one of them takes it over from its
/// checkpoint (the killed process is on this host: at once, although
/// it is an unreaped zombie and the stale limit is 10 minutes).
async fn stealing_survivors_finish_a_job_whose_shard_was_killed_mid_stream(backend: Backend) {
    let (server, base) = Server::start().await;
    let Some((project, db)) = project(backend, 2) else {
        return;
    };
    let jobs = five_jobs(&project, &base);
    let victim = jobs[0].0.clone();
    let invocation = "inv-survive";
    let arrived = server.hold(&victim, "whole", 2);
    let mut killed = shard_command(&project, 2, 4, invocation, &["--steal"])
        .env(STALE_ENV, "10m")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shard 2");
    tokio::select! {
        reached = arrived => reached.expect("the held page arrived"),
        status = killed.wait() => panic!("shard 2 ended early: {status:?}"),
    }
    let mut survivors: Vec<tokio::process::Child> = [0, 1, 3]
        .into_iter()
        .map(|index| {
            shard_command(&project, index, 4, invocation, &["--steal"])
                .env(STALE_ENV, "10m")
                .stdout(Stdio::piped())
                // Not read until the end: a full pipe would stall it.
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a survivor")
        })
        .collect();
    // Kill shard 2 once everything else is complete, or as soon as a
    // survivor gave up early (the bug: it exits with the job half done).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let others = db
            .scalar(&format!(
                "SELECT count(*) FROM _apisync_invocation_jobs WHERE invocation = '{invocation}'
                 AND job <> '{victim}'"
            ))
            .unwrap_or_default();
        let exited = survivors
            .iter_mut()
            .any(|s| s.try_wait().expect("try_wait").is_some());
        if others == "4" || exited {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other jobs never completed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    kill_9(&killed);
    let outputs = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        futures::future::join_all(survivors.into_iter().map(|s| s.wait_with_output())),
    )
    .await
    .expect("the survivors end (a dead holder must not be waited for until it is stale)");
    let mut ran = 0;
    for output in outputs {
        let output = output.expect("a survivor");
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let summary = summary_json(&output);
        let line = job_line(&summary, &victim);
        assert_eq!(line["status"], "succeeded", "{summary}");
        ran += line["streams"]["run"].as_u64().unwrap_or(0);
    }
    assert_eq!(ran, 1, "one survivor took the job over");
    assert_exact_and_closed(&db, &jobs, invocation);
    // Page 1 was committed before the kill: the survivor resumed at page 2.
    let per_page = requests_per_page(&server.hits(), &victim);
    let pages: Vec<usize> = (1..=PAGES)
        .map(|page| {
            per_page
                .get(&("whole".to_string(), page))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    // Pages after it may be asked twice: the one held, and those the
    // killed shard fetched ahead of its commits.
    assert_eq!(pages[..2], [1, 2], "{per_page:?}");
    assert!(
        pages[2..].iter().all(|n| (1..=2).contains(n)),
        "{per_page:?}"
    );
    killed.wait().await.expect("reap shard 2");
}
