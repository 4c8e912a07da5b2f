//! Fetch-ahead (issue 7, target 4): offset and page streams whose total is
//! known from a page request the pages after it concurrently, within the
//! request limits, and still write them strictly in order, each with the
//! checkpoint that follows it. Streams without a total ask for one page at
//! a time.
//!
//! The server here proves overlap without timing: a request can be held
//! until another one has arrived (or been answered), so a run that does not
//! fetch ahead cannot finish; a held request that waits too long answers
//! 400, failing the run instead of hanging the test.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use common::{Project, describe, serve};

/// Longest a held request waits for what it waits for.
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// Records per page the jobs ask for.
const LIMIT: usize = 10;

/// What the server does with a request for one page (by index from 0).
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Answer once the request for page `n` of the same path has arrived.
    AfterArrival(usize),
    /// Answer once page `n` of the same path has been answered.
    AfterAnswer(usize),
    /// Answer with this status.
    Status(u16),
    /// Answer the next request with this status, then as usual.
    StatusOnce(u16),
    /// Answer nothing (400 after `HOLD_LIMIT`).
    Hang,
    /// Answer after this long: server latency, so that requests sent
    /// together would overlap.
    Latency(Duration),
}

/// Everything the server saw, published so held requests can wait on it.
#[derive(Debug, Default)]
struct Log {
    /// (path, page index) in arrival order.
    arrived: Vec<(String, usize)>,
    /// (path, page index) in the order their answers were sent.
    answered: Vec<(String, usize)>,
    in_flight: usize,
    most_in_flight: usize,
}

struct Api {
    /// Records that exist: ids 0..records.
    records: usize,
    /// The total the server claims (`/total`, `/total_pages`).
    claimed: usize,
    /// Most records the server puts in a page, whatever the client asks.
    cap: usize,
    rules: Mutex<HashMap<usize, Rule>>,
    log: watch::Sender<Log>,
}

/// A request in the handler; leaving (answered or dropped) takes it out
/// of `in_flight`.
struct InFlight {
    api: Arc<Api>,
    page: (String, usize),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let page = self.page.clone();
        self.api.log.send_modify(|log| {
            log.in_flight -= 1;
            log.answered.push(page);
        });
    }
}

impl Api {
    async fn start(records: usize, claimed: usize, cap: usize) -> (Arc<Api>, String) {
        let api = Arc::new(Api {
            records,
            claimed,
            cap,
            rules: Mutex::new(HashMap::new()),
            log: watch::Sender::new(Log::default()),
        });
        let app = axum::Router::new().fallback(answer).with_state(api.clone());
        (api, serve(app).await)
    }

    fn rule(&self, page: usize, rule: Rule) {
        self.rules.lock().unwrap().insert(page, rule);
    }

    fn clear(&self) {
        self.rules.lock().unwrap().clear();
        self.log.send_replace(Log::default());
    }

    /// Page indexes requested, in arrival order.
    fn arrived(&self) -> Vec<usize> {
        self.log.borrow().arrived.iter().map(|(_, i)| *i).collect()
    }

    fn answered(&self) -> Vec<usize> {
        self.log.borrow().answered.iter().map(|(_, i)| *i).collect()
    }

    fn most_in_flight(&self) -> usize {
        self.log.borrow().most_in_flight
    }

    /// Wait until `ready` holds for the log; false after `HOLD_LIMIT`.
    async fn wait(&self, ready: impl Fn(&Log) -> bool) -> bool {
        let mut log = self.log.subscribe();
        tokio::time::timeout(HOLD_LIMIT, log.wait_for(|log| ready(log)))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }
}

