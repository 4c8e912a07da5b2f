//! Findings of the hostile-job-author review (issue 14, round two), each
//! the promise a finding broke: two jobs never share a table, a dry run
//! creates nothing, an empty partition value never drops a path segment,
//! and a password in a URL never shows.

mod common;

use common::paged::{Api, json};
use common::{BEARER, Project, describe};
use serde_json::Value;

/// Two records on every path.
async fn api() -> Api {
    let records = (1..=2u64)
        .map(|id| serde_json::json!({ "id": id }))
        .collect();
    Api::start(records, |_, data| {
        json(serde_json::json!({ "data": data.to_vec() }))
    })
    .await
}

fn job(base: &str, path: &str, tail: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/{path}"
[records]
path = "/data"
{tail}"#
    )
}

/// Two jobs writing one table (SQLite compares table names
/// case-insensitively): a replace job's swap drops the other job's rows,
/// whose marks say they are synced. validate must refuse it.
#[tokio::test]
async fn two_jobs_writing_one_table_are_refused() {
    let base = "http://127.0.0.1:9";
    let project = Project::new();
    project
        .job(
            "orders",
            &job(
                base,
                "x",
                "primary_key = [\"/id\"]\n[output]\ntable = \"shared\"\n",
            ),
        )
        .job(
            "snapshot",
            &job(
                base,
                "y",
                "[output]\ntable = \"SHARED\"\nmode = \"replace\"\n",
            ),
        );
    let output = project.run(&["validate"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}

/// `run --dry-run` sends nothing and writes nothing: no database file
/// appears in a fresh project.
#[tokio::test]
async fn dry_run_creates_no_database() {
    let api = api().await;
    let project = Project::new();
    project.job("items", &job(&api.base, "items", ""));
    let output = project.run(&["run", "--dry-run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let entries: Vec<String> = std::fs::read_dir(project.path())
        .expect("project dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !entries.iter().any(|name| name.starts_with("apisync.db")),
        "{entries:?}"
    );
    assert!(api.seen().is_empty());
}

/// An empty partition value in the path removes a segment: `/items/{partition}`
/// becomes `/items/`, the collection, whose records land in the partition.
#[tokio::test]
async fn an_empty_value_is_never_a_path_segment() {
    let api = api().await;
    let project = Project::new();
    project.job(
        "items",
        &job(
            &api.base,
            "items/{partition}",
            "[partitions]\nvalues = [\"\"]\n[output]\nmode = \"append\"\n",
        ),
    );
    let _ = project.run(&["run"]).await;
    let paths: Vec<String> = api.seen().iter().map(|s| s.path.clone()).collect();
    assert!(!paths.iter().any(|p| p == "/items/"), "{paths:?}");
}

/// A password in the job URL's userinfo is a credential: it never shows in
/// an error, a log line or the runs table.
#[tokio::test]
async fn a_userinfo_password_never_shows() {
    let project = Project::new();
    project.job(
        "items",
        "[request]\nurl = \"http://user:fake-userinfo-pass@127.0.0.1:9/x\"\n[retry]\nmax_attempts = 1\n",
    );
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "refused by validation: {text}"
    );
    assert!(!text.contains("fake-userinfo-pass"), "{text}");
    if !project.database().exists() {
        return;
    }
    let errors: Vec<Option<String>> = {
        let conn = project.open();
        let mut stmt = conn
            .prepare("SELECT error FROM _apisync_runs")
            .expect("runs table");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let stored: Value = serde_json::json!(errors);
    assert!(
        !stored.to_string().contains("fake-userinfo-pass"),
        "{stored}"
    );
}

/// A merge job whose `primary_key` changed since its rows were written
/// would give every record a new key and write it beside its old row: the
/// run refuses, before it writes anything, and says how to start over.
#[tokio::test]
async fn a_changed_primary_key_is_refused_before_rows_double() {
    let api = api().await;
    let project = Project::new();
    project.job(
        "items",
        &job(&api.base, "items", "primary_key = [\"/id\"]\n"),
    );
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), 2);

    project.job(
        "items",
        &job(&api.base, "items", "primary_key = [\"/id\", \"/id\"]\n"),
    );
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("were written with another primary key"),
        "{text}"
    );
    assert!(text.contains("apisync reset items"), "{text}");
    assert_eq!(project.rows("items").len(), 2, "no record written twice");

    // The key as it was still runs.
    project.job(
        "items",
        &job(&api.base, "items", "primary_key = [\"/id\"]\n"),
    );
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), 2);
}
