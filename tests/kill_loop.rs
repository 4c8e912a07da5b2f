//! The core promise under random crashes: a multi-job sync (cursor, Link
//! header, page and next-URL pagination; merge and append) is SIGKILLed at
//! random moments and rerun each time. After every kill each checkpoint
//! points at the page that follows the committed ones; at the end every
//! table equals the server's data and append tables hold no duplicate.
//!
//! Kills are triggered by the servers' request count (never by sleeping)
//! from a seeded generator whose seed is printed; set `APISYNC_KILL_SEED`
//! to replay a run. `APISYNC_KILL_LOOPS` sets the number of kills: small by
//! default for CI, 25 for a full run (`APISYNC_KILL_LOOPS=25 cargo test
//! --test kill_loop`).

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::faults::{Extras, FaultConfig, FaultServer, Hits, Style, assert_no_secret};
use common::{BEARER, Project, TOKEN, describe};
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;

const RECORDS: u64 = 150;
const PAGE: u64 = 10;
/// Kills in a CI run; APISYNC_KILL_LOOPS overrides it.
const DEFAULT_LOOPS: usize = 5;

struct Job {
    name: &'static str,
    style: Style,
    append: bool,
    server: FaultServer,
}

fn job_text(job: &Job) -> String {
    let output = match job.append {
        // Incremental on the id: a finished stream asks only for newer
        // records, so a rerun after it appends nothing twice.
        true => {
            "[incremental]\ncursor_field = \"/id\"\ncursor_type = \"integer\"\nparam = \"since\"\n[output]\nmode = \"append\"\n"
        }
        false => "[output]\nmode = \"merge\"\n",
    };
    let key = match job.append {
        true => "",
        false => "primary_key = [\"/id\"]\n",
    };
    format!(
        "{BEARER}\n{}[records]\npath = \"/data\"\n{key}{output}",
        job.server.job_pagination()
    )
}

