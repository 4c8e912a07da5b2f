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

/// An unset `{env.NAME}` is reported by `validate` at its place, fails the
/// job that needs it when run (before any request), and does not stop
/// `status`, which only reads the database.
#[tokio::test]
async fn a_missing_environment_variable_fails_its_job_and_not_status() {
    let project = Project::new();
    project.job(
        "dd_monitors",
        "[request]\nurl = \"http://{env.APISYNC_TEST_NEVER_SET}/api/v1/monitors\"\n",
    );
    let located = "jobs/dd_monitors.toml:2:7";
    let unset = "environment variable APISYNC_TEST_NEVER_SET is not set";
    for args in [&["validate"][..], &["run"]] {
        let out = project.run(args).await;
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(located) && stderr.contains(unset),
            "{args:?}: {stderr}"
        );
    }
    let out = project.run(&["status"]).await;
    assert!(out.status.success(), "{}", describe(&out));
}

/// Two `[secrets]`: one from the environment, one from a file.
const APP_KEY: &str = "appkeySECRETONE_4417";
const API_KEY: &str = "apikey+SECRETTWO/=9";

/// What server A checks and what B (another origin) saw.
#[derive(Default)]
struct Keyed {
    /// Page 2 fails (echoing the key) until this is set.
    page_two_works: bool,
    /// Requests to A that lacked a key.
    refused: Vec<String>,
    /// Everything B was sent: query and header lines.
    other_origin: Vec<String>,
    /// Query values of `p` that the partitioned job sent.
    partition_values: Vec<String>,
    /// Bodies the POST job sent.
    bodies: Vec<Value>,
    /// B's base URL, where A's page 2 links to.
    other: String,
}

type KeyedApi = Arc<Mutex<Keyed>>;

fn has_keys(request: &Request) -> bool {
    let query = request.uri().query().unwrap_or_default();
    request
        .headers()
        .get("DD-APPLICATION-KEY")
        .is_some_and(|v| v == APP_KEY)
        && decoded(query, "api_key").as_deref() == Some(API_KEY)
        && url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "api_key")
            .count()
            == 1
}

async fn server_a(State(api): State<KeyedApi>, request: Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let query = request.uri().query().unwrap_or_default().to_string();
    let mut state = api.lock().unwrap();
    if let Some(p) = decoded(&query, "p") {
        state.partition_values.push(p);
        return Json(json!({ "data": [] })).into_response();
    }
    if !has_keys(&request) {
        state.refused.push(query);
        return (axum::http::StatusCode::UNAUTHORIZED, "no key").into_response();
    }
    let echoed = url::form_urlencoded::byte_serialize(API_KEY.as_bytes()).collect::<String>();
    let base = format!("http://{}", request.headers()["host"].to_str().unwrap());
    match decoded(&query, "page").as_deref() {
        None => Json(json!({
            "data": [{ "id": 1 }],
            // The server echoes the key into its next link.
            "next": format!("{base}/items?page=2&api_key={echoed}"),
        }))
        .into_response(),
        Some("2") if !state.page_two_works => (
            axum::http::StatusCode::BAD_REQUEST,
            format!("bad request for key {API_KEY} and {APP_KEY}"),
        )
            .into_response(),
        Some("2") => Json(json!({
            "data": [{ "id": 2 }],
            "next": format!("{}/items?page=3", state.other),
        }))
        .into_response(),
        Some(_) => (axum::http::StatusCode::NOT_FOUND, "no").into_response(),
    }
}

async fn server_b(State(api): State<KeyedApi>, request: Request) -> Json<Value> {
    let mut seen = vec![request.uri().to_string()];
    for (name, value) in request.headers() {
        seen.push(format!("{name}: {}", value.to_str().unwrap_or_default()));
    }
    api.lock().unwrap().other_origin.extend(seen);
    Json(json!({ "data": [{ "id": 3 }], "next": null }))
}

async fn search(State(api): State<KeyedApi>, Json(body): Json<Value>) -> Json<Value> {
    api.lock().unwrap().bodies.push(body);
    Json(json!({ "data": [{ "id": 9 }] }))
}

fn assert_clean(what: &str, text: &str) {
    let encoded: String = url::form_urlencoded::byte_serialize(API_KEY.as_bytes()).collect();
    for secret in [APP_KEY, API_KEY, "SECRETONE", "SECRETTWO", encoded.as_str()] {
        assert!(!text.contains(secret), "{what} holds {secret:?}:\n{text}");
    }
}

