//! `apisync status JOB`: a named job's recent runs, newest first, with bars
//! of records and seconds; on SQLite and PostgreSQL (which, under CI, fails
//! rather than skips when its server is missing).

mod common;

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

use common::databases::{Backend, TestDatabase};
use common::{Project, describe, serve};

async fn history_of_a_named_job(backend: Backend) {
    let app = Router::new().route(
        "/items",
        get(|| async { Json(json!([{ "id": 1 }, { "id": 2 }, { "id": 3 }])) }),
    );
    let base = serve(app).await;
    let project = Project::new();
    let Some(database) = TestDatabase::new(backend, project.path()) else {
        return;
    };
    project.config(&format!("database = \"{}\"\n", database.setting()));
    project.job("items", &format!("[request]\nurl = \"{base}/items\"\n"));
    project.job("other", &format!("[request]\nurl = \"{base}/items\"\n"));
    for _ in 0..3 {
        let output = project.run(&["run", "items"]).await;
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }

    let output = project.run(&["status", "items", "--runs", "2"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        out.contains("job \"items\": last 2 run(s), newest first"),
        "{out}"
    );
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("┆ succeeded ┆ 3 "))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    // Equal runs: full bars for records.
    assert!(rows.iter().all(|r| r.contains(&"█".repeat(16))), "{out}");

    let output = project.run(&["status", "other"]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("job \"other\": no runs yet"));

    // Every job at once: the table only.
    let output = project.run(&["status"]).await;
    assert!(!String::from_utf8_lossy(&output.stdout).contains("newest first"));

    let output = project.run(&["status", "items", "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let runs = json[0]["recent_runs"].as_array().expect("recent_runs");
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter()
            .all(|r| r["records"] == 3 && r["status"] == "succeeded")
    );
}

#[tokio::test]
async fn sqlite_history_of_a_named_job() {
    history_of_a_named_job(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_history_of_a_named_job() {
    history_of_a_named_job(Backend::Postgres).await;
}
