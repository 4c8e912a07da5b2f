//! SIGTERM and SIGINT while a request hangs: the process commits what is
//! complete and exits 143 (130 for SIGINT) within 5 seconds; the next run
//! completes the data. No secret reaches the output at trace level.

mod common;

use std::time::Duration;

use common::faults::{Extras, Fault, FaultConfig, FaultServer, Style, assert_no_secret};
use common::{BEARER, Project, TOKEN, describe};

/// How long the process may take to exit after the signal (issue 6).
const EXIT_BOUND: Duration = Duration::from_secs(5);

fn job_text(server: &FaultServer) -> String {
    format!(
        "{BEARER}\n{}[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n",
        server.job_pagination()
    )
}

async fn signal_then_rerun(signal: &str, code: i32) {
    // The fourth request hangs (body never ends), so the run is mid-page
    // when the signal arrives.
    let hanging = FaultConfig {
        style: Style::Cursor,
        stall: Duration::from_secs(3600),
        ..FaultConfig::default()
    };
    let script = Extras {
        script: vec![(4, Fault::Stall)],
        ..Extras::default()
    };
    let hanging = FaultServer::start_with(hanging, script).await;
    let other = FaultConfig {
        style: Style::LinkHeader,
        ..FaultConfig::default()
    };
    let slow = Extras {
        delay: Duration::from_millis(50),
        ..Extras::default()
    };
    let other = FaultServer::start_with(other, slow).await;
    let project = Project::new();
    project.job("hanging", &job_text(&hanging));
    project.job("other", &job_text(&other));
    let child = project
        .command(&["-vv", "run"])
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn apisync");
    let pid = child.id().expect("a running child");
    hanging.hits().wait_for(4).await;
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}");
    // A bound on shutdown is the property under test, not a speed measure.
    let output = tokio::time::timeout(EXIT_BOUND, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("still running {EXIT_BOUND:?} after SIG{signal}"))
        .expect("wait for apisync");
    let text = describe(&output);
    assert_no_secret(&text, &[TOKEN]);
    assert_eq!(output.status.code(), Some(code), "{text}");
    assert!(text.contains("interrupted"), "the summary says so: {text}");
    assert_eq!(
        project.rows("hanging").len(),
        30,
        "the three complete pages were committed"
    );

    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    for (job, server) in [("hanging", &hanging), ("other", &other)] {
        let mut rows = project.rows(job);
        rows.sort_by_key(|r| r["id"].as_u64());
        assert_eq!(rows, server.data(), "{job} complete after the rerun");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_143_within_5_seconds_and_the_next_run_completes() {
    signal_then_rerun("TERM", 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_130_within_5_seconds_and_the_next_run_completes() {
    signal_then_rerun("INT", 130).await;
}

/// A cursor API whose third page is held until the test releases it.
struct HeldThirdPage {
    hits: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

async fn held_page(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<HeldThirdPage>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    use std::sync::atomic::Ordering;
    let n = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 3 {
        state.arrived.notify_one();
        state.release.notified().await;
    }
    // Six pages, so a process that ignored the signal would end by itself
    // (and fail the count below) instead of fetching forever.
    let page: u64 = query
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let data: Vec<_> = (0..10)
        .map(|i| serde_json::json!({"id": page * 10 + i}))
        .collect();
    let next = (page < 5).then(|| (page + 1).to_string());
    axum::Json(serde_json::json!({"data": data, "meta": {"next_cursor": next}}))
}

/// After SIGTERM the process starts no new request, even when a response
/// arrives after the signal, and its run row reads `interrupted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_starts_no_new_request_and_records_the_run_as_interrupted() {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncBufReadExt;
    let state = std::sync::Arc::new(HeldThirdPage {
        hits: Default::default(),
        arrived: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let app = axum::Router::new()
        .route("/v1/customers", axum::routing::get(held_page))
        .with_state(state.clone());
    let base = common::serve(app).await;
    let project = Project::new();
    project.job("endless", &common::demo_customers_job(&base, ""));
    let mut child = project
        .command(&["-v", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn apisync");
    let pid = child.id().expect("a running child");
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    state.arrived.notified().await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    // The log line is written once the stop is in force: only then does the
    // held page go out, so a request after it would be one started after
    // the signal.
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(EXIT_BOUND, stderr.next_line())
            .await
            .expect("the stop is logged")
            .expect("read stderr")
            .expect("stderr open until the stop is logged");
        let stopping = line.contains("stopping: no new requests");
        seen.push(line);
        if stopping {
            break;
        }
    }
    state.release.notify_one();
    let rest = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push(line);
        }
        rest
    });
    let status = tokio::time::timeout(EXIT_BOUND, child.wait()).await;
    let _ = child.start_kill();
    let status = status
        .expect("exits after the signal")
        .expect("wait for apisync");
    seen.extend(rest.await.expect("stderr reader"));
    let log = seen.join("\n");
    assert_eq!(status.code(), Some(143), "{log}");
    assert_eq!(
        state.hits.load(Ordering::SeqCst),
        3,
        "no request after the signal: {log}"
    );
    // The held page may commit (it completed) or not (it was in flight when
    // the stop came): whole pages either way, never more.
    let kept = project.rows("endless").len();
    assert!(
        kept == 20 || kept == 30,
        "whole pages kept, no more: {kept}"
    );
    let output = project.run(&["status", "--json"]).await;
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("status --json is JSON");
    assert_eq!(
        report[0]["last_run"]["status"],
        "interrupted",
        "{}",
        describe(&output)
    );
}
