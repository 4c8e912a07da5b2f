//! What people and their tools read from the binary: `status` as a table
//! and as JSON after a real sync, JSON log lines with the job's fields, no
//! colour codes where there is no terminal, and shell completion scripts.

mod common;

use std::process::Output;

use apisync::demo::{DEMO_TOKEN, DemoConfig, DemoServer};
use common::faults::{Fault, FaultConfig, FaultServer, Style};
use common::{BEARER, Project, describe};
use serde_json::Value;

/// A demo API with few records, so pages are few and counts readable.
async fn small_demo() -> DemoServer {
    let config = DemoConfig {
        customers: 7,
        orders: 12,
        events: 5,
        ..DemoConfig::default()
    };
    DemoServer::bind(0, config).await.expect("bind demo API")
}

/// One good page, then 500 for good: the job fails with a saved cursor.
async fn half_broken_api() -> String {
    async fn page(
        axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        match q.get("after") {
            None => axum::Json(serde_json::json!({
                "data": [{ "id": 1 }, { "id": 2 }],
                "next": "page-2"
            }))
            .into_response(),
            Some(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
    common::serve(axum::Router::new().route("/items", axum::routing::get(page))).await
}

const DEMO_AUTH: &str = r#"auth = { type = "bearer", token = { env = "DEMO_API_TOKEN" } }"#;

/// Six jobs: three that sync, one the server refuses, one that stops half
/// way (with a resume point), one never run.
fn status_project(base: &str, half_broken: &str) -> Project {
    let project = Project::new();
    project
        .job(
            "halfway",
            &format!(
                "[request]\nurl = \"{half_broken}/items\"\n\
                 [pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"after\"\n\
                 [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
                 [retry]\nmax_attempts = 1\n"
            ),
        )
        .job(
            "customers",
            &format!(
                "{DEMO_AUTH}\n[request]\nurl = \"{base}/v1/customers\"\nquery = {{ limit = \"3\" }}\n\
                 [pagination]\ntype = \"cursor\"\ncursor_path = \"/meta/next_cursor\"\ncursor_param = \"cursor\"\nhas_more_path = \"/has_more\"\n\
                 [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
                 [incremental]\ncursor_field = \"/updated_at\"\ncursor_type = \"timestamp\"\nparam = \"updated_since\"\ninitial = \"2024-01-01T00:00:00Z\"\n"
            ),
        )
        .job(
            "orders",
            &format!(
                "{DEMO_AUTH}\nschedule = \"0 * * * *\"\n[request]\nurl = \"{base}/v1/orders\"\nquery = {{ per_page = \"5\" }}\n\
                 [pagination]\ntype = \"link_header\"\n[records]\npath = \"\"\nprimary_key = [\"/id\"]\n"
            ),
        )
        .job(
            "events",
            &format!(
                "{DEMO_AUTH}\n[request]\nurl = \"{base}/v1/events\"\n[pagination]\ntype = \"offset\"\nlimit = 2\ntotal_path = \"/total\"\n\
                 [records]\npath = \"/events\"\nprimary_key = [\"/id\"]\n[output]\nmode = \"replace\"\n"
            ),
        )
        .job(
            "refused",
            &format!(
                "auth = {{ type = \"bearer\", token = {{ env = \"WRONG_TOKEN\" }} }}\n[request]\nurl = \"{base}/v1/customers\"\n\
                 [pagination]\ntype = \"cursor\"\ncursor_path = \"/meta/next_cursor\"\ncursor_param = \"cursor\"\n\
                 [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n"
            ),
        )
        .job(
            "waiting",
            &format!(
                "{DEMO_AUTH}\nschedule = \"0 0 * * *\"\n[request]\nurl = \"{base}/v1/events\"\n\
                 [records]\npath = \"/events\"\nprimary_key = [\"/id\"]\n"
            ),
        );
    project
}

async fn run(project: &Project, args: &[&str]) -> Output {
    project
        .command(args)
        .env("DEMO_API_TOKEN", DEMO_TOKEN)
        .env("WRONG_TOKEN", "not-the-token")
        .output()
        .await
        .expect("run apisync")
}

/// Run times, durations, run ids and ports change from run to run; the
/// demo's own timestamps (2024) and every count do not.
fn status_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    // Same widths as the originals, so the table keeps its shape.
    let year = r"\b(?:202[5-9]|20[3-9]\d)-\d\d-\d\dT\d\d:\d\d:\d\d";
    settings.add_filter(&format!(r"{year}\.\d{{3}}Z"), "YYYY-MM-DDTHH:MM:SS.mmmZ");
    settings.add_filter(&format!(r"{year}Z"), "YYYY-MM-DDTHH:MM:SSZ");
    settings.add_filter(r"┆ \d\.\d     ┆", "┆ S.S     ┆");
    settings.add_filter(r#""id": \d+"#, r#""id": "[ID]""#);
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_job_after_a_real_sync_as_a_table_and_as_json() {
    let server = small_demo().await;
    let project = status_project(&server.base_url(), &half_broken_api().await);
    let args = ["run", "customers", "orders", "events", "refused", "halfway"];
    let synced = run(&project, &args).await;
    assert_eq!(
        synced.status.code(),
        Some(1),
        "refused fails: {}",
        describe(&synced)
    );
    assert_eq!(project.rows("customers").len(), 7);
    assert_eq!(project.rows("orders").len(), 12);
    assert_eq!(project.rows("events").len(), 5);

    let table = run(&project, &["status"]).await;
    assert!(table.status.success(), "{}", describe(&table));
    let table = String::from_utf8(table.stdout).expect("UTF-8");
    assert!(!table.contains('\u{1b}'), "no colour codes off a terminal");

    let json = run(&project, &["status", "--json"]).await;
    assert!(json.status.success(), "{}", describe(&json));
    let json = String::from_utf8(json.stdout).expect("UTF-8");
    let parsed: Value = serde_json::from_str(&json).expect("status --json is JSON");
    let jobs = parsed.as_array().expect("an array of jobs");
    assert_eq!(jobs.len(), 6);
    let customers = &jobs[0];
    assert_eq!(customers["job"], "customers");
    assert_eq!(customers["last_run"]["status"], "succeeded");
    assert_eq!(customers["last_run"]["records"], 7);
    assert_eq!(customers["rows"], 7);
    assert_eq!(
        customers["marks"][""], "2024-01-01T00:07:00Z",
        "{customers}"
    );
    let halfway = jobs
        .iter()
        .find(|j| j["job"] == "halfway")
        .expect("halfway");
    assert_eq!(halfway["last_run"]["records"], 2);
    assert_eq!(
        halfway["checkpoints"][""]["next"]["cursor"], "page-2",
        "{halfway}"
    );
    assert!(table.contains("cursor page-2 (after 1 page)"), "{table}");
    let refused = jobs
        .iter()
        .find(|j| j["job"] == "refused")
        .expect("refused");
    assert_eq!(refused["last_run"]["status"], "failed");
    let waiting = jobs
        .iter()
        .find(|j| j["job"] == "waiting")
        .expect("waiting");
    assert!(waiting["last_run"].is_null());
    assert!(
        waiting["next_due"].is_string(),
        "a scheduled job has a due time"
    );

    status_settings().bind(|| {
        insta::assert_snapshot!("status_table", table);
        insta::assert_snapshot!("status_json", json);
    });
    server.shutdown().await;
}

/// A server that answers 503 to everything, and a job that retries once
/// quickly and fails, in two partitions: WARN and ERROR lines in each.
async fn failing_project() -> (FaultServer, Project) {
    let server = FaultServer::start(FaultConfig {
        style: Style::Cursor,
        records: 10,
        page_size: 5,
        share: 1.0,
        faults: &[Fault::Status503],
        seed: 7,
        stall: std::time::Duration::from_secs(1),
        oversize_bytes: 0,
        token: common::TOKEN.to_string(),
    })
    .await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "{BEARER}\n[request]\nurl = \"{}/items\"\nquery = {{ size = \"5\", region = \"{{partition}}\" }}\n\
             [pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"after\"\n\
             [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
             [partitions]\nvalues = [\"us\", \"eu\"]\n\
             [retry]\nmax_attempts = 2\ninitial_backoff = \"10ms\"\nmax_backoff = \"20ms\"\n",
            server.base
        ),
    );
    (server, project)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_job_partition_and_run_id() {
    let (_server, project) = failing_project().await;
    let output = project.run(&["--log-format", "json", "run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8(output.stderr.clone()).expect("UTF-8");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
        })
        .collect();
    let retries: Vec<&Value> = lines.iter().filter(|l| l["level"] == "WARN").collect();
    let streams: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "stream failed")
        .collect();
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "job failed")
        .collect();
    assert!(!retries.is_empty(), "a retry is a WARN: {stderr}");
    assert_eq!(streams.len(), 2, "one per partition: {stderr}");
    assert_eq!(failed.len(), 1, "{stderr}");
    for line in retries.iter().chain(&streams).chain(&failed) {
        assert_eq!(line["job"], "items", "{line}");
        assert!(line["run_id"].as_i64().is_some_and(|id| id > 0), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    for line in retries.iter().chain(&streams) {
        let partition = line["partition"].as_str().unwrap_or_default();
        assert!(["us", "eu"].contains(&partition), "{line}");
    }
    assert_eq!(failed[0]["level"], "ERROR");
    // The summary on stdout is one JSON object too.
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let summary: Value = serde_json::from_str(stdout.trim()).expect("summary is JSON");
    assert!(summary.is_object(), "{summary}");
    assert!(!stderr.contains(common::TOKEN) && !stdout.contains(common::TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_off_a_terminal_have_no_colour_codes_in_any_format() {
    let (_server, project) = failing_project().await;
    for format in ["auto", "pretty", "json"] {
        let output = project.run(&["--log-format", format, "run"]).await;
        let text = describe(&output);
        assert!(text.contains("retrying request"), "{format}: {text}");
        assert!(!text.contains('\u{1b}'), "{format}: {text}");
    }
}

/// Under a pseudo-terminal (util-linux `script`) pretty logs are coloured,
/// unless NO_COLOR is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_turns_colour_off_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        common::tool_missing("script");
        return;
    }
    let (_server, project) = failing_project().await;
    let binary = env!("CARGO_BIN_EXE_apisync");
    let under_terminal = |no_color: bool| {
        let shell = format!("{binary} --log-format pretty run");
        let mut script = tokio::process::Command::new("script");
        script
            .args(["-qefc", &shell, "/dev/null"])
            .current_dir(project.path())
            .env("TEST_TOKEN", common::TOKEN)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        if no_color {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        script
    };
    let coloured = under_terminal(false).output().await.expect("script");
    let coloured = describe(&coloured);
    assert!(coloured.contains("retrying request"), "{coloured}");
    assert!(has_colour(&coloured), "colour on a terminal: {coloured}");
    let plain = under_terminal(true).output().await.expect("script");
    let plain = describe(&plain);
    assert!(plain.contains("retrying request"), "{plain}");
    assert!(!has_colour(&plain), "NO_COLOR: {plain}");
}

/// An SGR (colour or style) escape, `ESC [ digits;... m`. On a terminal the
/// progress display also moves the cursor (`ESC [ 1 A`, `ESC [ 2 K`), which
/// is not colour and stays with NO_COLOR.
fn has_colour(text: &str) -> bool {
    text.split("\u{1b}[").skip(1).any(|rest| {
        let end = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
        end.starts_with('m')
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_name_every_subcommand() {
    let project = Project::new();
    for (shell, marker) in [
        ("bash", "complete -F _apisync"),
        ("zsh", "#compdef apisync"),
        ("fish", "complete -c apisync"),
    ] {
        let output = project.run(&["completions", shell]).await;
        assert!(output.status.success(), "{shell}: {}", describe(&output));
        let script = String::from_utf8(output.stdout).expect("UTF-8");
        assert!(script.contains(marker), "{shell}: {script}");
        for command in [
            "run",
            "backfill",
            "validate",
            "status",
            "reset",
            "demo",
            "completions",
        ] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
        assert!(script.contains("log-format"), "{shell} lacks global flags");
    }
    let bad = project.run(&["completions", "tcsh"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
}
