//! `[partitions] changed_only = true` end to end (reach.md section 3): a
//! Zendesk-like API with tickets (an incremental parent, merged) and each
//! ticket's comments (the child, one partition per ticket). The server
//! counts the comment requests per ticket, so each test asserts which
//! parents a pass asked for, not only what was stored. Each runs on
//! SQLite and on PostgreSQL (skipped locally without
//! `APISYNC_TEST_POSTGRES`, failing under CI).
//!
//! The parent and the child run as separate `apisync run` processes, one
//! after the other: a pass of the child starts after the parent's run
//! has ended, as a scheduler would run them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use common::databases::{Backend, TestDatabase};
use common::{BEARER, Project, describe, serve};
use serde_json::{Value, json};

#[derive(Default)]
struct Api {
    /// Ticket id -> its version (`updated_at`, an integer cursor).
    tickets: BTreeMap<u64, u64>,
    /// Ticket ids whose comments were asked for, in order.
    asked: Vec<u64>,
    /// Tickets whose comments answer 500.
    failing: BTreeSet<u64>,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<Api>>);

impl Server {
    fn api(&self) -> std::sync::MutexGuard<'_, Api> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ticket `id` changes: its version goes past every other one.
    fn touch(&self, id: u64) {
        let mut api = self.api();
        let next = api.tickets.values().max().copied().unwrap_or(0) + 1;
        api.tickets.insert(id, next);
    }

    /// The tickets whose comments were asked for since the last call, sorted.
    fn take_asked(&self) -> Vec<u64> {
        let mut asked = std::mem::take(&mut self.api().asked);
        asked.sort_unstable();
        asked
    }
}

/// `GET /tickets?since=N`: the tickets changed after version N (what an
/// incremental export answers), so an unchanged ticket is not written again.
async fn tickets(
    State(server): State<Server>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let since: u64 = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let api = server.api();
    let changed: Vec<Value> = api
        .tickets
        .iter()
        .filter(|(_, version)| **version > since)
        .map(
            |(id, version)| json!({ "id": id, "updated_at": version, "subject": format!("t{id}") }),
        )
        .collect();
    Json(json!({ "tickets": changed }))
}

async fn comments(
    State(server): State<Server>,
    Path(ticket): Path<u64>,
) -> Result<Json<Value>, StatusCode> {
    let mut api = server.api();
    api.asked.push(ticket);
    if api.failing.contains(&ticket) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let version = api.tickets.get(&ticket).copied().unwrap_or(0);
    // Comment ids are unique per ticket only: 1 and 2 on every ticket.
    Ok(Json(json!({
        "comments": [
            { "id": 1, "body": format!("first on {ticket}") },
            { "id": 2, "body": format!("reply on {ticket} at v{version}") }
        ]
    })))
}

/// A server with tickets 1..=count, and a project on `backend` with the
/// parent and child jobs; None when the backend is not available here.
async fn setup(backend: Backend, count: u64) -> Option<(Server, Project, TestDatabase)> {
    let server = Server::default();
    for id in 1..=count {
        server.touch(id);
    }
    let app = Router::new()
        .route("/tickets", get(tickets))
        .route("/tickets/{id}/comments", get(comments))
        .with_state(server.clone());
    let base = serve(app).await;
    let project = Project::new();
    let db = TestDatabase::new(backend, project.path())?;
    project.config(&format!("database = \"{}\"\n", db.setting()));
    project.job(
        "tickets",
        &format!(
            r#"{BEARER}
[request]
url = "{base}/tickets"
query = {{ since = "{{mark}}" }}
[records]
path = "/tickets"
primary_key = ["/id"]
[incremental]
cursor_field = "/updated_at"
cursor_type = "integer"
initial = "0"
[output]
mode = "merge"
"#
        ),
    );
    project.job(
        "ticket_comments",
        &format!(
            r#"{BEARER}
depends_on = ["tickets"]
[request]
url = "{base}/tickets/{{partition.id}}/comments"
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
"#
        ),
    );
    Some((server, project, db))
}

/// `apisync run JOB`, which must succeed.
async fn run_ok(project: &Project, job: &str) {
    let out = project.run(&["run", job]).await;
    assert!(out.status.success(), "run {job}: {}", describe(&out));
}

