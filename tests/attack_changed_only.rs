//! Hostile review of `[partitions] changed_only` and the `_partition`
//! column (reach.md section 3): a hostile server, a hostile job author
//! and kill -9 at chosen points, looking for a changed parent whose
//! children are never fetched, doubled rows, a pass start that moves
//! when it must not, and wrong `_partition` values.
//!
//! One in-process API serves every test: tickets (an incremental export,
//! paged, or the whole list for a `replace` parent) and each ticket's
//! comments (`/comments?ticket=ID`, the child, which records which
//! tickets it was asked for). A request can be held until the test lets
//! it go, so "while a pass runs" and "killed here" are points reached,
//! not sleeps. Tests on both stores skip PostgreSQL locally without
//! `APISYNC_TEST_POSTGRES`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::databases::{Backend, TestDatabase};
use common::{BEARER, Project, describe, serve, text};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A request held until the test releases it (or kills its client).
struct Hold {
    /// `tickets:PAGE`, `all:PAGE` or `comments:TICKET`.
    at: String,
    reached: Option<oneshot::Sender<()>>,
    release: Option<oneshot::Receiver<()>>,
}

#[derive(Default)]
struct Api {
    /// Ticket id (any JSON value) and its version, in the order served.
    tickets: Vec<(Value, u64)>,
    /// The `ticket` of every comments request, in order.
    asked: Vec<String>,
    /// Tickets whose comments answer 500.
    failing: BTreeSet<String>,
    /// A page of `/tickets` or `/all_tickets` that answers 500.
    failing_page: Option<usize>,
    /// Tickets per page (0: all on page 1).
    page_size: usize,
    /// Every ticket answers one comment, id 100 (a key shared by tickets).
    shared_comment: bool,
    hold: Option<Hold>,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<Api>>);

/// The text a ticket id is asked and partitioned by.
fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Server {
    fn api(&self) -> std::sync::MutexGuard<'_, Api> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ticket `id` changes (or appears): its version goes past every other.
    fn touch(&self, id: impl Into<Value>) {
        let id = id.into();
        let mut api = self.api();
        let next = api.tickets.iter().map(|(_, v)| *v).max().unwrap_or(0) + 1;
        match api.tickets.iter_mut().find(|(t, _)| *t == id) {
            Some(ticket) => ticket.1 = next,
            None => api.tickets.push((id, next)),
        }
    }

    fn version(&self, ticket: &str) -> u64 {
        self.api()
            .tickets
            .iter()
            .find(|(id, _)| id_text(id) == ticket)
            .map_or(0, |(_, v)| *v)
    }

    /// The tickets asked for since the last call, sorted (repeats kept).
    fn take_asked(&self) -> Vec<String> {
        let mut asked = std::mem::take(&mut self.api().asked);
        asked.sort_unstable();
        asked
    }

    /// Hold the request named `at`: returns when it arrives, and the
    /// sender that lets it go.
    fn hold(&self, at: &str) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.api().hold = Some(Hold {
            at: at.to_string(),
            reached: Some(reached_tx),
            release: Some(release_rx),
        });
        (reached_rx, release_tx)
    }

    async fn gate(&self, at: &str) {
        let release = {
            let mut api = self.api();
            match api.hold.as_mut() {
                Some(hold) if hold.at == at => {
                    let mut hold = api.hold.take().expect("hold");
                    if let Some(reached) = hold.reached.take() {
                        let _ = reached.send(());
                    }
                    hold.release.take()
                }
                _ => None,
            }
        };
        if let Some(release) = release {
            let _ = release.await;
        }
    }
}

fn page_of(query: &BTreeMap<String, String>) -> usize {
    query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1)
}

/// Page `page` (from 1) of `rows`, `size` a page (0: all on page 1).
fn slice(rows: Vec<Value>, page: usize, size: usize) -> Vec<Value> {
    if size == 0 {
        return if page == 1 { rows } else { Vec::new() };
    }
    rows.into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect()
}

