//! reach.md section 1 end to end: a Datadog-like API whose host comes from
//! the environment, whose second key is a header, and whose filter carries
//! the mark as epoch seconds inside a query value. The built binary runs
//! twice; the test asserts what the server was asked, not only what was
//! stored.

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::routing::get;
use common::{Project, describe};
use serde_json::{Value, json};

/// What one request carried: the query as sent, and the application key.
#[derive(Debug, Clone)]
struct Asked {
    query: String,
    app_key: Option<String>,
}

#[derive(Default)]
struct Api {
    asked: Vec<Asked>,
    /// The monitors and when each last changed.
    monitors: Vec<(u64, &'static str)>,
}

type Shared = Arc<Mutex<Api>>;

async fn monitors(State(api): State<Shared>, request: Request) -> Json<Value> {
    let query = request.uri().query().unwrap_or_default().to_string();
    let app_key = request
        .headers()
        .get("DD-APPLICATION-KEY")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut api = api.lock().unwrap();
    api.asked.push(Asked { query, app_key });
    let data: Vec<Value> = api
        .monitors
        .iter()
        .map(|(id, at)| json!({ "id": id, "updated_at": at }))
        .collect();
    Json(json!({ "monitors": data }))
}

fn decoded(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn env_mark_and_now_fill_the_request_where_they_stand() {
    let api = Shared::default();
    api.lock().unwrap().monitors = vec![(1, "2024-02-01T00:00:00Z"), (2, "2024-03-01T00:00:00Z")];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = listener.local_addr().unwrap().to_string();
    let app = Router::new()
        .route("/api/v1/monitors", get(monitors))
        .with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let project = Project::new();
    project.job(
        "dd_monitors",
        r#"
[request]
url = "http://{env.DD_SITE}/api/v1/monitors"
headers = { "DD-APPLICATION-KEY" = "{env.DD_APP_KEY}" }
query = { filter = "updated_at>{mark:epoch}", day = "{now:date}", literal = "{{mark}}" }

[records]
path = "/monitors"
primary_key = ["/id"]

[incremental]
cursor_field = "/updated_at"
cursor_type = "timestamp"
initial = "2024-01-01T00:00:00Z"
"#,
    );
    let run = |project: &Project| {
        let mut command = project.command(&["run"]);
        command
            .env("DD_SITE", &site)
            .env("DD_APP_KEY", "app-key-77");
        command
    };
    let today = || chrono::Utc::now().format("%Y-%m-%d").to_string();
    let before = today();
    let out = run(&project).output().await.unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let after = today();
    // Monitor 3 changes after the first run; the second asks from the mark.
    api.lock()
        .unwrap()
        .monitors
        .push((3, "2024-04-01T00:00:00Z"));
    let out = run(&project).output().await.unwrap();
    assert!(out.status.success(), "{}", describe(&out));

    let asked = api.lock().unwrap().asked.clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    let filters: Vec<_> = asked.iter().map(|a| decoded(&a.query, "filter")).collect();
    assert_eq!(
        filters,
        [
            Some("updated_at>1704067200".to_string()), // initial, 2024-01-01
            Some("updated_at>1709251200".to_string()), // the mark, 2024-03-01
        ]
    );
    for a in &asked {
        let day = decoded(&a.query, "day").unwrap_or_default();
        assert!(day == before || day == after, "{day} is not today");
        assert_eq!(decoded(&a.query, "literal").as_deref(), Some("{mark}"));
        assert_eq!(a.app_key.as_deref(), Some("app-key-77"));
    }
    assert_eq!(project.rows("dd_monitors").len(), 3);
}

#[tokio::test]
async fn a_missing_environment_variable_stops_the_run_before_any_request() {
    let project = Project::new();
    project.job(
        "dd_monitors",
        "[request]\nurl = \"http://{env.APISYNC_TEST_NEVER_SET}/api/v1/monitors\"\n",
    );
    let out = project.run(&["run"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("jobs/dd_monitors.toml:2:7")
            && stderr.contains("environment variable APISYNC_TEST_NEVER_SET is not set"),
        "{stderr}"
    );
    assert!(!project.database().exists(), "nothing was written");
}
