//! The core promise under random crashes: a multi-job sync (cursor, Link
//! header, page, offset and next-URL pagination; merge, append and replace;
//! one job over three partitions) is SIGKILLed at random moments and rerun
//! each time, on SQLite and on PostgreSQL. After every kill each checkpoint
//! points at the page that follows the committed ones, and every table holds
//! exactly what was committed: merge and append tables exactly the pages
//! before their checkpoint (plus earlier finished passes), a replace table
//! nothing or the whole data, never part of it. At the end every table
//! equals the server's data and append tables hold no duplicate.
//!
//! Kills are triggered by the servers' request count (never by sleeping)
//! from a seeded generator whose seed is printed; set `APISYNC_KILL_SEED`
//! to replay a run. `APISYNC_KILL_LOOPS` sets the number of kills: 10 by
//! default (what CI runs), 25 for a longer run (`APISYNC_KILL_LOOPS=25
//! cargo test --test kill_loop`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use common::databases::{Backend, TestDatabase};
use common::faults::{Extras, FaultConfig, FaultServer, Hits, Style, assert_no_secret};
use common::{BEARER, Project, TOKEN, describe};
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;

const RECORDS: u64 = 150;
const PAGE: u64 = 10;
/// Kills in a CI run; APISYNC_KILL_LOOPS overrides it.
const DEFAULT_LOOPS: usize = 10;
/// The partitions of the partitioned job; each reads the whole data.
const PARTITIONS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Merge,
    Append,
    Replace,
}

struct Job {
    name: &'static str,
    style: Style,
    mode: Mode,
    partitioned: bool,
    server: FaultServer,
}

fn job_text(job: &Job) -> String {
    let output = match job.mode {
        // Incremental on the id: a finished stream asks only for newer
        // records, so a rerun after it appends nothing twice.
        Mode::Append => {
            "[incremental]\ncursor_field = \"/id\"\ncursor_type = \"integer\"\nparam = \"since\"\n[output]\nmode = \"append\"\n"
        }
        Mode::Merge => "[output]\nmode = \"merge\"\n",
        Mode::Replace => "[output]\nmode = \"replace\"\n",
    };
    let key = match job.mode {
        Mode::Merge => "primary_key = [\"/id\"]\n",
        Mode::Append | Mode::Replace => "",
    };
    let mut pagination = job.server.job_pagination();
    let mut partitions = String::new();
    if job.partitioned {
        // Every partition asks the same server (which ignores `region`), so
        // each appends the whole data once.
        pagination = pagination.replace("query = { ", "query = { region = \"{partition}\", ");
        let values: Vec<String> = PARTITIONS.iter().map(|p| format!("\"{p}\"")).collect();
        partitions = format!("[partitions]\nvalues = [{}]\n", values.join(", "));
    }
    format!("{BEARER}\n{pagination}{partitions}[records]\npath = \"/data\"\n{key}{output}")
}

async fn jobs(hits: &Hits) -> Vec<Job> {
    let specs = [
        ("cursor_merge", Style::Cursor, Mode::Merge, false),
        ("link_merge", Style::LinkHeader, Mode::Merge, false),
        ("page_merge", Style::Page, Mode::Merge, false),
        ("offset_append", Style::Offset, Mode::Append, false),
        ("next_append", Style::NextUrl, Mode::Append, false),
        ("page_replace", Style::Page, Mode::Replace, false),
        ("cursor_parts", Style::Cursor, Mode::Append, true),
    ];
    let mut jobs = Vec::new();
    for (name, style, mode, partitioned) in specs {
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
            mode,
            partitioned,
            server,
        });
    }
    jobs
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Sorted ids of `table`, duplicates kept; empty when the table does not
/// exist (yet).
fn ids(db: &TestDatabase, table: &str) -> Vec<u64> {
    if !table_exists(db, table) {
        return Vec::new();
    }
    let mut ids: Vec<u64> = db
        .rows(table)
        .iter()
        .map(|r| r["id"].as_u64().expect("an integer id"))
        .collect();
    ids.sort();
    ids
}

