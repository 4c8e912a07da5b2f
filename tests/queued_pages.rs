//! A stream queues up to three pages behind the one being written (so the
//! writer goes straight on from one commit to the next). When a page fails
//! to commit, the pages queued behind it must not commit either: their
//! checkpoints would claim the failed page's rows were stored, and a resume
//! would skip them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use common::{Project, describe};
use serde_json::{Value, json};

const PAGES: u64 = 6;
const PER_PAGE: u64 = 3;

/// Page `n` of a `next_url` stream: ids `3n+1 ..= 3n+3`. Counts requests.
async fn page(State(requests): State<Arc<AtomicU64>>, Path(n): Path<u64>) -> axum::Json<Value> {
    requests.fetch_add(1, Ordering::SeqCst);
    let data: Vec<Value> = (1..=PER_PAGE)
        .map(|i| json!({"id": n * PER_PAGE + i}))
        .collect();
    let next = (n + 1 < PAGES).then(|| format!("/p/{}", n + 1));
    axum::Json(json!({"data": data, "next": next}))
}

fn run_id_of(project: &Project, id: u64) -> i64 {
    project
        .open()
        .query_row(
            "SELECT _run_id FROM t WHERE _pk = ?1",
            [format!("[{id}]")],
            |r| r.get(0),
        )
        .expect("row")
}

#[tokio::test]
async fn pages_queued_behind_a_failed_commit_are_not_written() {
    let requests = Arc::new(AtomicU64::new(0));
    let base = common::serve(
        Router::new()
            .route("/p/{n}", get(page))
            .with_state(requests.clone()),
    )
    .await;
    let project = Project::new();
    project.job(
        "pages",
        &format!(
            "[request]\nurl = \"{base}/p/0\"\n\n[pagination]\ntype = \"next_url\"\nnext_url_path = \"/next\"\n\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\n[output]\ntable = \"t\"\nmode = \"merge\"\n"
        ),
    );
    let first = project.run(&["run"]).await;
    assert!(first.status.success(), "{}", describe(&first));
    assert_eq!(project.rows("t").len(), 18);
    let first_run = run_id_of(&project, 7);

    // The second run's page 1 (ids 4-6) fails to commit. Pages 2, 3 and 4
    // (ids 7-15) are always queued behind it: the stream waits for page k's
    // answer only once it has handed over page k+3, and the writer runs
    // them in order, so their commands run after page 1's failure.
    project
        .open()
        .execute_batch(
            "CREATE TRIGGER boom BEFORE UPDATE ON t WHEN NEW._pk = '[5]'
             BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .expect("trigger");
    requests.store(0, Ordering::SeqCst);
    let second = project.run(&["run"]).await;
    assert!(!second.status.success(), "{}", describe(&second));
    // A stream fetches while up to three of its pages are with the writer:
    // it waits for page 0 when it hands over page 3, and for page 1 (the
    // failure) when it hands over page 4. So page 5 is never asked
    // for; a stream that did not wait would have fetched it.
    assert_eq!(requests.load(Ordering::SeqCst), 5, "{}", describe(&second));

    let db = project.open();
    let second_run = run_id_of(&project, 1);
    assert_ne!(
        second_run, first_run,
        "page 0 was written by the second run"
    );
    for id in [4, 7, 9, 10, 13, 15, 16] {
        assert_eq!(run_id_of(&project, id), first_run, "id {id}");
    }
    let position: String = db
        .query_row(
            "SELECT position FROM _apisync_checkpoints WHERE job = 'pages'",
            [],
            |r| r.get(0),
        )
        .expect("the checkpoint after page 0");
    let position: Value = serde_json::from_str(&position).expect("JSON");
    assert_eq!(position["pages"], 1, "{position}");
    assert!(
        position["next"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/p/1")),
        "{position}"
    );
}
