//! Attacks on request placeholders (reach.md section 1): `{env.*}`,
//! `{mark}`, `{now}`, formats and `{secret.*}`. Each test runs the built
//! binary against an in-process axum server on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Project, describe, text};
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn query(&self, key: &str) -> Option<String> {
        let query = self.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    fn all(&self) -> String {
        let mut out = format!("{} {}\n", self.method, self.uri);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\n"));
        }
        out.push_str(&self.body);
        out
    }
}

type Responder = Arc<dyn Fn(&Seen, &str) -> Response + Send + Sync>;

#[derive(Clone)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    base: String,
}

impl Server {
    /// A server answering each request with `respond(seen, base)`.
    async fn start(respond: impl Fn(&Seen, &str) -> Response + Send + Sync + 'static) -> Server {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let respond: Responder = Arc::new(respond);
        let (s, b) = (seen.clone(), base.clone());
        let app = Router::new().fallback(move |request: Request| {
            let (s, b, respond) = (s.clone(), b.clone(), respond.clone());
            async move {
                let method = request.method().to_string();
                let uri = request.uri().to_string();
                let headers = request
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let seen = Seen {
                    method,
                    uri,
                    headers,
                    body: String::from_utf8_lossy(&body).into(),
                };
                s.lock().unwrap().push(seen.clone());
                respond(&seen, &b)
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { seen, base }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn ok(body: Value) -> Response {
    axum::Json(body).into_response()
}

fn runs_errors(project: &Project) -> String {
    let db = project.open();
    let mut st = db
        .prepare("SELECT coalesce(error, '') FROM _apisync_runs")
        .unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------

/// `{now:%#z}` is a strftime pattern chrono parses without an error item,
/// so validation accepts it; but chrono cannot *format* it (it is a
/// parse-only item), and `to_string()` on the DelayedFormat panics.
#[tokio::test]
async fn a_parse_only_strftime_item_is_refused_not_a_panic() {
    let server = Server::start(|_, _| ok(json!({ "data": [{ "id": 1 }] }))).await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/items\"\nquery = {{ tz = \"{{now:%#z}}\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
            server.base
        ),
    );
    let validate = project.run(&["validate"]).await;
    let run = project.run(&["run"]).await;
    let all = format!("{}\n{}", describe(&validate), describe(&run));
    assert!(
        !all.contains("panicked"),
        "a format accepted by validation panics at run time:\n{all}"
    );
    assert!(
        !validate.status.success() && text(&validate).contains("items.toml:"),
        "validation should refuse {{now:%#z}} at file:line:col:\n{all}"
    );
}

/// `{now:}`: an empty format is "no placeholder" to the template parser,
/// so validation says nothing and the literal text `{now:}` is sent.
/// reach.md: "Nothing is ever sent with a placeholder left in it" and an
/// unknown format is a validation error.
#[tokio::test]
async fn an_empty_format_is_an_error_not_sent_as_text() {
    let server = Server::start(|_, _| ok(json!({ "data": [{ "id": 1 }] }))).await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/items\"\nquery = {{ since = \"{{now:}}\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
            server.base
        ),
    );
    let validate = project.run(&["validate"]).await;
    let run = project.run(&["run"]).await;
    let sent: Vec<_> = server
        .seen()
        .iter()
        .filter_map(|s| s.query("since"))
        .collect();
    assert!(
        !sent.iter().any(|v| v.contains("{now")),
        "sent a placeholder unexpanded: {sent:?}\nvalidate: {}\nrun: {}",
        describe(&validate),
        describe(&run)
    );
}

/// A strftime pattern with `%n` in a header of a job without partitions:
/// validation passes; the run fails blaming a partition the job does not
/// have ("partition values in headers must be printable text").
#[tokio::test]
async fn a_format_that_makes_a_bad_header_is_caught_by_validation() {
    let server = Server::start(|_, _| ok(json!({ "data": [{ "id": 1 }] }))).await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/items\"\nheaders = {{ X-Day = \"{{now:%Y%n}}\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
            server.base
        ),
    );
    let validate = project.run(&["validate"]).await;
    let run = project.run(&["run"]).await;
    let run_text = text(&run);
    assert!(
        !(validate.status.success() && run_text.contains("partition")),
        "validated, then failed blaming a partition the job does not have:\n{}\n{}",
        describe(&validate),
        describe(&run)
    );
}