fn ticket_json(id: &Value, version: u64) -> Value {
    json!({ "id": id, "updated_at": version, "subject": format!("t{}", id_text(id)) })
}

/// `GET /tickets?since=N&page=P`: the tickets changed after version N.
async fn tickets_page(
    State(server): State<Server>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let page = page_of(&query);
    server.gate(&format!("tickets:{page}")).await;
    let since: u64 = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let api = server.api();
    if api.failing_page == Some(page) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let changed: Vec<Value> = api
        .tickets
        .iter()
        .filter(|(_, version)| *version > since)
        .map(|(id, version)| ticket_json(id, *version))
        .collect();
    Json(json!({ "tickets": slice(changed, page, api.page_size) })).into_response()
}

/// `GET /all_tickets?page=P`: every ticket (a full export).
async fn all_tickets(
    State(server): State<Server>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let page = page_of(&query);
    server.gate(&format!("all:{page}")).await;
    let api = server.api();
    if api.failing_page == Some(page) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let all: Vec<Value> = api
        .tickets
        .iter()
        .map(|(id, version)| ticket_json(id, *version))
        .collect();
    Json(json!({ "tickets": slice(all, page, api.page_size) })).into_response()
}

/// `GET /comments?ticket=ID`: comments 1 and 2 of the ticket (the body
/// names the ticket's version when answered), or the shared comment 100.
async fn comments(
    State(server): State<Server>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let ticket = query.get("ticket").cloned().unwrap_or_default();
    server.api().asked.push(ticket.clone());
    server.gate(&format!("comments:{ticket}")).await;
    let version = server.version(&ticket);
    let api = server.api();
    if api.failing.contains(&ticket) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = format!("on {ticket} at v{version}");
    let comments = if api.shared_comment {
        json!([{ "id": 100, "body": body, "ticket": ticket }])
    } else {
        json!([
            { "id": 1, "body": format!("first {body}"), "ticket": ticket },
            { "id": 2, "body": format!("reply {body}"), "ticket": ticket }
        ])
    };
    Json(json!({ "comments": comments })).into_response()
}

/// The parent job: an incremental merge of `/tickets`, or (`replace`) the
/// whole list from `/all_tickets` swapped in; page pagination.
fn parent_job(base: &str, replace: bool) -> String {
    let head = format!(
        r#"{BEARER}
[pagination]
type = "page"
[records]
path = "/tickets"
primary_key = ["/id"]
[retry]
max_attempts = 1
"#
    );
    match replace {
        false => format!(
            r#"{head}[request]
url = "{base}/tickets"
query = {{ since = "{{mark}}" }}
[incremental]
cursor_field = "/updated_at"
cursor_type = "integer"
initial = "0"
[output]
mode = "merge"
"#
        ),
        true => format!(
            r#"{head}[request]
url = "{base}/all_tickets"
[output]
mode = "replace"
"#
        ),
    }
}

/// The child job: each changed ticket's comments, keyed per ticket.
fn child_job(base: &str, extra: &str) -> String {
    format!(
        r#"{BEARER}
depends_on = ["tickets"]
[request]
url = "{base}/comments"
query = {{ ticket = "{{partition.id}}" }}
[records]
path = "/comments"
primary_key = ["{{partition.id}}", "/id"]
[partitions]
from_job = "tickets"
fields = {{ id = "/id" }}
changed_only = true
[output]
columns = {{ ticket_id = "{{partition.id}}", body = "/body" }}
[retry]
max_attempts = 1
{extra}"#
    )
}

struct Setup {
    server: Server,
    base: String,
    project: Project,
    db: TestDatabase,
}