async fn jobs(hits: &Hits) -> Vec<Job> {
    let specs = [
        ("cursor_merge", Style::Cursor, false),
        ("link_merge", Style::LinkHeader, false),
        ("page_merge", Style::Page, false),
        ("offset_append", Style::Offset, true),
        ("next_append", Style::NextUrl, true),
    ];
    let mut jobs = Vec::new();
    for (name, style, append) in specs {
        let config = FaultConfig {
            style,
            records: RECORDS,
            page_size: PAGE,
            ..FaultConfig::default()
        };
        let extras = Extras {
            delay: Duration::from_millis(2),
            hits: hits.clone(),
            ..Extras::default()
        };
        let server = FaultServer::start_with(config, extras).await;
        jobs.push(Job {
            name,
            style,
            append,
            server,
        });
    }
    jobs
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Sorted ids of `table`, duplicates kept.
fn ids(project: &Project, table: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = project
        .rows(table)
        .iter()
        .map(|r| r["id"].as_u64().expect("an integer id"))
        .collect();
    ids.sort();
    ids
}

fn checkpoints(project: &Project) -> BTreeMap<String, Value> {
    let db = project.open();
    let mut statement = db
        .prepare("SELECT job, position FROM _apisync_checkpoints")
        .expect("checkpoints table");
    statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("query")
        .map(|row| {
            let (job, text) = row.expect("row");
            (job, serde_json::from_str(&text).expect("checkpoint JSON"))
        })
        .collect()
}

/// The window position (records of the window before the next page) that
/// a checkpoint's `next` names.
fn next_position(style: Style, next: &Value) -> u64 {
    let number = |v: &Value| match v {
        Value::String(s) => s.parse::<u64>().ok(),
        other => other.as_u64(),
    };
    if next["type"] == "start" {
        return 0;
    }
    let found = match style {
        Style::Cursor => number(&next["cursor"]),
        Style::Offset => number(&next["offset"]),
        Style::Page => number(&next["page"]).map(|p| (p - 1) * PAGE),
        Style::NextUrl | Style::LinkHeader => next["url"].as_str().and_then(|url| {
            url::Url::parse(url)
                .ok()?
                .query_pairs()
                .find(|(k, _)| k == "from")
                .and_then(|(_, v)| v.parse().ok())
        }),
    };
    found.unwrap_or_else(|| panic!("{style:?}: cannot read the checkpoint's next {next}"))
}

/// Every checkpoint follows exactly the pages committed before it; returns
/// how many were checked.
fn assert_checkpoints_follow_committed_pages(
    project: &Project,
    jobs: &[Job],
    context: &str,
) -> usize {
    let saved = checkpoints(project);
    for job in jobs {
        let Some(position) = saved.get(job.name) else {
            continue;
        };
        let since = match &position["since"] {
            Value::String(s) => s.parse::<u64>().expect("integer since"),
            Value::Null => 0,
            other => other.as_u64().expect("integer since"),
        };
        let window = RECORDS - since;
        let at = next_position(job.style, &position["next"]);
        // After the last page the saved `next` is that page's own request.
        let committed = match position["last_page_committed"] == Value::Bool(true) {
            true => (at + PAGE).min(window),
            false => at,
        };
        let pages = position["pages"].as_u64().expect("pages");
        assert_eq!(
            committed,
            (pages * PAGE).min(window),
            "{context}: {} checkpoint {position} counts {pages} pages",
            job.name
        );
        let ids = ids(project, job.name);
        let through: Vec<u64> = (1..=since + committed).collect();
        if job.append {
            assert_eq!(
                ids, through,
                "{context}: {} holds exactly the committed pages, once",
                job.name
            );
        } else {
            let present: std::collections::BTreeSet<u64> = ids.into_iter().collect();
            assert!(
                through.iter().all(|id| present.contains(id)),
                "{context}: {} is missing records before its checkpoint {position}",
                job.name
            );
        }
    }
    saved.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_then_reruns_end_with_exactly_the_server_data() {
    let loops = env_number("APISYNC_KILL_LOOPS").map_or(DEFAULT_LOOPS, |n| n as usize);
    let seed = env_number("APISYNC_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
    });
    println!("kill loop: {loops} kills, seed {seed} (replay with APISYNC_KILL_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let hits = Hits::default();
    let jobs = jobs(&hits).await;
    let project = Project::new();
    for job in &jobs {
        project.job(job.name, &job_text(job));
    }
    let log = project.path().join("run.log");
    let (mut killed, mut finished, mut checked) = (0, 0, 0);
    for round in 1..=loops {
        let context = format!("seed {seed}, round {round}");
        let after = rng.random_range(1..=40);
        let target = hits.count() + after;
        let file = std::fs::File::create(&log).expect("log file");
        let mut child = project
            .command(&["-vv", "run"])
            .env("RUST_LOG", "trace")
            .env_remove("APISYNC_KILL_LOOPS")
            .env_remove("APISYNC_KILL_SEED")
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn apisync");
        tokio::select! {
            _ = hits.wait_for(target) => {
                child.kill().await.expect("SIGKILL");
                killed += 1;
            }
            status = child.wait() => {
                let status = status.expect("wait");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(status.success(), "{context}: a run that was not killed failed: {text}");
                finished += 1;
            }
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_no_secret(&text, &[TOKEN]);
        checked += assert_checkpoints_follow_committed_pages(&project, &jobs, &context);
    }
    println!(
        "kill loop: {killed} killed, {finished} finished by themselves, {checked} checkpoints checked"
    );
    assert!(
        killed > 0 && checked > 0,
        "the kills left checkpoints to check"
    );

    let output = project.run(&["run"]).await;
    assert!(
        output.status.success(),
        "seed {seed}: {}",
        describe(&output)
    );
    assert!(checkpoints(&project).is_empty(), "every stream finished");
    for job in &jobs {
        let expected: Vec<u64> = (1..=RECORDS).collect();
        assert_eq!(
            ids(&project, job.name),
            expected,
            "seed {seed}: {} equals the server's data, no duplicate",
            job.name
        );
        if !job.append {
            let mut rows = project.rows(job.name);
            rows.sort_by_key(|r| r["id"].as_u64());
            assert_eq!(rows, job.server.data(), "seed {seed}: {}", job.name);
        }
    }
}