/// reach.md: `{mark:rfc3339}` is the default. A mark whose cursor came
/// from the server with an offset is sent raw by `{mark}`, not as RFC 3339
/// UTC as `{mark:rfc3339}` writes it.
#[tokio::test]
async fn mark_without_a_format_is_written_as_rfc3339() {
    let server = Server::start(|_, _| {
        ok(json!({ "data": [{ "id": 1, "updated_at": "2024-03-01T12:00:00+02:00" }] }))
    })
    .await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/items\"\nquery = {{ a = \"{{mark}}\", b = \"{{mark:rfc3339}}\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
             [incremental]\ncursor_field = \"/updated_at\"\ncursor_type = \"timestamp\"\n\
             initial = \"2024-01-01T00:00:00+01:00\"\n",
            server.base
        ),
    );
    for _ in 0..2 {
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let seen = server.seen();
    let pairs: Vec<_> = seen.iter().map(|s| (s.query("a"), s.query("b"))).collect();
    for (a, b) in &pairs {
        assert_eq!(a, b, "{{mark}} and its default format differ: {pairs:?}");
    }
}

/// reach.md says "`{{` and `}}` are literal braces"; v1 says every brace
/// but `{{name}}` is sent as written, so that JSON in a query value needs
/// no escaping. v1 wins (reach.md: "everything in v1 keeps working"):
/// `{{name}}` is the literal `{name}`, other braces go as written, and a
/// placeholder right inside braces is written `{{{env.X}}}` only at the
/// cost of the escape (documented in docs/jobs.md).
#[tokio::test]
async fn braces_follow_v1_an_escaped_name_and_json_stay_literal() {
    let server = Server::start(|_, _| ok(json!({ "data": [{ "id": 1 }] }))).await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/items\"\nquery = {{ q = \"{{{{env.ATTACK_X}}}}\", r = \"a{{{{b\", j = '{{\"a\":{{\"b\":1}}}}', v = \"<{{env.ATTACK_X}}>\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
            server.base
        ),
    );
    let out = project
        .command(&["run"])
        .env("ATTACK_X", "val")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let seen = server.seen();
    assert_eq!(
        (
            seen[0].query("q").as_deref(),
            seen[0].query("r").as_deref(),
            seen[0].query("j").as_deref(),
            seen[0].query("v").as_deref()
        ),
        (
            Some("{env.ATTACK_X}"),
            Some("a{{b"),
            Some("{\"a\":{\"b\":1}}"),
            Some("<val>")
        ),
        "{seen:?}"
    );
}

// ---------------------------------------------------------------------
// {env.*}
// ---------------------------------------------------------------------

/// `{env.SEG}` in the path is known at plan time; an empty value (or
/// `..`) passes validation (the sample substitutes it raw) and the run
/// then fails on every stream.
#[tokio::test]
async fn an_env_value_that_cannot_be_a_path_segment_is_a_validation_error() {
    let server = Server::start(|_, _| ok(json!({ "data": [{ "id": 1 }] }))).await;
    for value in ["", ".."] {
        let project = Project::new();
        project.job(
            "items",
            &format!(
                "[request]\nurl = \"{}/v1/{{env.ATTACK_SEG}}/items\"\n\
                 [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
                server.base
            ),
        );
        let validate = project
            .command(&["validate"])
            .env("ATTACK_SEG", value)
            .output()
            .await
            .unwrap();
        let run = project
            .command(&["run"])
            .env("ATTACK_SEG", value)
            .output()
            .await
            .unwrap();
        assert!(
            !validate.status.success() || run.status.success(),
            "ATTACK_SEG={value:?}: validated, then the run failed:\n{}\n{}",
            describe(&validate),
            describe(&run)
        );
    }
}

/// Values with `/`, `%`, `@`, `:`, `?`, `#`, unicode in the path and query:
/// one segment, one value, origin unchanged.
#[tokio::test]
async fn env_values_are_one_segment_and_one_value() {
    let server = Server::start(|_, _| ok(json!({ "data": [{ "id": 1 }] }))).await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/v1/{{env.ATTACK_V}}/items?x={{env.ATTACK_V}}\"\n\
             query = {{ y = \"{{env.ATTACK_V}}\" }}\nheaders = {{ X-V = \"{{env.ATTACK_H}}\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
            server.base
        ),
    );
    let value = "a/b%2F@evil.example:1?q=1&z#f ü";
    let out = project
        .command(&["run"])
        .env("ATTACK_V", value)
        .env("ATTACK_H", "h:v@x/%")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let path = seen[0].path().to_string();
    let segs: Vec<_> = path.split('/').collect();
    assert_eq!(segs.len(), 4, "{path}");
    let decoded = percent_encoding::percent_decode_str(segs[2])
        .decode_utf8()
        .unwrap();
    assert_eq!(decoded, value);
    assert_eq!(seen[0].query("x").as_deref(), Some(value));
    assert_eq!(seen[0].query("y").as_deref(), Some(value));
    assert_eq!(seen[0].header("x-v").as_deref(), Some("h:v@x/%"));
}