async fn answer(
    State(api): State<Arc<Api>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let number = |name: &str| query.get(name).and_then(|v| v.parse::<usize>().ok());
    let limit = number("limit").or(number("per_page")).unwrap_or(LIMIT);
    let (index, first) = match number("page") {
        Some(page) => (page.saturating_sub(1), page.saturating_sub(1) * limit),
        None => {
            let offset = number("offset").unwrap_or(0);
            (offset / limit, offset)
        }
    };
    let path = uri.path().to_string();
    api.log.send_modify(|log| {
        log.arrived.push((path.clone(), index));
        log.in_flight += 1;
        log.most_in_flight = log.most_in_flight.max(log.in_flight);
    });
    let _in_flight = InFlight {
        api: api.clone(),
        page: (path.clone(), index),
    };
    let rule = {
        let mut rules = api.rules.lock().unwrap();
        let rule = rules.get(&index).copied();
        if let Some(Rule::StatusOnce(_)) = rule {
            rules.remove(&index);
        }
        rule
    };
    let held = |waited: bool, what: String| {
        (!waited).then(|| {
            let message = format!("page {index} of {path} was held for {what} in vain");
            (StatusCode::BAD_REQUEST, message).into_response()
        })
    };
    let refused = match rule {
        None => None,
        Some(Rule::AfterArrival(n)) => held(
            api.wait(|log| log.arrived.iter().any(|(p, i)| p == &path && *i == n))
                .await,
            format!("the request for page {n}"),
        ),
        Some(Rule::AfterAnswer(n)) => held(
            api.wait(|log| log.answered.iter().any(|(p, i)| p == &path && *i == n))
                .await,
            format!("the answer to page {n}"),
        ),
        Some(Rule::Hang) => held(api.wait(|_| false).await, "nothing".into()),
        Some(Rule::Status(status) | Rule::StatusOnce(status)) => {
            let status = StatusCode::from_u16(status).expect("a status code");
            Some((status, "failing on purpose").into_response())
        }
        Some(Rule::Latency(latency)) => {
            tokio::time::sleep(latency).await;
            None
        }
    };
    if let Some(response) = refused {
        return response;
    }
    let end = api.records.min(first + limit.min(api.cap));
    let data: Vec<Value> = (first..end.max(first)).map(record).collect();
    axum::Json(json!({
        "data": data,
        "total": api.claimed,
        "total_pages": api.claimed.div_ceil(LIMIT),
    }))
    .into_response()
}

fn record(id: usize) -> Value {
    json!({"id": id, "v": format!("record {id}")})
}

const OFFSET: &str = "[pagination]\ntype = \"offset\"\nlimit = 10\ntotal_path = \"/total\"\n";
const PAGE: &str = "[pagination]\ntype = \"page\"\nsize_param = \"per_page\"\nsize = 10\ntotal_pages_path = \"/total_pages\"\n";

/// An append-mode job (no primary key: a page written twice would show).
fn job(url: &str, pagination: &str) -> String {
    format!(
        "[request]\nurl = \"{url}\"\n{pagination}[records]\npath = \"/data\"\n[output]\ntable = \"items\"\nmode = \"append\"\n[retry]\nmax_attempts = 2\ninitial_backoff = \"1ms\"\nmax_backoff = \"2ms\"\n"
    )
}

/// A merge-mode job: rows keyed by `/id`, so a page written twice would
/// not show; for starting a stream over, which writes pages again.
fn merge_job(url: &str, pagination: &str) -> String {
    job(url, pagination).replace(
        "[records]\npath = \"/data\"\n[output]\ntable = \"items\"\nmode = \"append\"\n",
        "[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[output]\ntable = \"items\"\nmode = \"merge\"\n",
    )
}

fn project(config: &str, job_text: &str) -> Project {
    let project = Project::new();
    project.config(config).job("items", job_text);
    project
}

/// The ids in the table, in the order the rows were written.
fn ids(project: &Project) -> Vec<usize> {
    project
        .rows("items")
        .iter()
        .map(|row| row["id"].as_u64().expect("an id") as usize)
        .collect()
}

fn checkpoint(project: &Project) -> Value {
    let text: String = project
        .open()
        .query_row(
            "SELECT position FROM _apisync_checkpoints WHERE job = 'items'",
            [],
            |row| row.get(0),
        )
        .expect("a checkpoint");
    serde_json::from_str(&text).expect("checkpoint JSON")
}

fn each_once(pages: &[usize]) -> bool {
    let mut sorted = pages.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() == pages.len()
}

