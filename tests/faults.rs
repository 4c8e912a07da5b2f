//! Under injected faults of every kind, jobs of every pagination type end
//! with tables equal to the server's data: transient faults are retried
//! within one run; faults that fail a stream (HTML, a wrong content type,
//! oversize pages, deep nesting, repeated cursors) are survived by the next
//! run, which resumes from the last committed page. At trace level (`-vv`
//! and `RUST_LOG=trace`) no secret reaches the output, raw or URL-encoded:
//! neither the bearer token nor an api_key sent in the query.

mod common;

use std::time::Duration;

use common::faults::{
    ALL, API_KEY, Extras, Fault, FaultConfig, FaultServer, Style, TRANSIENT, assert_no_secret,
};
use common::{BEARER, Project, TOKEN, describe};

const STYLES: [Style; 5] = [
    Style::Cursor,
    Style::NextUrl,
    Style::LinkHeader,
    Style::Offset,
    Style::Page,
];

/// api_key auth in the query, reading the key from the environment.
const QUERY_KEY: &str =
    r#"auth = { type = "api_key", query = "api_key", key = { env = "TEST_API_KEY" } }"#;

fn config(style: Style, faults: &'static [Fault], seed: u64) -> FaultConfig {
    FaultConfig {
        style,
        share: 0.15,
        faults,
        seed,
        // Past the job's 1 s request timeout.
        stall: Duration::from_secs(3),
        oversize_bytes: 300_000,
        ..FaultConfig::default()
    }
}

/// The job file with `timeout` inside [request].
fn job_text(server: &FaultServer, auth: &str) -> String {
    let pagination = server.job_pagination();
    let (request, rest) = pagination
        .split_once("[pagination]")
        .expect("a [pagination] table");
    format!(
        "{auth}\n{request}timeout = \"1s\"\n[pagination]{rest}[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\nmax_page_bytes = 100000\n[retry]\nmax_attempts = 8\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\n"
    )
}

/// One server and job per pagination style; odd ones use the query api_key.
/// Besides the random share, every kind of `faults` is scripted once on
/// some server (on its 2nd, 4th, ... request), so each kind is exercised
/// whatever the seeds draw.
async fn jobs(project: &Project, faults: &'static [Fault], seed: u64) -> Vec<FaultServer> {
    let mut servers = Vec::new();
    for (index, style) in STYLES.into_iter().enumerate() {
        let mut config = config(style, faults, seed + index as u64);
        let script = faults
            .iter()
            .skip(index)
            .step_by(STYLES.len())
            .enumerate()
            .map(|(n, fault)| (2 * n + 2, *fault))
            .collect();
        let auth = match index % 2 {
            0 => BEARER,
            _ => {
                config.token = API_KEY.to_string();
                QUERY_KEY
            }
        };
        let extras = Extras {
            script,
            ..Extras::default()
        };
        let server = FaultServer::start_with(config, extras).await;
        project.job(&format!("job_{index}"), &job_text(&server, auth));
        servers.push(server);
    }
    servers
}

/// `apisync -vv run` at trace level; fails the test if a secret shows.
async fn traced_run(project: &Project) -> std::process::Output {
    let output = project
        .command(&["-vv", "run"])
        .env("RUST_LOG", "trace")
        .env("TEST_API_KEY", API_KEY)
        .output()
        .await
        .expect("run apisync");
    assert_no_secret(&describe(&output), &[TOKEN, API_KEY]);
    output
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
    let servers = jobs(&project, TRANSIENT, 1).await;
    let output = traced_run(&project).await;
    assert!(output.status.success(), "{}", describe(&output));
    let injected: usize = servers.iter().map(|s| s.injected().len()).sum();
    assert!(injected > 0, "faults were injected");
    for (index, server) in servers.iter().enumerate() {
        assert_table_equals_server(&project, &format!("job_{index}"), server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_is_survived_by_rerunning() {
    let project = Project::new();
    let servers = jobs(&project, ALL, 100).await;
    let mut runs = 0;
    loop {
        runs += 1;
        let output = traced_run(&project).await;
        match output.status.code() {
            Some(0) => break,
            Some(1) => assert!(
                runs < 40,
                "still failing after {runs} runs: {}",
                describe(&output)
            ),
            other => panic!("unexpected exit {other:?}: {}", describe(&output)),
        }
    }
    for (index, server) in servers.iter().enumerate() {
        assert_table_equals_server(&project, &format!("job_{index}"), server);
    }
    let injected: Vec<Fault> = servers.iter().flat_map(|s| s.injected()).collect();
    for kind in ALL {
        assert!(
            injected.contains(kind),
            "{kind:?} was injected at least once (change the seeds if not)"
        );
    }
}
