//! User tables never meet apisync's own: a job named `runs`, or writing
//! `table = "Marks"` (SQLite compares names case-insensitively), in replace
//! mode used to drop apisync's table of that name at the swap, losing every
//! mark and breaking `status`. apisync's tables are `_apisync_*` now, and
//! plan refuses user tables in that namespace.

mod common;

use common::paged::{Api, json};
use common::{BEARER, Project, describe};
use serde_json::Value;

/// Three records on every path; `since=N` keeps those with `v >= N`.
async fn api() -> Api {
    let records = (1..=3u64)
        .map(|id| serde_json::json!({ "id": id, "v": id * 10 }))
        .collect();
    Api::start(records, |seen, data| {
        let since = seen.number("since").unwrap_or(0) as u64;
        let page: Vec<Value> = data
            .iter()
            .filter(|r| r["v"].as_u64().is_some_and(|v| v >= since))
            .cloned()
            .collect();
        json(serde_json::json!({ "data": page }))
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
primary_key = ["/id"]
{tail}"#
    )
}

async fn run_ok(project: &Project, args: &[&str]) -> String {
    let output = project.run(args).await;
    assert!(output.status.success(), "{args:?}: {}", describe(&output));
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn ids(project: &Project, table: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = project
        .rows(table)
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn replace_jobs_named_like_apisync_tables_leave_its_state_alone() {
    let api = api().await;
    let project = Project::new();
    project
        .job(
            "runs",
            &job(&api.base, "runs", "[output]\nmode = \"replace\"\n"),
        )
        .job(
            "upper_marks",
            &job(
                &api.base,
                "marks",
                "[output]\ntable = \"Marks\"\nmode = \"replace\"\n",
            ),
        )
        .job(
            "items",
            &job(
                &api.base,
                "items",
                "[incremental]\ncursor_field = \"/v\"\ncursor_type = \"integer\"\nparam = \"since\"\n",
            ),
        );

    for _ in 0..2 {
        run_ok(&project, &["run"]).await;
    }

    // The user's tables hold the user's rows, once each.
    assert_eq!(ids(&project, "runs"), [1, 2, 3]);
    assert_eq!(ids(&project, "Marks"), [1, 2, 3]);
    assert_eq!(ids(&project, "items"), [1, 2, 3]);
    // The mark of the first run was kept and used by the second.
    let asked: Vec<Option<String>> = api
        .seen()
        .iter()
        .filter(|s| s.path == "/items")
        .map(|s| s.param("since").map(str::to_string))
        .collect();
    assert_eq!(asked, [None, Some("30".to_string())]);
    // apisync's history and marks are intact, and `status` reads them.
    let text = run_ok(&project, &["status", "--json"]).await;
    let jobs: Value = serde_json::from_str(&text).expect("status --json is JSON");
    let jobs = jobs.as_array().expect("an array of jobs");
    for name in ["runs", "upper_marks", "items"] {
        let job = jobs
            .iter()
            .find(|j| j["job"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {text}"));
        assert_eq!(job["last_run"]["status"], "succeeded", "{job}");
        assert_eq!(job["rows"], 3, "{job}");
    }
    let items = jobs.iter().find(|j| j["job"] == "items").expect("items");
    assert_eq!(items["marks"][""], 30, "{items}");
}

#[tokio::test]
async fn tables_in_apisyncs_or_sqlites_namespace_are_refused_with_their_place() {
    let project = Project::new();
    let base = "http://127.0.0.1:9";
    project
        .job(
            "explicit",
            &job(base, "x", "[output]\ntable = \"_APISYNC_marks\"\n"),
        )
        .job(
            "internal",
            &job(base, "x", "[output]\ntable = \"Sqlite_stat1\"\n"),
        )
        .job("_apisync_runs", &job(base, "x", ""))
        .job(
            "column",
            &job(base, "x", "[output]\ncolumns = { _apisync_x = \"/id\" }\n"),
        );
    let output = project.run(&["validate"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for needle in [
        "explicit.toml:8:9: job \"explicit\": table name \"_APISYNC_marks\" starts with `_apisync_`, which is reserved (hint: ",
        "internal.toml:8:9: job \"internal\": table name \"Sqlite_stat1\" starts with `sqlite_`, which is reserved (hint: ",
        "_apisync_runs.toml: job \"_apisync_runs\": table name \"_apisync_runs\" starts with `_apisync_`, which is reserved (hint: ",
        "the table is named after the job unless [output] sets `table`",
        "column.toml:8:13: job \"column\": column name \"_apisync_x\" starts with `_`, which is reserved",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}
