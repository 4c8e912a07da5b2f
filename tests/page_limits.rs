//! Limits on what a server can make apisync do: an oversize page (streamed
//! without a Content-Length, so only a limit enforced while reading stops
//! it), a page nested thousands of levels deep, and a stream that stalls
//! past `--stall-timeout` each fail their own job with a clear error naming
//! the page URL, keep the pages before it and its checkpoint, and leave the
//! other jobs running. The next run completes every table.

mod common;

use std::time::{Duration, Instant};

use common::faults::{API_KEY, Extras, Fault, FaultConfig, FaultServer, Style, assert_no_secret};
use common::{BEARER, Project, TOKEN, describe};

/// Bytes the oversize page would have in full.
const OVERSIZE: usize = 64 << 20;

async fn server(style: Style, script: Vec<(usize, Fault)>) -> FaultServer {
    let config = FaultConfig {
        style,
        oversize_bytes: OVERSIZE,
        // Far past any timeout of the test: only the watchdog ends it.
        stall: Duration::from_secs(3600),
        ..FaultConfig::default()
    };
    let extras = Extras {
        script,
        ..Extras::default()
    };
    FaultServer::start_with(config, extras).await
}

/// The job for `server`, with a request timeout far above the stall timeout.
fn job_text(server: &FaultServer) -> String {
    let pagination = server.job_pagination();
    let (request, rest) = pagination.split_once("[pagination]").expect("pagination");
    format!(
        "{BEARER}\n{request}timeout = \"1h\"\n[pagination]{rest}[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\nmax_page_bytes = 100000\n[retry]\nmax_attempts = 3\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\n"
    )
}

/// The one line of `text` that names `job` and holds every piece.
fn assert_error_line(text: &str, job: &str, pieces: &[&str]) {
    let named = format!("job \"{job}\"");
    let found = text
        .lines()
        .any(|line| line.contains(&named) && pieces.iter().all(|p| line.contains(p)));
    assert!(found, "no line names {named} with {pieces:?}:\n{text}");
}

fn checkpoint(project: &Project, job: &str) -> Option<serde_json::Value> {
    let db = project.open();
    let text: Option<String> = db
        .query_row(
            "SELECT position FROM _apisync_checkpoints WHERE job = ?1",
            [job],
            |row| row.get(0),
        )
        .ok();
    text.map(|t| serde_json::from_str(&t).expect("checkpoint JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_deep_and_stalled_pages_fail_their_job_and_leave_others_running() {
    let huge = server(Style::Cursor, vec![(2, Fault::Oversize)]).await;
    let deep = server(Style::Offset, vec![(2, Fault::DeepNesting)]).await;
    let stalled = server(Style::Page, vec![(2, Fault::Stall)]).await;
    let fine = server(Style::LinkHeader, Vec::new()).await;
    let project = Project::new();
    // One request at a time to the offset and page servers: they would
    // otherwise fetch pages ahead, and the scripted second request could
    // be any page after the first.
    let one_at_a_time = |server: &FaultServer| {
        let host = server.base.trim_start_matches("http://").to_string();
        format!("[hosts.\"{host}\"]\nconcurrency = 1\n")
    };
    project.config(&(one_at_a_time(&deep) + &one_at_a_time(&stalled)));
    for (name, server) in [
        ("huge", &huge),
        ("deep", &deep),
        ("stalled", &stalled),
        ("fine", &fine),
    ] {
        project.job(name, &job_text(server));
    }
    let started = Instant::now();
    let output = project
        .command(&["-vv", "run", "--stall-timeout", "1s"])
        .env("RUST_LOG", "trace")
        .output()
        .await
        .expect("run apisync");
    let text = describe(&output);
    assert_no_secret(&text, &[TOKEN, API_KEY]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the stalled stream waited its full stall timeout"
    );

    assert_error_line(
        &text,
        "huge",
        &[
            "larger than 100000 bytes",
            &format!("{}/items?", huge.base),
            "after=10",
        ],
    );
    assert!(
        huge.oversize_sent() < 16 << 20,
        "the body was cut off while reading: {} of {OVERSIZE} bytes produced",
        huge.oversize_sent()
    );
    assert_error_line(
        &text,
        "deep",
        &[
            "deeper than 100 levels",
            &format!("{}/items?", deep.base),
            "offset=10",
        ],
    );
    assert_error_line(
        &text,
        "stalled",
        &[
            "no page completed for 1s",
            &format!("{}/items?", stalled.base),
            "page=2",
            "--stall-timeout",
        ],
    );

    assert_eq!(project.rows("fine"), fine.data(), "the other job completed");
    for (job, next) in [
        (
            "huge",
            serde_json::json!({"type": "cursor", "cursor": "10"}),
        ),
        ("deep", serde_json::json!({"type": "offset", "offset": 10})),
        ("stalled", serde_json::json!({"type": "page", "page": 2})),
    ] {
        assert_eq!(project.rows(job).len(), 10, "{job}: page 1 stays committed");
        let saved = checkpoint(&project, job).unwrap_or_else(|| panic!("{job} kept a checkpoint"));
        assert_eq!(
            saved["next"], next,
            "{job}: the checkpoint is the failed page"
        );
    }

    // The scripted faults were for the second request only: a rerun resumes.
    let output = project.run(&["run", "--stall-timeout", "1s"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    for (job, server) in [("huge", &huge), ("deep", &deep), ("stalled", &stalled)] {
        let mut rows = project.rows(job);
        rows.sort_by_key(|r| r["id"].as_u64());
        assert_eq!(rows, server.data(), "{job} completed on the rerun");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_timeout_that_is_not_a_duration_is_a_usage_error() {
    let project = Project::new();
    let output = project.run(&["run", "--stall-timeout", "soon"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("--stall-timeout"), "{text}");
}