/// A server with `tickets` (versions 1..), `page_size` a page, and a
/// project with the parent (`replace` or incremental merge) and the child.
async fn setup(
    backend: Backend,
    tickets: &[Value],
    page_size: usize,
    replace: bool,
) -> Option<Setup> {
    let server = Server::default();
    server.api().page_size = page_size;
    for id in tickets {
        server.touch(id.clone());
    }
    let app = Router::new()
        .route("/tickets", get(tickets_page))
        .route("/all_tickets", get(all_tickets))
        .route("/comments", get(comments))
        .with_state(server.clone());
    let base = serve(app).await;
    let project = Project::new();
    let db = TestDatabase::new(backend, project.path())?;
    project.config(&format!("database = \"{}\"\n", db.setting()));
    project.job("tickets", &parent_job(&base, replace));
    project.job("ticket_comments", &child_job(&base, ""));
    Some(Setup {
        server,
        base,
        project,
        db,
    })
}

fn ids(range: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    range.map(Value::from).collect()
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn run_ok(project: &Project, args: &[&str]) {
    let out = project.run(args).await;
    assert!(out.status.success(), "{args:?}: {}", describe(&out));
}

/// Every comment body by (ticket, comment id).
fn bodies(db: &TestDatabase) -> BTreeMap<(String, String), String> {
    db.query("SELECT ticket_id, _data FROM ticket_comments")
        .into_iter()
        .map(|row| {
            let data: Value = serde_json::from_str(row[1].as_deref().unwrap()).unwrap();
            (
                (column_text(row[0].as_deref()), data["id"].to_string()),
                data["body"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A declared column's value as text: SQLite's text as is, PostgreSQL's
/// jsonb string unquoted.
fn column_text(value: Option<&str>) -> String {
    let value = value.expect("a value");
    match serde_json::from_str::<Value>(value) {
        Ok(Value::String(text)) => text,
        _ => value.to_string(),
    }
}

/// The store holds, for every ticket, its two comments as answered at
/// the ticket's current version: no changed parent was left unfetched.
fn assert_current(s: &Setup, what: &str) {
    let got = bodies(&s.db);
    let tickets: Vec<(Value, u64)> = s.server.api().tickets.clone();
    for (id, version) in tickets {
        let t = id_text(&id);
        assert_eq!(
            got.get(&(t.clone(), "2".to_string())).map(String::as_str),
            Some(format!("reply on {t} at v{version}").as_str()),
            "{what}: ticket {t}'s comments are not those of its version {version}: {got:?}"
        );
    }
    assert_eq!(
        got.len(),
        2 * s.server.api().tickets.len(),
        "{what}: {got:?}"
    );
}

/// Spawn `apisync ARGS`, wait until the held request arrives, kill -9.
async fn kill_at(project: &Project, args: &[&str], reached: oneshot::Receiver<()>) {
    let mut child = project.command(args).spawn().expect("spawn apisync");
    tokio::select! {
        r = reached => r.expect("the hold was dropped"),
        status = child.wait() => panic!("{args:?} ended before the held request: {status:?}"),
    }
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;
}

macro_rules! both_stores {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                $(#[$meta])*
                #[tokio::test]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }
                $(#[$meta])*
                #[tokio::test]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }
            }
        )*
    };
}

both_stores!(
    a_replace_parent_resumed_across_runs_has_every_row_counted,
    parent_and_child_in_one_run_fetch_each_change,
    a_parent_written_while_the_child_pass_runs_is_fetched_next_pass,
    a_killed_child_pass_resumes_and_loses_no_parent,
    a_parent_killed_mid_run_loses_no_child,
    full_refresh_and_resets_move_the_start_as_documented,
    a_row_moving_between_partitions_takes_the_last_writers_partition,
    hostile_partition_values_round_trip_into_partition,
    an_old_table_gains_partition_in_replace_and_merge_mode,
    two_children_of_one_parent_keep_their_own_passes,
);

/// A replace parent rewrites every row on each pass ("every row counts as
/// written"). Its pass over two pages fails on page 2; a child pass runs
/// (the live table is still the old one); the parent's next run resumes
/// at page 2 and swaps in a table whose page-1 rows were written by the
/// failed run, before the child's pass started. The next child pass must
/// still fetch them: ticket 3 is new and its comments were never fetched.
async fn a_replace_parent_resumed_across_runs_has_every_row_counted(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=2), 2, true).await else {
        return;
    };
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "2"]), "first pass");

    // Served in this order: page 1 = [3, 1], page 2 = [2, 4].
    {
        let mut api = s.server.api();
        api.tickets.insert(0, (json!(3), 10));
        api.tickets.push((json!(4), 11));
        api.failing_page = Some(2);
    }
    let out = s.project.run(&["run", "tickets"]).await;
    assert!(!out.status.success(), "page 2 fails: {}", describe(&out));
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    s.server.take_asked();

    s.server.api().failing_page = None;
    run_ok(&s.project, &["run", "tickets"]).await;
    let live = s.db.scalar("SELECT count(*) FROM tickets");
    assert_eq!(live.as_deref(), Some("4"), "the swapped-in table");
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    let asked = s.server.take_asked();
    assert!(
        asked.contains(&"3".to_string()),
        "ticket 3, new in the swapped-in table, was never asked for: {asked:?}"
    );
    assert_current(&s, "after the swap");
}

