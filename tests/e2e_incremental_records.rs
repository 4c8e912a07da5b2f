//! Records that break incremental sync, end to end: a record without the
//! cursor field, or with a value of the wrong type, fails the stream with
//! an error naming the job, the page URL and the record's index (and keeps
//! the mark where it was), unless the job sets `on_missing_cursor = "skip"`,
//! which drops records without the field.

mod common;

use common::paged::{Api, json};
use common::{BEARER, Project, describe};
use serde_json::{Value, json};

/// Page 1: records 1 and 2; page 2: records 3 and 4 (`third` is record 3).
async fn serve(third: Value) -> Api {
    let data = vec![
        json!({ "id": 1, "seq": 10 }),
        json!({ "id": 2, "seq": 20 }),
        third,
        json!({ "id": 4, "seq": 40 }),
    ];
    Api::start(data, |seen, data| {
        let page = seen.number("page").unwrap_or(1);
        let rows: Vec<Value> = data.iter().skip((page - 1) * 2).take(2).cloned().collect();
        json(json!({ "data": rows, "total_pages": 2 }))
    })
    .await
}

fn project(api: &Api, on_missing: &str) -> Project {
    let project = Project::new();
    project.job(
        "items",
        &format!(
            r#"{BEARER}
[request]
url = "{}/items"
[pagination]
type = "page"
total_pages_path = "/total_pages"
[records]
path = "/data"
primary_key = ["/id"]
[incremental]
cursor_field = "/seq"
cursor_type = "integer"
param = "since"
on_missing_cursor = "{on_missing}"
"#,
            api.base
        ),
    );
    project
}

fn ids(project: &Project) -> Vec<u64> {
    let mut ids: Vec<u64> = project
        .rows("items")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

fn marks(project: &Project) -> Vec<String> {
    let db = rusqlite::Connection::open(project.path().join("apisync.db")).expect("db");
    let mut stmt = db
        .prepare("SELECT value FROM _apisync_marks WHERE job = 'items'")
        .expect("marks table");
    stmt.query_map([], |row| row.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_the_cursor_field_fails_naming_job_url_and_index() {
    let api = serve(json!({ "id": 3 })).await;
    let project = project(&api, "error");
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = describe(&output);
    assert!(text.contains("job \"items\""), "{text}");
    assert!(text.contains("/items?page=2"), "{text}");
    assert!(text.contains("record 0"), "{text}");
    assert!(text.contains("/seq"), "{text}");
    // Page 1 stays committed; the failed page is not written and no mark
    // is stored for a stream that did not complete.
    assert_eq!(ids(&project), vec![1, 2]);
    assert!(marks(&project).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_of_the_wrong_type_fails_naming_the_record() {
    let api = serve(json!({ "id": 3, "seq": "thirty" })).await;
    let project = project(&api, "error");
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = describe(&output);
    assert!(text.contains("/items?page=2"), "{text}");
    assert!(text.contains("record 0"), "{text}");
    assert_eq!(ids(&project), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_drops_records_without_the_cursor_field_and_keeps_the_rest() {
    let api = serve(json!({ "id": 3 })).await;
    let project = project(&api, "skip");
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(ids(&project), vec![1, 2, 4]);
    assert_eq!(marks(&project), vec!["40".to_string()]);
}