fn table_exists(db: &TestDatabase, table: &str) -> bool {
    let query = match db {
        TestDatabase::Sqlite(_) => {
            format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
        }
        TestDatabase::Postgres(_) => format!(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
    };
    db.scalar(&query).as_deref() != Some("0")
}

/// (job, partition) -> saved position.
fn checkpoints(db: &TestDatabase) -> BTreeMap<(String, String), Value> {
    db.query("SELECT job, partition, position FROM _apisync_checkpoints")
        .into_iter()
        .map(|row| {
            let text = |i: usize| row[i].clone().expect("checkpoint columns are not NULL");
            let position = serde_json::from_str(&text(2)).expect("checkpoint JSON");
            ((text(0), text(1)), position)
        })
        .collect()
}

/// (job, partition) -> the incremental mark (the largest id of a finished
/// pass).
fn marks(db: &TestDatabase) -> BTreeMap<(String, String), u64> {
    db.query("SELECT job, partition, value FROM _apisync_marks")
        .into_iter()
        .map(|row| {
            let text = |i: usize| row[i].clone().expect("mark columns are not NULL");
            let value: Value = serde_json::from_str(&text(2)).unwrap_or(Value::String(text(2)));
            let mark = match value {
                Value::String(s) => s.parse().expect("an integer mark"),
                other => other.as_u64().expect("an integer mark"),
            };
            ((text(0), text(1)), mark)
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

/// How many records before the next page a checkpoint says were committed
/// (its window starts after `since`), checked against its page count.
fn committed_by(job: &Job, position: &Value, context: &str) -> (u64, u64) {
    let since = match &position["since"] {
        Value::String(s) => s.parse::<u64>().expect("integer since"),
        Value::Null => 0,
        other => other.as_u64().expect("integer since"),
    };
    let window = RECORDS - since;
    // A finished stream leaves no checkpoint, so a saved `next` is always
    // the request after the last committed page.
    let committed = next_position(job.style, &position["next"]);
    let pages = position["pages"].as_u64().expect("pages");
    assert_eq!(
        committed,
        (pages * PAGE).min(window),
        "{context}: {} checkpoint {position} counts {pages} pages",
        job.name
    );
    (since, committed)
}

/// What the loop has seen of each job across rounds.
#[derive(Default)]
struct Seen {
    /// Merge jobs that finished a pass: their table holds every record from
    /// then on.
    finished_once: BTreeSet<&'static str>,
}

/// Every checkpoint follows exactly the pages committed before it, and every
/// table holds exactly what was committed; returns how many checkpoints
/// were checked.
fn assert_tables_hold_exactly_the_committed_pages(
    db: &TestDatabase,
    jobs: &[Job],
    seen: &mut Seen,
    context: &str,
) -> usize {
    let saved = checkpoints(db);
    let marks = marks(db);
    let all: Vec<u64> = (1..=RECORDS).collect();
    for job in jobs {
        let ids = ids(db, job.name);
        let partitions: Vec<&str> = match job.partitioned {
            true => PARTITIONS.to_vec(),
            false => vec![""],
        };
        // How far each partition's records reach: its committed pages, or
        // its mark when no pass is under way.
        let mut reach = Vec::new();
        for partition in &partitions {
            let key = (job.name.to_string(), partition.to_string());
            let covered = match saved.get(&key) {
                Some(position) => {
                    let (since, committed) = committed_by(job, position, context);
                    since + committed
                }
                None => marks.get(&key).copied().unwrap_or(0),
            };
            reach.push((covered, saved.contains_key(&key)));
        }
        match job.mode {
            Mode::Append => {
                // Each id once per partition whose committed pages reach it.
                let mut expected: Vec<u64> =
                    reach.iter().flat_map(|(covered, _)| 1..=*covered).collect();
                expected.sort();
                assert_eq!(
                    ids, expected,
                    "{context}: {} holds exactly the committed pages, once",
                    job.name
                );
            }
            Mode::Merge => {
                let (covered, in_pass) = reach[0];
                let expected: Vec<u64> = match (seen.finished_once.contains(job.name), in_pass) {
                    (true, _) => all.clone(),
                    (false, true) => (1..=covered).collect(),
                    // No pass under way: nothing yet, or a pass finished.
                    (false, false) if ids.is_empty() => Vec::new(),
                    (false, false) => {
                        seen.finished_once.insert(job.name);
                        all.clone()
                    }
                };
                assert_eq!(
                    ids,
                    expected,
                    "{context}: {} holds exactly the committed pages (finished before: {})",
                    job.name,
                    seen.finished_once.contains(job.name)
                );
                if !ids.is_empty() {
                    let mut rows = db.rows(job.name);
                    rows.sort_by_key(|r| r["id"].as_u64());
                    let server = job.server.data();
                    assert_eq!(rows, server[..rows.len()], "{context}: {}", job.name);
                }
            }
            Mode::Replace => {
                // The swap is atomic: the table is absent or whole.
                if table_exists(db, job.name) {
                    let mut rows = db.rows(job.name);
                    rows.sort_by_key(|r| r["id"].as_u64());
                    assert_eq!(
                        rows,
                        job.server.data(),
                        "{context}: {} holds the whole data or nothing",
                        job.name
                    );
                }
            }
        }
    }
    saved.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_then_reruns_end_with_exactly_the_server_data_on_sqlite() {
    kill_loop(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_then_reruns_end_with_exactly_the_server_data_on_postgres() {
    kill_loop(Backend::Postgres).await;
}

async fn kill_loop(backend: Backend) {
    let loops = env_number("APISYNC_KILL_LOOPS").map_or(DEFAULT_LOOPS, |n| n as usize);
    let seed = env_number("APISYNC_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
    });
    let project = Project::new();
    let Some(db) = TestDatabase::new(backend, project.path()) else {
        return;
    };
    project.config(&format!("database = \"{}\"\n", db.setting()));
    println!(
        "kill loop on {backend:?}: {loops} kills, seed {seed} (replay with APISYNC_KILL_SEED={seed})"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let hits = Hits::default();
    let jobs = jobs(&hits).await;
    for job in &jobs {
        project.job(job.name, &job_text(job));
    }
    let log = project.path().join("run.log");
    let mut seen = Seen::default();
    let (mut killed, mut finished, mut checked) = (0, 0, 0);
    for round in 1..=loops {
        let context = format!("{backend:?}, seed {seed}, round {round}");
        let after = rng.random_range(1..=60);
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
        child.wait().await.expect("the killed run is gone");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_no_secret(&text, &[TOKEN]);
        checked += assert_tables_hold_exactly_the_committed_pages(&db, &jobs, &mut seen, &context);
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
    assert!(checkpoints(&db).is_empty(), "every stream finished");
    for job in &jobs {
        let copies = match job.partitioned {
            true => PARTITIONS.len(),
            false => 1,
        };
        let mut expected: Vec<u64> = (1..=RECORDS).flat_map(|id| vec![id; copies]).collect();
        expected.sort();
        assert_eq!(
            ids(&db, job.name),
            expected,
            "seed {seed}: {} equals the server's data, no duplicate",
            job.name
        );
        if job.mode != Mode::Append {
            let mut rows = db.rows(job.name);
            rows.sort_by_key(|r| r["id"].as_u64());
            assert_eq!(rows, job.server.data(), "seed {seed}: {}", job.name);
        }
    }
}