/// `apisync run` (both jobs, the child after its parent) again and again:
/// each pass asks for the changed tickets once.
async fn parent_and_child_in_one_run_fetch_each_change(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=5), 2, false).await else {
        return;
    };
    run_ok(&s.project, &["run"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "2", "3", "4", "5"]));
    s.server.touch(2);
    s.server.touch(5);
    s.server.touch(6);
    run_ok(&s.project, &["run"]).await;
    assert_eq!(s.server.take_asked(), strs(&["2", "5", "6"]));
    run_ok(&s.project, &["run"]).await;
    assert_eq!(s.server.take_asked(), Vec::<String>::new());
    assert_current(&s, "one run");
}

/// The child's pass is held at ticket 1's comments while the parent runs
/// to completion with tickets 1 and 4 changed (written after the pass
/// began): the next pass asks for both again, and the store ends current.
async fn a_parent_written_while_the_child_pass_runs_is_fetched_next_pass(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=4), 0, false).await else {
        return;
    };
    run_ok(&s.project, &["run", "tickets"]).await;
    s.server.api().hold = None;
    let (reached, release) = s.server.hold("comments:1");
    let child = s.project.command(&["run", "ticket_comments"]).spawn();
    let mut child = child.expect("spawn");
    reached.await.expect("held");
    s.server.touch(1);
    s.server.touch(4);
    run_ok(&s.project, &["run", "tickets"]).await;
    let _ = release.send(());
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "the held child pass");
    s.server.take_asked();
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "4"]), "written mid-pass");
    assert_current(&s, "after the next pass");
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), Vec::<String>::new());
}

/// The child is killed (-9) while asking for ticket 3's comments in a
/// pass over four changed tickets; ticket 1 changes again before the
/// rerun. The rerun finishes the pass; the pass after asks for ticket 1;
/// the store ends current and nothing is doubled.
async fn a_killed_child_pass_resumes_and_loses_no_parent(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=4), 0, false).await else {
        return;
    };
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    s.server.take_asked();
    for id in 1..=4u64 {
        s.server.touch(id);
    }
    run_ok(&s.project, &["run", "tickets"]).await;
    let (reached, _release) = s.server.hold("comments:3");
    kill_at(&s.project, &["run", "ticket_comments"], reached).await;
    let killed: BTreeSet<String> = s.server.take_asked().into_iter().collect();
    s.server.touch(1);
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    let rerun: BTreeSet<String> = s.server.take_asked().into_iter().collect();
    assert!(rerun.contains("3"), "the killed partition: {rerun:?}");
    let union: BTreeSet<String> = killed.union(&rerun).cloned().collect();
    assert_eq!(union, strs(&["1", "2", "3", "4"]).into_iter().collect());
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    let next = s.server.take_asked();
    if !rerun.contains("1") {
        assert_eq!(next, strs(&["1"]), "ticket 1, changed after the kill");
    }
    assert_current(&s, "after the kill");
}