/// `Authorization = "Bearer {env.TOKEN}"`: the context registers the
/// header's whole rendered value ("Bearer tok") with the scrubber, not the
/// token itself. A server that echoes the bare token in a 400 body puts it
/// in stderr, runs.error and `status`.
#[tokio::test]
async fn an_env_token_in_a_credential_header_is_scrubbed_on_its_own() {
    const TOK: &str = "envTOKENzq81xx";
    let server = Server::start(|seen, _| {
        let auth = seen.header("authorization").unwrap_or_default();
        let bare = auth.trim_start_matches("Bearer ").to_string();
        (StatusCode::BAD_REQUEST, format!("token {bare} is revoked")).into_response()
    })
    .await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/items\"\nheaders = {{ Authorization = \"Bearer {{env.ATTACK_TOK}}\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[retry]\nmax_attempts = 1\n",
            server.base
        ),
    );
    let run = project
        .command(&["run"])
        .env("ATTACK_TOK", TOK)
        .output()
        .await
        .unwrap();
    assert!(!run.status.success(), "{}", describe(&run));
    assert!(
        server.seen()[0]
            .header("authorization")
            .unwrap()
            .contains(TOK)
    );
    let status = project
        .command(&["status"])
        .env("ATTACK_TOK", TOK)
        .output()
        .await
        .unwrap();
    let all = format!(
        "{}\n{}\n{}",
        describe(&run),
        runs_errors(&project),
        describe(&status)
    );
    assert!(!all.contains("TOKENzq81"), "the token leaked:\n{all}");
}

// ---------------------------------------------------------------------
// {secret.*} and a hostile server
// ---------------------------------------------------------------------

const SECRET: &str = "sekritVALUEq7Z9";

fn secrets_project(job: &str) -> Project {
    let project = Project::new();
    project.config("[secrets]\nk = { env = \"ATTACK_SECRET\" }\n");
    project.job("items", job);
    project
}

async fn run_with_secret(project: &Project, args: &[&str]) -> std::process::Output {
    project
        .command(args)
        .env("ATTACK_SECRET", SECRET)
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap()
}

/// The server hands back the secret as its next cursor, then fails the
/// next page: the checkpoint stores `{"cursor": SECRET}`, and `status`
/// (a process that never resolved the secret, so its scrubber does not
/// know it) prints "cursor SECRET".
#[tokio::test]
async fn a_secret_echoed_as_a_cursor_is_not_stored_or_shown() {
    let server = Server::start(|seen, _| match seen.query("cursor") {
        None => ok(json!({ "data": [{ "id": 1 }], "next": seen.header("x-key") })),
        Some(_) => (StatusCode::BAD_REQUEST, "nope").into_response(),
    })
    .await;
    let project = secrets_project(&format!(
        "[request]\nurl = \"{}/items\"\nheaders = {{ X-Key = \"{{secret.k}}\" }}\n\
         [pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"cursor\"\n\
         [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[retry]\nmax_attempts = 1\n",
        server.base
    ));
    let run = run_with_secret(&project, &["run"]).await;
    assert!(!run.status.success(), "{}", describe(&run));
    let status = project.run(&["status"]).await;
    let status_json = project.run(&["status", "--json"]).await;
    let all = format!(
        "run:\n{}\nstatus:\n{}\n{}\ndatabase:\n{}",
        describe(&run),
        describe(&status),
        describe(&status_json),
        project.database_text()
    );
    assert!(!all.contains("VALUEq7Z9"), "the secret leaked:\n{all}");
}

