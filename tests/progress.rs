//! The live progress display: drawn on a terminal (a pseudo-terminal from
//! util-linux `script`), with log lines still whole beside it; absent with
//! `-q`, with JSON logs, and whenever stderr is not a terminal.

mod common;

use std::process::Output;
use std::time::Duration;

use apisync::demo::{DEMO_TOKEN, DemoConfig, DemoServer};
use common::{Project, describe};

/// Two jobs that sync in a few slow pages, and one the API refuses (an
/// ERROR log line while the others still run).
async fn project() -> (DemoServer, Project) {
    let config = DemoConfig {
        customers: 20,
        orders: 12,
        events: 5,
        delay: Duration::from_millis(30),
        ..DemoConfig::default()
    };
    let server = DemoServer::bind(0, config).await.expect("bind demo API");
    let base = server.base_url();
    let auth = r#"auth = { type = "bearer", token = { env = "DEMO_API_TOKEN" } }"#;
    let project = Project::new();
    project
        .job(
            "customers",
            &format!(
                "{auth}\n[request]\nurl = \"{base}/v1/customers\"\nquery = {{ limit = \"5\" }}\n\
                 [pagination]\ntype = \"cursor\"\ncursor_path = \"/meta/next_cursor\"\ncursor_param = \"cursor\"\nhas_more_path = \"/has_more\"\n\
                 [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n"
            ),
        )
        .job(
            "orders",
            &format!(
                "{auth}\n[request]\nurl = \"{base}/v1/orders\"\nquery = {{ per_page = \"5\" }}\n\
                 [pagination]\ntype = \"link_header\"\n[records]\npath = \"\"\nprimary_key = [\"/id\"]\n"
            ),
        )
        .job(
            "refused",
            &format!(
                "auth = {{ type = \"bearer\", token = {{ env = \"WRONG_TOKEN\" }} }}\n\
                 [request]\nurl = \"{base}/v1/events\"\n[records]\npath = \"/events\"\nprimary_key = [\"/id\"]\n"
            ),
        );
    (server, project)
}

/// What only the display draws: its line texts and its spinner.
fn display_marks(text: &str) -> Vec<&'static str> {
    ["total: ", "/s), ", " running, ", "⠋", "⠙"]
        .into_iter()
        .filter(|mark| text.contains(mark))
        .collect()
}

/// `apisync ARGS run` with stderr (and stdout) on a pseudo-terminal, or
/// None when util-linux `script` is missing.
async fn under_terminal(project: &Project, args: &str) -> Option<Output> {
    let shell = format!("{} {args} run", env!("CARGO_BIN_EXE_apisync"));
    let output = tokio::process::Command::new("script")
        .args(["-qefc", &shell, "/dev/null"])
        .current_dir(project.path())
        .env("DEMO_API_TOKEN", DEMO_TOKEN)
        .env("WRONG_TOKEN", "not-the-token")
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    Some(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_each_stream_and_the_total_are_drawn_and_logs_stay_whole() {
    let (_server, project) = project().await;
    let Some(output) = under_terminal(&project, "").await else {
        common::tool_missing("script");
        return;
    };
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "refused fails: {text}");
    assert!(text.contains("customers: "), "a line for customers: {text}");
    assert!(text.contains("orders: "), "a line for orders: {text}");
    assert!(text.contains("total: "), "a total line: {text}");
    assert!(text.contains("/s), "), "a rate: {text}");
    // The ERROR line printed while bars were up: the bars were cleared
    // before it and drawn again after its newline, never inside it.
    let (_, from_log) = text.split_once("job failed").expect("the ERROR line");
    let rest_of_line = from_log.split('\n').next().unwrap_or_default();
    assert!(rest_of_line.contains("refused"), "{rest_of_line}");
    assert_eq!(display_marks(rest_of_line), Vec::<&str>::new(), "{text}");
    // The summary comes after the bars were cleared, and counts everything.
    assert_eq!(project.rows("customers").len(), 20);
    assert_eq!(project.rows("orders").len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_and_json_logs_turn_the_display_off_on_a_terminal() {
    let (_server, project) = project().await;
    for args in ["-q", "--log-format json"] {
        let Some(output) = under_terminal(&project, args).await else {
            common::tool_missing("script");
            return;
        };
        let text = describe(&output);
        assert_eq!(output.status.code(), Some(1), "{args}: {text}");
        assert!(text.contains("refused"), "{args}: the run happened: {text}");
        assert_eq!(display_marks(&text), Vec::<&str>::new(), "{args}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_terminal_there_is_no_display_in_any_log_format() {
    let (_server, project) = project().await;
    for format in ["auto", "pretty", "json"] {
        let output = project
            .command(&["--log-format", format, "run"])
            .env("DEMO_API_TOKEN", DEMO_TOKEN)
            .env("WRONG_TOKEN", "not-the-token")
            .env("RUST_LOG", "info")
            .output()
            .await
            .expect("run apisync");
        let text = describe(&output);
        assert_eq!(output.status.code(), Some(1), "{format}: {text}");
        assert!(
            text.contains("job failed"),
            "{format}: logs still flow: {text}"
        );
        assert_eq!(display_marks(&text), Vec::<&str>::new(), "{format}: {text}");
        assert!(!text.contains('\r'), "{format}: no redraws: {text}");
    }
}