/// The parent is killed (-9) while its page 2 is asked for (page 1, with
/// tickets 1 and 2 changed, committed); the child runs, the parent's rerun
/// writes the rest, the child runs again: every ticket current.
async fn a_parent_killed_mid_run_loses_no_child(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=4), 2, false).await else {
        return;
    };
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    s.server.take_asked();
    for id in 1..=4u64 {
        s.server.touch(id);
    }
    let (reached, _release) = s.server.hold("tickets:2");
    kill_at(&s.project, &["run", "tickets"], reached).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    let asked: BTreeSet<String> = s.server.take_asked().into_iter().collect();
    assert_eq!(asked, strs(&["1", "2", "3", "4"]).into_iter().collect());
    assert_current(&s, "after the parent's kill");
}

/// `--full-refresh` asks for every ticket and starts a pass the next one
/// counts from; `reset --keep-marks` keeps the start; `reset --partition`
/// leaves it (that ticket waits for its parent's next write); `reset`
/// forgets it. A pass failing for one ticket asks again for it only.
async fn full_refresh_and_resets_move_the_start_as_documented(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=3), 0, false).await else {
        return;
    };
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "2", "3"]));

    run_ok(&s.project, &["run", "--full-refresh", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "2", "3"]), "full");
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), Vec::<String>::new(), "after full");

    s.server.touch(2);
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["reset", "--keep-marks", "ticket_comments"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["2"]), "--keep-marks");

    let key = r#"{"id":"3"}"#;
    run_ok(
        &s.project,
        &["reset", "ticket_comments", "--partition", key],
    )
    .await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), Vec::<String>::new(), "--partition");

    s.server.touch(1);
    s.server.touch(3);
    s.server.api().failing.insert("3".into());
    run_ok(&s.project, &["run", "tickets"]).await;
    let out = s.project.run(&["run", "ticket_comments"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(s.server.take_asked(), strs(&["1", "3"]));
    s.server.api().failing.clear();
    run_ok(&s.project, &["run", "--full-refresh", "ticket_comments"]).await;
    let full = s.server.take_asked();
    assert!(full.contains(&"3".to_string()), "{full:?}");
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    let after = s.server.take_asked();
    assert!(
        after.is_empty() || after == strs(&["1", "3"]),
        "after a full refresh that finished the failed pass: {after:?}"
    );
    assert_current(&s, "after the resets");

    run_ok(&s.project, &["reset", "ticket_comments"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "2", "3"]), "reset");
}

/// The child keyed by the comment id only: comment 100 is answered under
/// every ticket, so its one row moves between partitions; `_partition`
/// names the ticket whose answer the row holds, every time.
async fn a_row_moving_between_partitions_takes_the_last_writers_partition(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=2), 0, false).await else {
        return;
    };
    s.server.api().shared_comment = true;
    let job = child_job(&s.base, "").replace(
        r#"primary_key = ["{partition.id}", "/id"]"#,
        r#"primary_key = ["/id"]"#,
    );
    s.project.job("ticket_comments", &job);
    let check = |what: &str| {
        let rows =
            s.db.query("SELECT _partition, _data, ticket_id FROM ticket_comments");
        assert_eq!(rows.len(), 1, "{what}: {rows:?}");
        let partition: Value = serde_json::from_str(rows[0][0].as_deref().unwrap()).unwrap();
        let data: Value = serde_json::from_str(rows[0][1].as_deref().unwrap()).unwrap();
        assert_eq!(partition, json!({ "id": data["ticket"] }), "{what}");
        assert_eq!(
            Some(column_text(rows[0][2].as_deref())),
            data["ticket"].as_str().map(str::to_string)
        );
        data["ticket"].as_str().unwrap().to_string()
    };
    run_ok(&s.project, &["run"]).await;
    check("first pass");
    s.server.touch(2);
    run_ok(&s.project, &["run"]).await;
    assert_eq!(check("ticket 2 changed"), "2");
    s.server.touch(1);
    run_ok(&s.project, &["run"]).await;
    assert_eq!(check("ticket 1 changed"), "1");
}