/// As above, but the cursor holds the secret inside a longer text (many
/// APIs base their cursor on the request): the whole-value check misses
/// it, the checkpoint keeps it and `status` prints it.
#[tokio::test]
async fn a_secret_inside_an_echoed_cursor_is_not_stored_or_shown() {
    let server = Server::start(|seen, _| match seen.query("cursor") {
        None => ok(json!({
            "data": [{ "id": 1 }],
            "next": format!("p2:{}", seen.header("x-key").unwrap_or_default())
        })),
        Some(_) => (StatusCode::BAD_REQUEST, "nope").into_response(),
    })
    .await;
    let project = secrets_project(&format!(
        "[request]\nurl = \"{}/items\"\nheaders = {{ X-Key = \"{{secret.k}}\" }}\n\
         [pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"cursor\"\n\
         [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[retry]\nmax_attempts = 1\n",
        server.base
    ));
    let run = run_with_secret(&project, &["run"]).await;
    assert!(!run.status.success(), "{}", describe(&run));
    let status = project.run(&["status"]).await;
    let all = format!(
        "run:\n{}\nstatus:\n{}\ndatabase:\n{}",
        describe(&run),
        describe(&status),
        project.database_text()
    );
    assert!(!all.contains("VALUEq7Z9"), "the secret leaked:\n{all}");
}

/// `status` reads the database; it should not need the run's
/// environment. A job with `{env.X}` makes `status` (for every job) exit 2
/// when X is not set in the shell that asks.
#[tokio::test]
async fn status_does_not_need_the_runs_environment() {
    let server = Server::start(|_, _| ok(json!({ "data": [{ "id": 1 }] }))).await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{}/items\"\nquery = {{ site = \"{{env.ATTACK_SITE}}\" }}\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
            server.base
        ),
    );
    let run = project
        .command(&["run"])
        .env("ATTACK_SITE", "eu")
        .output()
        .await
        .unwrap();
    assert!(run.status.success(), "{}", describe(&run));
    let status = project.run(&["status"]).await;
    assert!(status.status.success(), "{}", describe(&status));
}

/// The server puts the secret into the path of its next URL (same
/// origin), then fails that page: the saved next URL holds the secret.
#[tokio::test]
async fn a_secret_echoed_in_a_next_url_path_is_not_stored_or_shown() {
    let server = Server::start(|seen, base| {
        if seen.path() == "/items" {
            let key = seen.query("key").unwrap_or_default();
            ok(json!({ "data": [{ "id": 1 }], "next": format!("{base}/items/{key}/2") }))
        } else {
            (StatusCode::BAD_REQUEST, "nope").into_response()
        }
    })
    .await;
    let project = secrets_project(&format!(
        "[request]\nurl = \"{}/items\"\nquery = {{ key = \"{{secret.k}}\" }}\n\
         [pagination]\ntype = \"next_url\"\nnext_url_path = \"/next\"\n\
         [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[retry]\nmax_attempts = 1\n",
        server.base
    ));
    let run = run_with_secret(&project, &["run"]).await;
    assert!(!run.status.success(), "{}", describe(&run));
    let status = project.run(&["status"]).await;
    let all = format!(
        "run:\n{}\nstatus:\n{}\ndatabase:\n{}",
        describe(&run),
        describe(&status),
        project.database_text()
    );
    assert!(!all.contains("VALUEq7Z9"), "the secret leaked:\n{all}");
}

/// Held checks for a secret in a query param, a header and a POST body
/// with cursor_in = body: sent to the job's origin only, redirects to
/// another origin get none, nothing in logs/db/status, preview and
/// dry-run print no value.
#[tokio::test]
async fn secrets_reach_only_the_origin_through_redirects_and_body_cursors() {
    let other = Server::start(|_, _| ok(json!({ "data": [{ "id": 99 }], "next": null }))).await;
    let other_base = other.base.clone();
    let server = Server::start(move |seen, _| {
        let body: Value = serde_json::from_str(&seen.body).unwrap_or(Value::Null);
        match body.pointer("/page/cursor").and_then(Value::as_str) {
            None => ok(json!({ "data": [{ "id": 1 }], "next": "c2" })),
            Some("c2") => (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("{other_base}/elsewhere"))],
            )
                .into_response(),
            _ => ok(json!({ "data": [], "next": null })),
        }
    })
    .await;
    let project = secrets_project(&format!(
        "[request]\nurl = \"{}/search\"\nmethod = \"POST\"\nquery = {{ api_key = \"{{secret.k}}\" }}\n\
         headers = {{ X-App = \"pre-{{secret.k}}\" }}\n\
         body = {{ auth = [\"{{secret.k}}\", {{ \"a/b~c\" = \"x{{secret.k}}\" }}], q = \"{{{{secret.k}}}}\" }}\n\
         [pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"/page/cursor\"\ncursor_in = \"body\"\n\
         allow_cross_origin = true\n\
         [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[retry]\nmax_attempts = 1\n",
        server.base
    ));
    let run = run_with_secret(&project, &["run"]).await;
    let status = project.run(&["status", "--json"]).await;
    let dry = run_with_secret(&project, &["run", "--dry-run"]).await;
    let preview = run_with_secret(&project, &["preview", "items"]).await;
    let leaked = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        describe(&run),
        describe(&status),
        describe(&dry),
        describe(&preview),
        project.database_text(),
        other
            .seen()
            .iter()
            .map(Seen::all)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!leaked.contains("VALUEq7Z9"), "leak:\n{leaked}");
    let first = &server.seen()[0];
    assert_eq!(first.query("api_key").as_deref(), Some(SECRET), "{first:?}");
    assert_eq!(first.header("x-app"), Some(format!("pre-{SECRET}")));
    let body: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(
        body,
        json!({ "auth": [SECRET, { "a/b~c": format!("x{SECRET}") }], "q": "{secret.k}" })
    );
}

