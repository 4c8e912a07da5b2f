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
