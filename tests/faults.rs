//! Under injected faults of every kind, jobs of every pagination type end
//! with tables equal to the server's data: transient faults are retried
//! within one run; faults that fail a stream (HTML, oversize pages,
//! repeated cursors) are survived by the next run, which resumes from the
//! last committed page. No secret reaches the output at trace level.

mod common;

use std::time::Duration;

use common::faults::{ALL, Fault, FaultConfig, FaultServer, Style, TRANSIENT};
use common::{BEARER, Project, TOKEN, describe};

const STYLES: [Style; 5] = [
    Style::Cursor,
    Style::NextUrl,
    Style::LinkHeader,
    Style::Offset,
    Style::Page,
];

fn config(style: Style, faults: &'static [Fault], seed: u64) -> FaultConfig {
    FaultConfig {
        style,
        records: 120,
        page_size: 10,
        share: 0.15,
        faults,
        seed,
        stall: Duration::from_secs(3),
        oversize_bytes: 300_000,
        token: TOKEN.to_string(),
    }
}

/// The job file with `timeout` inside [request].
fn job_text(server: &FaultServer) -> String {
    let pagination = server.job_pagination();
    let (request, rest) = pagination
        .split_once("[pagination]")
        .expect("a [pagination] table");
    format!(
        "{BEARER}\n{request}timeout = \"1s\"\n[pagination]{rest}[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\nmax_page_bytes = 100000\n[retry]\nmax_attempts = 8\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\n"
    )
}

fn assert_table_equals_server(project: &Project, table: &str, server: &FaultServer) {
    let mut rows = project.rows(table);
    rows.sort_by_key(|r| r["id"].as_u64());
    assert_eq!(
        rows,
        server.data(),
        "table {table} equals the server's data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_within_one_run_for_every_pagination_type() {
    let project = Project::new();
    let mut servers = Vec::new();
    for (seed, style) in STYLES.into_iter().enumerate() {
        let server = FaultServer::start(config(style, TRANSIENT, seed as u64 + 1)).await;
        project.job(&format!("job_{seed}"), &job_text(&server));
        servers.push(server);
    }
    let output = project
        .command(&["run"])
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap();
    let text = describe(&output);
    assert!(output.status.success(), "{text}");
    let injected: usize = servers.iter().map(|s| s.injected().len()).sum();
    assert!(injected > 0, "faults were injected");
    for (index, server) in servers.iter().enumerate() {
        assert_table_equals_server(&project, &format!("job_{index}"), server);
    }
    assert!(!text.contains(TOKEN), "no token at trace level");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_is_survived_by_rerunning() {
    let project = Project::new();
    let mut servers = Vec::new();
    for (seed, style) in STYLES.into_iter().enumerate() {
        let server = FaultServer::start(config(style, ALL, 100 + seed as u64)).await;
        project.job(&format!("job_{seed}"), &job_text(&server));
        servers.push(server);
    }
    let mut runs = 0;
    loop {
        runs += 1;
        let output = project
            .command(&["run"])
            .env("RUST_LOG", "trace")
            .output()
            .await
            .unwrap();
        let text = describe(&output);
        assert!(!text.contains(TOKEN), "no token at trace level");
        match output.status.code() {
            Some(0) => break,
            Some(1) => assert!(runs < 40, "still failing after {runs} runs: {text}"),
            other => panic!("unexpected exit {other:?}: {text}"),
        }
    }
    for (index, server) in servers.iter().enumerate() {
        assert_table_equals_server(&project, &format!("job_{index}"), server);
    }
    let injected: Vec<Fault> = servers.iter().flat_map(|s| s.injected()).collect();
    for kind in [Fault::Html, Fault::Oversize, Fault::RepeatCursor] {
        assert!(
            injected.contains(&kind),
            "{kind:?} was injected at least once"
        );
    }
}