/// Parent ids a hostile server may send: quotes, backslashes, control
/// characters, non-ASCII, 5000 characters, a number and the same number
/// as a string (one partition). Each is asked for as its text, and every
/// child row's `_partition` is `{"id": text}`, read back as JSON on both
/// stores; `_partition = '{"id":"1"}'` finds ticket 1's rows on both.
async fn hostile_partition_values_round_trip_into_partition(backend: Backend) {
    let long = "x".repeat(5000);
    let weird = vec![
        json!(1),
        json!("a\"b"),
        json!("back\\slash"),
        json!("ctl\u{1}\t\n\u{7f}"),
        json!("ünï 😀 \u{2028}"),
        json!(long),
        json!(42),
        json!("42"),
        json!("{\"id\":\"1\"}"),
    ];
    let Some(s) = setup(backend, &weird, 0, false).await else {
        return;
    };
    run_ok(&s.project, &["run"]).await;
    let texts: BTreeSet<String> = weird.iter().map(id_text).collect();
    let asked: BTreeSet<String> = s.server.take_asked().into_iter().collect();
    assert_eq!(asked, texts, "each id asked once as its text");
    let rows =
        s.db.query("SELECT _partition, ticket_id, _data FROM ticket_comments");
    assert_eq!(rows.len(), 2 * texts.len(), "{rows:?}");
    for row in &rows {
        let partition: Value = serde_json::from_str(row[0].as_deref().unwrap()).unwrap();
        let data: Value = serde_json::from_str(row[2].as_deref().unwrap()).unwrap();
        assert_eq!(partition, json!({ "id": data["ticket"] }), "{row:?}");
        assert_eq!(
            Some(column_text(row[1].as_deref())),
            data["ticket"].as_str().map(str::to_string),
            "{row:?}"
        );
    }
    let one =
        s.db.scalar(r#"SELECT count(*) FROM ticket_comments WHERE _partition = '{"id":"1"}'"#);
    assert_eq!(one.as_deref(), Some("2"));
}

/// A job's table made before it had `[partitions]` (merge, then replace):
/// the run that adds them gives the table `_partition`, new rows hold
/// their partition and, in merge mode, the older rows NULL.
async fn an_old_table_gains_partition_in_replace_and_merge_mode(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=2), 0, false).await else {
        return;
    };
    let plain = |mode: &str, ticket: &str, partitions: &str| {
        format!(
            r#"{BEARER}
[request]
url = "{}/comments"
query = {{ ticket = "{ticket}" }}
[records]
path = "/comments"
primary_key = ["/ticket", "/id"]
{partitions}
[output]
mode = "{mode}"
"#,
            s.base
        )
    };
    for mode in ["merge", "replace"] {
        let table = format!("old_{mode}");
        s.project.job(&table, &plain(mode, "", ""));
        run_ok(&s.project, &["run", &table]).await;
        s.project.job(
            &table,
            &plain(
                mode,
                "{partition}",
                "[partitions]\nvalues = [\"eu\", \"us\"]",
            ),
        );
        run_ok(&s.project, &["run", &table]).await;
        let rows =
            s.db.query(&format!("SELECT _partition, _data FROM {table}"));
        let expect = if mode == "merge" { 6 } else { 4 };
        assert_eq!(rows.len(), expect, "{mode}: {rows:?}");
        for row in &rows {
            let data: Value = serde_json::from_str(row[1].as_deref().unwrap()).unwrap();
            match data["ticket"].as_str().unwrap() {
                "" => assert_eq!(row[0], None, "{mode}: an older row: {row:?}"),
                region => {
                    let partition: Value =
                        serde_json::from_str(row[0].as_deref().expect("set")).unwrap();
                    assert_eq!(partition, json!({ "partition": region }), "{mode}");
                }
            }
        }
    }
}

