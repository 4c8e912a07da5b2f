//! `run --dry-run` sends nothing and changes nothing: no database is
//! created, an existing one is not migrated or touched (its bytes, and the
//! files beside it, stay as they were), and it still shows where each
//! stream would resume.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Project, describe, text};

/// Every file in `dir` with its bytes: what "touches nothing" compares.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read the project folder")
        .filter_map(|entry| {
            let entry = entry.expect("a folder entry");
            let path = entry.path();
            path.is_file().then(|| {
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(&path).expect("read a file"))
            })
        })
        .collect()
}

/// One page of three records, then the end; `since` echoes the mark.
async fn items_api() -> String {
    async fn items() -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({"data": [
            {"id": 1, "v": 10}, {"id": 2, "v": 20}, {"id": 3, "v": 30}
        ]}))
    }
    common::serve(axum::Router::new().route("/items", axum::routing::get(items))).await
}

fn incremental_job(base: &str) -> String {
    format!(
        "{}\n[request]\nurl = \"{base}/items\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
         [incremental]\ncursor_field = \"/v\"\ncursor_type = \"integer\"\nparam = \"since\"\n",
        common::BEARER
    )
}

#[tokio::test]
async fn a_dry_run_creates_no_database() {
    let base = items_api().await;
    let project = Project::new();
    project.job("items", &incremental_job(&base));
    let before = snapshot(project.path());
    let output = project.run(&["run", "--dry-run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output).contains("from the start"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        snapshot(project.path()),
        before,
        "nothing created or changed"
    );
    assert!(!project.database().exists());
}

#[tokio::test]
async fn a_dry_run_reads_the_mark_without_touching_the_database() {
    let base = items_api().await;
    let project = Project::new();
    project.job("items", &incremental_job(&base));
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let before = snapshot(project.path());
    assert!(
        before.keys().any(|name| name.ends_with(".db")),
        "{before:?}"
    );
    let output = project.run(&["run", "--dry-run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output).contains("since=30"),
        "the first request carries the stored mark: {}",
        describe(&output)
    );
    assert_eq!(
        snapshot(project.path()),
        before,
        "no byte and no file changed"
    );
}

#[tokio::test]
async fn a_dry_run_leaves_a_database_of_an_older_version_as_it_is() {
    let base = items_api().await;
    let project = Project::new();
    project.job("items", &incremental_job(&base));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade/v4_sqlite.db");
    std::fs::copy(&fixture, project.database()).expect("copy the schema 4 database");
    let before = snapshot(project.path());
    let output = project.run(&["run", "--dry-run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        snapshot(project.path()),
        before,
        "not migrated, no file beside it"
    );
}