#[tokio::test]
async fn pages_of_one_stream_are_requested_concurrently() {
    let (api, base) = Api::start(100, 100, 100).await;
    // Pages 1 and 4 are each answered only once the other was asked for:
    // a stream that waits for each page before asking for the next never
    // finishes, and the server has both in flight at once.
    api.rule(1, Rule::AfterArrival(4));
    api.rule(4, Rule::AfterArrival(1));
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), OFFSET));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(api.most_in_flight() > 1, "{}", api.most_in_flight());
    let arrived = api.arrived();
    assert!(
        each_once(&arrived),
        "a page asked for twice: {arrived:?}\n{}",
        describe(&output)
    );
    assert!(
        arrived.iter().all(|page| *page < 10),
        "asked past the total: {arrived:?}"
    );
    assert_eq!(ids(&project), (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn pages_answered_out_of_order_are_written_in_order() {
    let (api, base) = Api::start(100, 100, 100).await;
    api.rule(1, Rule::AfterAnswer(7));
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), PAGE));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let answered = api.answered();
    let position = |page: usize| answered.iter().position(|p| *p == page);
    assert!(position(7) < position(1), "{answered:?}");
    assert_eq!(ids(&project), (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failed_page_keeps_the_pages_before_it_and_the_rerun_starts_there() {
    let (api, base) = Api::start(100, 100, 100).await;
    // Page 5 fails (500, then 500 again: past max_attempts) while page 1
    // is still held, so later pages are in flight or waiting when it does.
    api.rule(5, Rule::Status(500));
    api.rule(1, Rule::AfterAnswer(5));
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), OFFSET));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("offset=50"), "{}", describe(&output));
    assert_eq!(ids(&project), (0..50).collect::<Vec<_>>());
    let position = checkpoint(&project);
    assert_eq!(position["next"], json!({"type": "offset", "offset": 50}));
    assert_eq!(position["pages"], 5);
    let fives = api.arrived().iter().filter(|page| **page == 5).count();
    assert_eq!(fives, 2, "page 5 is retried once: {:?}", api.arrived());

    api.clear();
    // The resumed stream reads the total from page 5 and fetches ahead
    // from there: pages 6 and 8 are answered only together.
    api.rule(6, Rule::AfterArrival(8));
    api.rule(8, Rule::AfterArrival(6));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(api.most_in_flight() > 1, "{}", api.most_in_flight());
    let arrived = api.arrived();
    assert_eq!(arrived.first(), Some(&5), "{arrived:?}");
    assert!(
        arrived.iter().all(|page| (5..10).contains(page)),
        "{arrived:?}"
    );
    assert_eq!(ids(&project), (0..100).collect::<Vec<_>>());
}

/// A saved offset the API no longer accepts (a 4xx on the resumed page) is
/// dropped: the stream starts over from its first page, alone, fetches
/// ahead again from there, and ends with every record.
#[tokio::test]
async fn a_rejected_saved_offset_starts_the_stream_over_and_fetches_ahead_again() {
    let (api, base) = Api::start(100, 100, 100).await;
    api.rule(5, Rule::Status(500));
    let project = project(
        "concurrency = 8\n",
        &merge_job(&format!("{base}/items"), OFFSET),
    );
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(
        checkpoint(&project)["next"],
        json!({"type": "offset", "offset": 50})
    );

    api.clear();
    // The resumed request is refused once; after the restart pages 2 and 4
    // are answered only together, so they must be fetched ahead.
    api.rule(5, Rule::StatusOnce(400));
    api.rule(2, Rule::AfterArrival(4));
    api.rule(4, Rule::AfterArrival(2));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rejected the saved position"),
        "{}",
        describe(&output)
    );
    let arrived = api.arrived();
    assert_eq!(arrived[..2], [5, 0], "{arrived:?}");
    assert!(each_once(&arrived[1..]), "{arrived:?}");
    assert!(api.most_in_flight() > 1, "{}", api.most_in_flight());
    let mut stored = ids(&project);
    stored.sort_unstable();
    assert_eq!(stored, (0..100).collect::<Vec<_>>());
}

/// Run 1 fails at page 5 (500 past its retries), leaving pages 0-4
/// written and the checkpoint at offset 50; run 2's resumed request is
/// refused once with a 400.
async fn resume_refused(project: &Project, api: &Api) -> std::process::Output {
    api.rule(5, Rule::Status(500));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    api.clear();
    api.rule(5, Rule::StatusOnce(400));
    project.run(&["run"]).await
}

