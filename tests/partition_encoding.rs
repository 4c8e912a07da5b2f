//! Partition values never change the structure of the URL they go into:
//! hostile values from `values = [...]` and from a parent table each arrive
//! as exactly one path segment (and one query value) whose decoded text is
//! the value; unknown placeholders are refused by validation with their
//! place in the file.

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::routing::get;
use common::{Project, describe};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

const HOSTILE: &[&str] = &[
    "a#", "../x", "../../x", "b?c=1", "d e/f", "%2F", "ü/ß", "x&y=1",
];

/// Raw request targets (path and query as sent) the server saw.
type Seen = Arc<Mutex<Vec<String>>>;

async fn parents() -> Json<Value> {
    let data: Vec<Value> = HOSTILE.iter().map(|v| json!({ "id": v })).collect();
    Json(json!({ "data": data }))
}

async fn record(State(seen): State<Seen>, request: Request) -> Json<Value> {
    let target = request.uri().to_string();
    seen.lock().unwrap().push(target);
    Json(json!({ "data": [{ "id": 1 }] }))
}

async fn api() -> (String, Seen) {
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/parents", get(parents))
        .fallback(record)
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn child_job(base: &str, partitions: &str) -> String {
    format!(
        "[request]\nurl = \"{base}/child/{{partition}}/orders?q={{partition}}\"\n\
         query = {{ p = \"{{partition}}\" }}\n\
         [partitions]\n{partitions}\n[records]\npath = \"/data\"\n[output]\nmode = \"append\"\n"
    )
}

/// Each hostile value was requested as `/child/<one segment>/orders` whose
/// decoded segment, `q` and `p` are the value.
fn assert_one_segment_each(seen: &Seen, prefix: &str) {
    let seen = seen.lock().unwrap().clone();
    let mut decoded = Vec::new();
    for target in seen.iter().filter(|t| t.starts_with(prefix)) {
        let (path, query) = target.split_once('?').expect("a query");
        let segment = path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("/orders"))
            .unwrap_or_else(|| panic!("{target} is not {prefix}<segment>/orders"));
        assert!(!segment.contains('/'), "{target}: more than one segment");
        let value = percent_decode_str(segment)
            .decode_utf8()
            .unwrap()
            .to_string();
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            params,
            [
                ("q".to_string(), value.clone()),
                ("p".to_string(), value.clone())
            ],
            "{target}"
        );
        decoded.push(value);
    }
    decoded.sort();
    let mut expected: Vec<String> = HOSTILE.iter().map(|v| v.to_string()).collect();
    expected.sort();
    assert_eq!(decoded, expected, "requests seen: {seen:#?}");
}

#[tokio::test]
async fn hostile_values_are_one_path_segment_each() {
    let (base, seen) = api().await;
    let project = Project::new();
    let values = HOSTILE
        .iter()
        .map(|v| format!("{:?}", v))
        .collect::<Vec<_>>()
        .join(", ");
    project.job("child", &child_job(&base, &format!("values = [{values}]")));
    let output = project.run(&["run", "child"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_one_segment_each(&seen, "/child/");
}

#[tokio::test]
async fn hostile_values_from_a_parent_table_are_one_path_segment_each() {
    let (base, seen) = api().await;
    let project = Project::new();
    project.job(
        "parents",
        &format!("[request]\nurl = \"{base}/parents\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n"),
    );
    let child = format!(
        "depends_on = [\"parents\"]\n{}",
        child_job(&base, "from_job = \"parents\"\nfield = \"/id\"")
    );
    project.job("child", &child);
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_one_segment_each(&seen, "/child/");
}

#[tokio::test]
async fn hostile_values_of_parent_fields_are_one_path_segment_each() {
    let (base, seen) = api().await;
    let project = Project::new();
    project.job(
        "parents",
        &format!("[request]\nurl = \"{base}/parents\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n"),
    );
    let child = format!(
        "depends_on = [\"parents\"]\n{}",
        child_job(&base, "from_job = \"parents\"\nfields = { id = \"/id\" }")
            .replace("{partition}", "{partition.id}")
    );
    project.job("child", &child);
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_one_segment_each(&seen, "/child/");
}

/// `..` cannot be one segment (URL parsers resolve it even as `%2E%2E`):
/// its stream fails with a clear error and nothing is requested for it.
#[tokio::test]
async fn a_dot_dot_value_in_the_path_is_refused_not_resolved() {
    let (base, seen) = api().await;
    let project = Project::new();
    project.job("child", &child_job(&base, "values = [\"..\", \"ok\"]"));
    let output = project.run(&["run", "child"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = common::text(&output);
    assert!(
        text.contains("cannot be a path segment"),
        "{}",
        describe(&output)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["/child/ok/orders?q=ok&p=ok"],
        "{}",
        describe(&output)
    );
}

#[tokio::test]
async fn unknown_placeholders_are_refused_with_their_place() {
    let project = Project::new();
    project.job(
        "child",
        "[request]\nurl = \"https://api.example.com/c/{partition.id}\"\n\
         headers = { X-Tenant = \"{bogus}\", X-Literal = \"{{partition}}\" }\n\
         [partitions]\nvalues = [\"a\"]\n",
    );
    project.job(
        "host",
        "[request]\nurl = \"https://{partition}.example.com/c\"\n[partitions]\nvalues = [\"a\"]\n",
    );
    let output = project.run(&["validate"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = common::text(&output);
    for expected in [
        "child.toml:2:7: job \"child\": unknown placeholder `{partition.id}` in `request.url` (hint: this job's placeholders are {partition}, {now}, {env.NAME}; write {{name}} for a literal {name})",
        "child.toml:3:24: job \"child\": unknown placeholder `{bogus}` in `request.headers.X-Tenant`",
        "host.toml:2:7: job \"host\": placeholder `{partition}` is in the scheme, host or port of `request.url`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("X-Literal"), "{text}");
}