/// Two children of one parent: each counts from its own last pass.
async fn two_children_of_one_parent_keep_their_own_passes(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=3), 0, false).await else {
        return;
    };
    s.project.job("other_comments", &child_job(&s.base, ""));
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "2", "3"]));
    s.server.touch(2);
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["2"]));
    run_ok(&s.project, &["run", "other_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["1", "2", "3"]), "its first");
    s.server.touch(3);
    run_ok(&s.project, &["run", "tickets"]).await;
    run_ok(&s.project, &["run", "other_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["3"]));
    run_ok(&s.project, &["run", "ticket_comments"]).await;
    assert_eq!(s.server.take_asked(), strs(&["3"]));
}

/// A parent id with a NUL character (SQLite only: PostgreSQL's jsonb
/// refuses `\u0000`): asked for and partitioned by the whole text, not
/// cut at the NUL.
#[tokio::test]
async fn a_nul_in_a_parent_value_is_kept_whole_on_sqlite() {
    let Some(s) = setup(Backend::Sqlite, &[json!("nul\u{0}end")], 0, false).await else {
        return;
    };
    let out = s.project.run(&["run"]).await;
    let asked = s.server.take_asked();
    if !out.status.success() {
        // Refusing the value is fine, if the message says why.
        assert!(
            text(&out).to_lowercase().contains("nul"),
            "{}",
            describe(&out)
        );
        return;
    }
    assert_eq!(asked, ["nul\u{0}end".to_string()], "{}", describe(&out));
    let rows = s.db.query("SELECT _partition FROM ticket_comments");
    for row in rows {
        let partition: Value = serde_json::from_str(row[0].as_deref().unwrap()).unwrap();
        assert_eq!(partition, json!({ "id": "nul\u{0}end" }));
    }
}

/// A job author who declares a column named `_partition` is refused
/// with a message naming it, partitioned or not.
#[tokio::test]
async fn a_user_column_named_partition_is_refused() {
    let Some(s) = setup(Backend::Sqlite, &ids(1..=1), 0, false).await else {
        return;
    };
    let job = child_job(&s.base, "").replace(
        r#"columns = { ticket_id = "{partition.id}", body = "/body" }"#,
        r#"columns = { _partition = "{partition.id}" }"#,
    );
    s.project.job("ticket_comments", &job);
    let out = s.project.run(&["validate"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(text(&out).contains("_partition"), "{}", describe(&out));
}

/// `backfill` of a `changed_only` child is refused, saying why.
#[tokio::test]
async fn a_backfill_of_a_changed_only_child_is_refused_clearly() {
    let Some(s) = setup(Backend::Sqlite, &ids(1..=1), 0, false).await else {
        return;
    };
    run_ok(&s.project, &["run", "tickets"]).await;
    let out = s
        .project
        .run(&[
            "backfill",
            "ticket_comments",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "--step",
            "1d",
        ])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out).contains("come from another job"),
        "{}",
        describe(&out)
    );
    assert_eq!(s.server.take_asked(), Vec::<String>::new());
}

/// `changed_only` with `values`, `dates` or `mode = "replace"` is refused
/// by `validate`, naming `changed_only`.
#[tokio::test]
async fn changed_only_where_it_cannot_work_is_refused() {
    let Some(s) = setup(Backend::Sqlite, &ids(1..=1), 0, false).await else {
        return;
    };
    let replace = child_job(&s.base, "").replace("[output]\n", "[output]\nmode = \"replace\"\n");
    let values = child_job(&s.base, "").replace(
        "from_job = \"tickets\"\nfields = { id = \"/id\" }",
        "values = [\"1\"]",
    );
    for job in [replace, values] {
        s.project.job("ticket_comments", &job);
        let out = s.project.run(&["validate"]).await;
        assert!(!out.status.success(), "{job}\n{}", describe(&out));
        assert!(text(&out).contains("changed_only"), "{}", describe(&out));
    }
}

/// Two shards of one invocation, twice: the first invocation asks for
/// every ticket once, the second (two tickets changed) for those two only.
async fn sharded_changed_only(backend: Backend) {
    let Some(s) = setup(backend, &ids(1..=8), 0, false).await else {
        return;
    };
    for (invocation, want) in [
        ("inv-1", strs(&["1", "2", "3", "4", "5", "6", "7", "8"])),
        ("inv-2", strs(&["3", "6"])),
        ("inv-3", Vec::new()),
    ] {
        if invocation == "inv-2" {
            s.server.touch(3);
            s.server.touch(6);
        }
        let mut shards = Vec::new();
        for index in 0..2 {
            let shard = format!("{index}/2");
            let args = ["run", "--shard", &shard, "--invocation", invocation];
            shards.push(s.project.command(&args).output());
        }
        for out in futures::future::join_all(shards).await {
            let out = out.expect("shard");
            assert!(out.status.success(), "{invocation}: {}", describe(&out));
        }
        let asked = s.server.take_asked();
        if invocation == "inv-3" {
            // A shard's child pass may begin while the other shard's
            // parent run is still open: the start then moves back to that
            // run's start (a write still under way), and the last
            // invocation's changes may be asked for once more. Never
            // anything else, never fewer.
            assert!(
                asked.is_empty() || asked == strs(&["3", "6"]),
                "{invocation}: {asked:?}"
            );
        } else {
            assert_eq!(asked, want, "{invocation}");
        }
    }
    assert_current(&s, "sharded");
}

both_stores!(sharded_changed_only);

/// A merge job whose `[partitions]` are removed: its rows are then
/// written by the one unpartitioned stream, so a row it rewrites no
/// longer names the partition that wrote it before ("a merge row takes
/// the object of the stream that wrote it last": none).
#[tokio::test]
#[ignore = "finding: a merge row rewritten after [partitions] is removed keeps its old _partition (the upsert no longer sets the column)"]
async fn a_row_rewritten_after_partitions_are_removed_loses_its_old_partition() {
    let Some(s) = setup(Backend::Sqlite, &ids(1..=1), 0, false).await else {
        return;
    };
    let job = |ticket: &str, partitions: &str| {
        format!(
            r#"{BEARER}
[request]
url = "{}/comments"
query = {{ ticket = "{ticket}" }}
[records]
path = "/comments"
primary_key = ["/id"]
{partitions}
[output]
mode = "merge"
"#,
            s.base
        )
    };
    s.project.job(
        "regional",
        &job("{partition}", "[partitions]\nvalues = [\"eu\"]"),
    );
    run_ok(&s.project, &["run", "regional"]).await;
    s.project.job("regional", &job("global", ""));
    run_ok(&s.project, &["run", "regional"]).await;
    let rows = s.db.query("SELECT _partition, _data FROM regional");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        let data: Value = serde_json::from_str(row[1].as_deref().unwrap()).unwrap();
        assert_eq!(data["ticket"], "global", "{row:?}");
        assert_eq!(row[0], None, "written last by no partition: {row:?}");
    }
}

/// Parent ids past what a 64-bit float holds exactly (a u64, and a long
/// decimal): each child is asked for the parent's own digits, and its
/// `_partition` holds them, on both stores.
async fn a_big_numeric_parent_id_is_asked_for_by_its_own_digits(backend: Backend) {
    let big = json!(12_345_678_901_234_567_890_u64);
    let Some(s) = setup(
        backend,
        &[big.clone(), json!(9_007_199_254_740_993_u64)],
        0,
        false,
    )
    .await
    else {
        return;
    };
    let out = s.project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let asked: BTreeSet<String> = s.server.take_asked().into_iter().collect();
    let want: BTreeSet<String> = ["12345678901234567890", "9007199254740993"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(asked, want, "the ids as the parent sent them");
    assert_current(&s, "big ids");
}

#[tokio::test]
async fn a_big_numeric_parent_id_is_asked_for_by_its_own_digits_on_sqlite() {
    a_big_numeric_parent_id_is_asked_for_by_its_own_digits(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_big_numeric_parent_id_is_asked_for_by_its_own_digits_on_postgres() {
    a_big_numeric_parent_id_is_asked_for_by_its_own_digits(Backend::Postgres).await;
}