/// In append mode starting over would append pages 0-4 again: the stream
/// stops instead, keeps its rows and its checkpoint, and says what to do.
#[tokio::test]
async fn a_rejected_saved_offset_in_append_mode_stops_the_stream_instead_of_doubling_rows() {
    let (api, base) = Api::start(100, 100, 100).await;
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), OFFSET));
    let output = resume_refused(&project, &api).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = describe(&output);
    assert!(text.contains("returned 400"), "{text}");
    assert!(text.contains("that was the saved position"), "{text}");
    assert!(text.contains("append mode"), "{text}");
    assert!(text.contains("apisync reset items --keep-marks"), "{text}");
    let refused = project.run(&["reset", "items", "--partition", "eu"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        describe(&refused).contains("the job has no partitions"),
        "{}",
        describe(&refused)
    );
    assert_eq!(api.arrived(), [5], "nothing after the refused request");
    assert_eq!(ids(&project), (0..50).collect::<Vec<_>>());
    assert_eq!(
        checkpoint(&project)["next"],
        json!({"type": "offset", "offset": 50})
    );

    // What the error says to do: delete the rows of the pass (here all of
    // them: the stream never finished), reset keeping the marks, run.
    project
        .open()
        .execute_batch("DELETE FROM items")
        .expect("delete");
    reset_then_every_record_once(&project, &api, &["reset", "items", "--keep-marks"]).await;
}

/// Replace mode without a primary key: the half-built staging table would
/// get pages 0-4 twice. The stream stops; `apisync reset` drops the staging
/// table, and the next run builds the table once.
#[tokio::test]
async fn a_rejected_saved_offset_in_replace_mode_without_a_key_stops_and_reset_recovers() {
    let (api, base) = Api::start(100, 100, 100).await;
    let text =
        job(&format!("{base}/items"), OFFSET).replace("mode = \"append\"", "mode = \"replace\"");
    let project = project("concurrency = 8\n", &text);
    let output = resume_refused(&project, &api).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let shown = describe(&output);
    assert!(
        shown.contains("replace mode without a primary_key"),
        "{shown}"
    );
    assert!(
        shown.contains("drops the half-built staging table"),
        "{shown}"
    );

    // Keeping marks would keep those of partitions whose rows only the
    // dropped staging table held: refused, as is a partition of a job
    // without partitions.
    for flags in [&["--keep-marks"][..], &["--partition", "eu"][..]] {
        let refused = project
            .run(&[&["reset", "items"][..], flags].concat())
            .await;
        assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
        assert!(
            describe(&refused).contains("cannot be used with a replace job"),
            "{}",
            describe(&refused)
        );
    }
    reset_then_every_record_once(&project, &api, &["reset", "items"]).await;
}