/// reach.md section 1: a `{secret.*}` is a credential in every respect. It
/// goes only to the job's origin (a header, a query parameter re-added to
/// a saved next URL, a body string), never to another origin, never into
/// a log line at any level, an error, the database or `status`; and a
/// partition value that reads `{secret.api}` is sent as that text.
#[tokio::test]
async fn a_secret_goes_only_to_the_jobs_origin_and_nowhere_else() {
    let api = KeyedApi::default();
    let b = common::serve(Router::new().fallback(server_b).with_state(api.clone())).await;
    // B is "another origin": same host, another port.
    api.lock().unwrap().other = b;
    let a = common::serve(
        Router::new()
            .route("/search", axum::routing::post(search))
            .fallback(server_a)
            .with_state(api.clone()),
    )
    .await;

    let project = Project::new();
    std::fs::write(project.path().join("api.key"), format!("{API_KEY}\n")).unwrap();
    project.config("[secrets]\napp = { env = \"APP_KEY\" }\napi = { file = \"api.key\" }\n");
    project.job(
        "items",
        &format!(
            r#"
[request]
url = "{a}/items"
headers = {{ "DD-APPLICATION-KEY" = "{{secret.app}}" }}
query = {{ api_key = "{{secret.api}}" }}

[pagination]
type = "next_url"
next_url_path = "/next"
allow_cross_origin = true

[records]
path = "/data"
primary_key = ["/id"]
"#
        ),
    );
    project.job(
        "search",
        &format!(
            r#"
[request]
url = "{a}/search"
method = "POST"
body = {{ auth = {{ keys = ["{{secret.app}}", "k:{{secret.api}}"] }}, q = "open" }}

[records]
path = "/data"
primary_key = ["/id"]
"#
        ),
    );
    project.job(
        "hostile",
        &format!(
            "[request]\nurl = \"{a}/items\"\nquery = {{ p = \"{{partition}}\" }}\n\
             [partitions]\nvalues = [\"{{secret.api}}\", \"{{{{secret.app}}}}\"]\n\
             [records]\npath = \"/data\"\n[output]\nmode = \"append\"\n"
        ),
    );
    let run = |args: &[&str]| {
        let mut command = project.command(args);
        command.env("APP_KEY", APP_KEY).env("RUST_LOG", "trace");
        command
    };

    // First run: page 2 fails with the keys echoed in its body.
    let out = run(&["run"]).output().await.unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert_clean("the failed run's output", &describe(&out));
    assert_clean("the database after a failure", &project.database_text());
    let checkpoint: String = project
        .open()
        .query_row(
            "SELECT position FROM _apisync_checkpoints WHERE job = 'items'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(checkpoint.contains("page=2"), "{checkpoint}");
    for args in [&["status"][..], &["status", "--json"]] {
        let out = run(args).output().await.unwrap();
        assert_clean("status", &describe(&out));
    }

    // Second run resumes at the saved next URL: the key is put back.
    api.lock().unwrap().page_two_works = true;
    let out = run(&["run"]).output().await.unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_clean("the second run's output", &describe(&out));
    assert_clean("the database", &project.database_text());
    assert_eq!(project.rows("items").len(), 3);

    let state = api.lock().unwrap();
    assert!(state.refused.is_empty(), "A refused {:?}", state.refused);
    assert!(!state.other_origin.is_empty(), "B was asked for page 3");
    assert_clean(
        "what the other origin was sent",
        &state.other_origin.join("\n"),
    );
    assert_eq!(
        state.bodies,
        vec![json!({ "auth": { "keys": [APP_KEY, format!("k:{API_KEY}")] }, "q": "open" }); 2]
    );
    // The hostile job ran in both runs.
    let mut values = state.partition_values.clone();
    values.sort();
    assert_eq!(
        values,
        [
            "{secret.api}",
            "{secret.api}",
            "{{secret.app}}",
            "{{secret.app}}"
        ]
    );
}

/// reach.md section 3, `fields`: one partition per distinct combination
/// of a parent row's values, each value in its own placeholder, encoded for
/// where it stands; rows missing a value make none.
#[tokio::test]
async fn parent_fields_fan_out_once_per_combination() {
    type Asked = Arc<Mutex<Vec<String>>>;
    async fn tickets() -> Json<Value> {
        Json(json!({ "tickets": [
            { "id": 1, "brand_id": 10 },
            { "id": 2, "brand_id": "a/b" },
            { "id": 2, "brand_id": "a/b" },
            { "id": 3, "brand_id": null },
            { "id": 4 },
        ] }))
    }
    async fn comments(State(asked): State<Asked>, request: Request) -> Json<Value> {
        asked.lock().unwrap().push(request.uri().to_string());
        // Comment ids repeat across tickets.
        Json(json!({ "comments": [{ "id": 1 }] }))
    }
    let asked = Asked::default();
    let base = common::serve(
        Router::new()
            .route("/tickets", get(tickets))
            .fallback(comments)
            .with_state(asked.clone()),
    )
    .await;
    let project = Project::new();
    project.job(
        "tickets",
        &format!(
            "[request]\nurl = \"{base}/tickets\"\n[records]\npath = \"/tickets\"\n\
             [output]\nmode = \"append\"\n"
        ),
    );
    project.job(
        "ticket_comments",
        &format!(
            r#"depends_on = ["tickets"]
[request]
url = "{base}/tickets/{{partition.id}}/comments"
query = {{ brand = "{{partition.brand}}" }}
headers = {{ "X-Brand" = "{{partition.brand}}" }}

[partitions]
from_job = "tickets"
fields = {{ id = "/id", brand = "/brand_id" }}

[records]
path = "/comments"

[output]
mode = "append"
"#
        ),
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let mut first_run = asked.lock().unwrap().clone();
    first_run.sort();
    assert_eq!(
        first_run,
        [
            "/tickets/1/comments?brand=10",
            "/tickets/2/comments?brand=a%2Fb",
        ]
    );
    assert_eq!(project.rows("ticket_comments").len(), 2);
    // `preview --partition` takes a key as the values by name.
    let key = r#"{"brand":"a/b","id":"2"}"#;
    let out = project
        .run(&["preview", "ticket_comments", "--partition", key])
        .await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        asked.lock().unwrap().last().map(String::as_str),
        Some("/tickets/2/comments?brand=a%2Fb")
    );
    let out = project
        .run(&["preview", "ticket_comments", "--partition", r#"{"id":"2"}"#])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        describe(&out).contains("is not a partition of this job"),
        "{}",
        describe(&out)
    );
}

/// reach.md section 3, `_partition`: each row of a `fields` child holds
/// the values of the parent row it was fetched for, by name, as text (a
/// number too, as in the request); the parent, unpartitioned, has no such
/// column.
#[tokio::test]
async fn each_child_row_holds_its_parents_values_in_partition() {
    async fn tickets() -> Json<Value> {
        Json(json!({ "tickets": [
            { "id": 12, "brand_id": 7 },
            { "id": 13, "brand_id": "b-2" },
            { "id": 14, "brand_id": 7 },
        ] }))
    }
    async fn comments(request: Request) -> Json<Value> {
        // Each comment tells which ticket and brand it was asked for.
        let ticket = request
            .uri()
            .path()
            .split('/')
            .nth(2)
            .unwrap_or("?")
            .to_string();
        let brand = decoded(request.uri().query().unwrap_or_default(), "brand");
        let comment = |id: u64| json!({ "id": id, "ticket": ticket, "brand": brand });
        Json(json!({ "comments": [comment(1), comment(2), comment(3)] }))
    }
    let base = common::serve(
        Router::new()
            .route("/tickets", get(tickets))
            .fallback(comments),
    )
    .await;
    let project = Project::new();
    project.job(
        "tickets",
        &format!(
            "[request]\nurl = \"{base}/tickets\"\n[records]\npath = \"/tickets\"\nprimary_key = [\"/id\"]\n"
        ),
    );
    project.job(
        "ticket_comments",
        &format!(
            r#"depends_on = ["tickets"]
[request]
url = "{base}/tickets/{{partition.id}}/comments"
query = {{ brand = "{{partition.brand}}" }}
[partitions]
from_job = "tickets"
fields = {{ id = "/id", brand = "/brand_id" }}
[records]
path = "/comments"
primary_key = ["{{partition.id}}", "/id"]
"#
        ),
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let db = project.open();
    let rows: Vec<(String, String)> = db
        .prepare("SELECT _data, _partition FROM ticket_comments ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 9, "{rows:?}");
    for (data, partition) in &rows {
        let data: Value = serde_json::from_str(data).unwrap();
        let partition: Value = serde_json::from_str(partition).unwrap();
        assert_eq!(
            partition,
            json!({ "id": data["ticket"], "brand": data["brand"] }),
            "{data}"
        );
    }
    let mut texts: Vec<&str> = rows.iter().map(|(_, p)| p.as_str()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(
        texts,
        [
            r#"{"brand":"7","id":"12"}"#,
            r#"{"brand":"7","id":"14"}"#,
            r#"{"brand":"b-2","id":"13"}"#,
        ]
    );
    let parent_has_it: i64 = db
        .query_row(
            "SELECT count(*) FROM pragma_table_info('tickets') WHERE name = '_partition'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(parent_has_it, 0);
}

/// reach.md section 3: comment ids repeat across tickets (unique per ticket
/// only), so the key is (ticket, comment): `{partition}` in `primary_key`
/// and in a column. Each lands once per (ticket, comment); a second run
/// merges onto the same rows (and its check that the key did not change
/// reads the partition part out of the stored key).
#[tokio::test]
async fn a_partition_value_in_the_key_keeps_per_parent_ids_apart() {
    async fn tickets() -> Json<Value> {
        Json(json!({ "tickets": [{ "id": 1 }, { "id": 2 }, { "id": 3 }] }))
    }
    async fn comments(request: Request) -> Json<Value> {
        let ticket = request
            .uri()
            .path()
            .split('/')
            .nth(2)
            .unwrap_or("?")
            .to_string();
        Json(json!({ "comments": [
            { "id": 1, "body": format!("first on {ticket}") },
            { "id": 2, "body": format!("second on {ticket}") },
        ] }))
    }
    let base = common::serve(
        Router::new()
            .route("/tickets", get(tickets))
            .fallback(comments),
    )
    .await;
    let project = Project::new();
    project.job(
        "tickets",
        &format!(
            "[request]\nurl = \"{base}/tickets\"\n[records]\npath = \"/tickets\"\nprimary_key = [\"/id\"]\n"
        ),
    );
    project.job(
        "ticket_comments",
        &format!(
            r#"depends_on = ["tickets"]
[request]
url = "{base}/tickets/{{partition}}/comments"
[partitions]
from_job = "tickets"
field = "/id"
[records]
path = "/comments"
primary_key = ["{{partition}}", "/id"]
[output]
columns = {{ ticket_id = "{{partition}}", body = "/body" }}
"#
        ),
    );
    for run in 1..=2 {
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "run {run}: {}", describe(&out));
        let rows: Vec<(String, String, String)> = project
            .open()
            .prepare("SELECT _pk, ticket_id, body FROM ticket_comments ORDER BY _pk")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 6, "run {run}: {rows:?}");
        assert_eq!(
            rows[0],
            ("[\"1\",1]".into(), "1".into(), "first on 1".into())
        );
        assert_eq!(
            rows[5],
            ("[\"3\",2]".into(), "3".into(), "second on 3".into())
        );
    }
}

/// semantics.md, where a token may go: a request whose body holds a
/// `{secret.*}` is not sent to another origin, even where the job lets
/// next URLs and redirects cross origins (leaving the secret out would
/// change what is asked for); the other origin sees nothing.
#[tokio::test]
async fn a_body_with_a_secret_is_not_sent_to_another_origin() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let other = {
        let seen = seen.clone();
        common::serve(Router::new().fallback(move |request: Request| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(request.uri().to_string());
                Json(json!({ "data": [] }))
            }
        }))
        .await
    };
    let origin = common::serve(Router::new().route(
        "/search",
        axum::routing::post(move || {
            let target = format!("{other}/search");
            async move { axum::response::Redirect::temporary(&target) }
        }),
    ))
    .await;
    let project = Project::new();
    project.config("[secrets]\napi = { env = \"API_KEY\" }\n");
    project.job(
        "search",
        &format!(
            r#"[request]
url = "{origin}/search"
method = "POST"
body = {{ key = "{{secret.api}}" }}
[pagination]
type = "none"
allow_cross_origin = true
[records]
path = "/data"
[retry]
max_attempts = 1
"#
        ),
    );
    let out = project
        .command(&["run"])
        .env("API_KEY", "bodysecretVALUE_991")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        seen.lock().unwrap().is_empty(),
        "the other origin was asked: {:?}",
        seen.lock().unwrap()
    );
    assert!(
        !describe(&out).contains("bodysecretVALUE_991"),
        "{}",
        describe(&out)
    );
    assert!(
        describe(&out).contains("another origin"),
        "{}",
        describe(&out)
    );
}