fn comment_rows(db: &TestDatabase) -> u64 {
    db.scalar("SELECT count(*) FROM ticket_comments")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// First pass: every ticket's comments. Two tickets change: the next pass
/// asks for those two only, and `run --dry-run` lists those two. Nothing
/// changes: the next pass asks for none. `reset` forgets the pass: the
/// next one asks for every ticket again.
async fn only_changed_parents_are_fetched(backend: Backend) {
    let Some((server, project, db)) = setup(backend, 6).await else {
        return;
    };
    run_ok(&project, "tickets").await;
    run_ok(&project, "ticket_comments").await;
    assert_eq!(server.take_asked(), [1, 2, 3, 4, 5, 6], "first pass");
    assert_eq!(comment_rows(&db), 12);

    server.touch(2);
    server.touch(5);
    run_ok(&project, "tickets").await;
    let out = project.run(&["run", "--dry-run", "ticket_comments"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("2 stream(s)"), "{shown}");
    assert!(
        shown.contains("/tickets/2/comments") && shown.contains("/tickets/5/comments"),
        "{shown}"
    );
    assert!(!shown.contains("/tickets/1/comments"), "{shown}");
    assert_eq!(
        server.take_asked(),
        Vec::<u64>::new(),
        "a dry run asks nothing"
    );
    run_ok(&project, "ticket_comments").await;
    assert_eq!(server.take_asked(), [2, 5], "second pass");
    assert_eq!(comment_rows(&db), 12, "merged, not added");
    let bodies: Vec<Value> = db
        .rows("ticket_comments")
        .iter()
        .map(|r| r["body"].clone())
        .collect();
    assert!(bodies.contains(&json!("reply on 5 at v8")), "{bodies:?}");

    run_ok(&project, "tickets").await;
    run_ok(&project, "ticket_comments").await;
    assert_eq!(server.take_asked(), Vec::<u64>::new(), "nothing changed");

    let out = project.run(&["reset", "ticket_comments"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    run_ok(&project, "ticket_comments").await;
    assert_eq!(server.take_asked(), [1, 2, 3, 4, 5, 6], "after reset");
}

#[tokio::test]
async fn only_changed_parents_are_fetched_on_sqlite() {
    only_changed_parents_are_fetched(Backend::Sqlite).await;
}

#[tokio::test]
async fn only_changed_parents_are_fetched_on_postgres() {
    only_changed_parents_are_fetched(Backend::Postgres).await;
}

/// A pass that fails (ticket 3's comments answer 500) does not finish, so
/// the start of the last finished pass stays: the rerun asks again for
/// every ticket changed since then that the failed run did not finish (3,
/// and 2, changed in between), and the pass it completes counts from the
/// start of the failed run, where it began: ticket 2, written after that,
/// is asked for once more on the pass after.
async fn a_failed_pass_does_not_move_the_start(backend: Backend) {
    let Some((server, project, db)) = setup(backend, 4).await else {
        return;
    };
    run_ok(&project, "tickets").await;
    run_ok(&project, "ticket_comments").await;
    assert_eq!(server.take_asked(), [1, 2, 3, 4]);

    server.touch(1);
    server.touch(3);
    server.api().failing.insert(3);
    run_ok(&project, "tickets").await;
    let out = project.run(&["run", "ticket_comments"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(server.take_asked(), [1, 3], "the failed pass");
    let open =
        db.scalar("SELECT count(*) FROM _apisync_finished_streams WHERE job = 'ticket_comments'");
    assert_eq!(
        open.as_deref(),
        Some("1"),
        "ticket 1 finished in the open pass"
    );

    server.api().failing.clear();
    server.touch(2);
    run_ok(&project, "tickets").await;
    run_ok(&project, "ticket_comments").await;
    assert_eq!(server.take_asked(), [2, 3], "the pass resumed");

    run_ok(&project, "ticket_comments").await;
    assert_eq!(
        server.take_asked(),
        [2],
        "written after the failed run began the pass"
    );
    run_ok(&project, "ticket_comments").await;
    assert_eq!(server.take_asked(), Vec::<u64>::new());
}

#[tokio::test]
async fn a_failed_pass_does_not_move_the_start_on_sqlite() {
    a_failed_pass_does_not_move_the_start(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_failed_pass_does_not_move_the_start_on_postgres() {
    a_failed_pass_does_not_move_the_start(Backend::Postgres).await;
}