/// `reset` (the arguments given) succeeds, and the next run leaves every
/// record in the table once.
async fn reset_then_every_record_once(project: &Project, api: &Api, reset: &[&str]) {
    let output = project.run(reset).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    api.clear();
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(ids(project), (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn fetching_ahead_stays_within_the_host_limit() {
    let (api, base) = Api::start(100, 100, 100).await;
    // Three streams, each fetching ahead two pages (the host's limit),
    // share the host: six requests want out at once, two may go. (Holding
    // a request until another arrives could deadlock here: two held
    // requests would take both slots.)
    for page in 0..10 {
        api.rule(page, Rule::Latency(Duration::from_millis(20)));
    }
    let config = "concurrency = 8\n[hosts.\"127.0.0.1\"]\nconcurrency = 2\n";
    let job_text = format!(
        "{}[partitions]\nvalues = [\"a\", \"b\", \"c\"]\n",
        job(&format!("{base}/{{partition}}/items"), OFFSET)
    );
    let project = project(config, &job_text);
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(api.most_in_flight(), 2);
    assert_eq!(ids(&project).len(), 300);
}

#[tokio::test]
async fn fetching_ahead_stays_within_the_global_concurrency() {
    let (api, base) = Api::start(100, 100, 100).await;
    api.rule(1, Rule::AfterArrival(2));
    api.rule(2, Rule::AfterArrival(1));
    let project = project("concurrency = 2\n", &job(&format!("{base}/items"), OFFSET));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(api.most_in_flight(), 2);
    assert_eq!(ids(&project), (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stream_without_a_total_asks_for_one_page_at_a_time() {
    let (api, base) = Api::start(100, 100, 100).await;
    for page in 0..11 {
        api.rule(page, Rule::Latency(Duration::from_millis(20)));
    }
    let pagination = "[pagination]\ntype = \"offset\"\nlimit = 10\n";
    let project = project(
        "concurrency = 8\n",
        &job(&format!("{base}/items"), pagination),
    );
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(api.most_in_flight(), 1);
    // Without a total, the empty page after the data ends the stream.
    assert_eq!(api.arrived(), (0..11).collect::<Vec<_>>());
    assert_eq!(ids(&project), (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_server_that_caps_its_pages_loses_no_record() {
    // The job asks for 10 per page; the server sends 4. Offsets advance by
    // the records received, so the pages guessed at limit steps are wrong
    // and must be dropped, never written.
    let (api, base) = Api::start(100, 100, 4).await;
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), OFFSET));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(ids(&project), (0..100).collect::<Vec<_>>());
    let arrived = api.arrived();
    assert!(
        arrived.iter().all(|page| *page < 10),
        "asked past the total: {arrived:?}"
    );
}

#[tokio::test]
async fn an_empty_page_before_the_claimed_total_ends_the_stream() {
    // The server claims 100 records but has 50: the empty page at offset
    // 50 ends the stream; the pages fetched ahead after it are dropped.
    let (api, base) = Api::start(50, 100, 100).await;
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), OFFSET));
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(ids(&project), (0..50).collect::<Vec<_>>());
    assert!(
        api.arrived().iter().all(|page| *page < 10),
        "{:?}",
        api.arrived()
    );
    let stream: i64 = project
        .open()
        .query_row("SELECT count(*) FROM _apisync_checkpoints", [], |row| {
            row.get(0)
        })
        .expect("count checkpoints");
    assert_eq!(stream, 0, "a finished stream keeps no cursor");
}

/// Page 3 of 20 never comes while pages after it are answered: what was
/// committed before it stays, and the checkpoint points at it.
async fn stuck_at_page_3() -> (Arc<Api>, String) {
    let (api, base) = Api::start(200, 200, 100).await;
    api.rule(3, Rule::Hang);
    (api, base)
}

fn assert_kept_pages_before_3(project: &Project) {
    assert_eq!(ids(project), (0..30).collect::<Vec<_>>());
    let position = checkpoint(project);
    assert_eq!(position["next"], json!({"type": "offset", "offset": 30}));
}

#[tokio::test]
async fn sigterm_while_pages_are_fetched_ahead_commits_the_pages_before_and_exits_143() {
    let (api, base) = stuck_at_page_3().await;
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), OFFSET));
    let child = project
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn apisync");
    let pid = child.id().expect("a running child");
    // Page 10 is asked for when page 2 leaves the window (8 wide) for
    // the writer: from then on page 2 commits, signal or not.
    let waiting = api
        .wait(|log| {
            let arrived = |n: usize| log.arrived.iter().any(|(_, i)| *i == n);
            arrived(3) && arrived(10)
        })
        .await;
    assert!(
        waiting,
        "pages 3 and 10 were asked for: {:?}",
        api.arrived()
    );
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid}");
    // A bound on shutdown is the property under test (issue 6), not a
    // speed measure: page 3 would hang far longer.
    let output = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("apisync exits within 5 s of SIGTERM")
        .expect("wait for apisync");
    assert_eq!(output.status.code(), Some(143), "{}", describe(&output));
    assert_kept_pages_before_3(&project);

    api.clear();
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        api.arrived().iter().all(|page| *page >= 3),
        "{:?}",
        api.arrived()
    );
    assert_eq!(ids(&project), (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_stall_watchdog_ends_a_stream_waiting_for_a_page_fetched_ahead() {
    let (_api, base) = stuck_at_page_3().await;
    let project = project("concurrency = 8\n", &job(&format!("{base}/items"), OFFSET));
    let output = project.run(&["run", "--stall-timeout", "1s"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("no page completed for 1s"), "{text}");
    assert!(text.contains("offset=30"), "{text}");
    assert_kept_pages_before_3(&project);
}