// ---------------------------------------------------------------------
// Kill and resume
// ---------------------------------------------------------------------

/// SIGKILL while page 2 is in flight, then rerun: no row lost or doubled
/// (append mode shows doubles) and a resumed stream asks with the `{now}`
/// and `{mark}` it started with.
#[tokio::test]
async fn a_killed_run_resumes_with_its_own_now_and_mark() {
    let (hit_tx, mut hit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (h, g) = (hang.clone(), gate.clone());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let s2 = seen.clone();
    let app = Router::new().fallback(move |request: Request| {
        let (h, g, tx, s2) = (h.clone(), g.clone(), hit_tx.clone(), s2.clone());
        async move {
            let uri = request.uri().to_string();
            s2.lock().unwrap().push(Seen {
                method: "GET".into(),
                uri: uri.clone(),
                headers: vec![],
                body: String::new(),
            });
            let page: u64 = url::form_urlencoded::parse(uri.split_once('?').unwrap().1.as_bytes())
                .find(|(k, _)| k == "page")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(1);
            if page == 3 && h.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = tx.send(());
                g.notified().await; // never: the client is killed
            }
            let data: Vec<Value> = match page {
                1..=3 => (0..2)
                    .map(|i| json!({ "id": page * 10 + i, "updated_at": format!("2024-02-0{page}T00:00:00Z") }))
                    .collect(),
                _ => vec![],
            };
            axum::Json(json!({ "data": data })).into_response()
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "[request]\nurl = \"{base}/items\"\nquery = {{ from = \"{{mark:epoch}}\", to = \"{{now:rfc3339}}\" }}\n\
             [pagination]\ntype = \"page\"\n\
             [records]\npath = \"/data\"\n[output]\nmode = \"append\"\n\
             [incremental]\ncursor_field = \"/updated_at\"\ncursor_type = \"timestamp\"\n\
             initial = \"2024-01-01T00:00:00Z\"\n"
        ),
    );
    let mut child = project.command(&["run"]).spawn().unwrap();
    hit_rx.recv().await.unwrap();
    child.kill().await.unwrap();
    let checkpoint: Option<String> = project
        .open()
        .query_row(
            "SELECT position FROM _apisync_checkpoints WHERE job = 'items'",
            [],
            |r| r.get(0),
        )
        .ok();
    let first_run: Vec<Seen> = seen.lock().unwrap().clone();
    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    // A second of difference makes a changed {now} visible.
    let first_to = first_run[0].query("to").unwrap();
    while chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true) == first_to {
        tokio::task::yield_now().await;
    }
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let all: Vec<Seen> = seen.lock().unwrap().clone();
    let resumed = &all[first_run.len()..];
    let ids: Vec<u64> = project
        .rows("items")
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [10, 11, 20, 21, 30, 31],
        "rows lost or doubled: {ids:?}"
    );
    if let Some(cp) = &checkpoint {
        assert!(cp.contains("\"now\""), "{cp}");
        for s in resumed {
            assert_eq!(s.query("to"), first_run[0].query("to"), "{resumed:?}");
            assert_eq!(s.query("from"), first_run[0].query("from"), "{resumed:?}");
        }
    }
}
