//! `apisync status`: per job, the last run, the rows in its table, where an
//! unfinished stream will resume, the high-water mark and the next due time.
//! A table for people, `--json` for scripts. Nothing here can hold a secret:
//! positions are stored without credentials.

use chrono::{DateTime, Utc};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use super::args::{GlobalArgs, StatusArgs};
use super::{Exit, project};
use crate::fetch::{NextRequest, StreamPosition};
use crate::run::{next_due, select_jobs};
use crate::store::{JobStatus, RunRecord, RunStatus, Store, StoreError};

#[derive(Debug, Serialize)]
struct StatusLine {
    #[serde(flatten)]
    stored: JobStatus,
    next_due: Option<String>,
    /// Newest first; only for jobs named on the command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    recent_runs: Option<Vec<RunRecord>>,
}

pub fn show(global: &GlobalArgs, args: &StatusArgs) -> Exit {
    let plan = match project::load(global) {
        Ok(plan) => plan,
        Err(exit) => return exit,
    };
    let jobs = match select_jobs(&plan, &args.jobs, &[]) {
        Ok(jobs) => jobs,
        Err(err) => {
            eprintln!("error: {err}");
            return Exit::Usage;
        }
    };
    let pairs: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.output.table.as_str()))
        .collect();
    // Named jobs also get their recent runs (none when every job is shown).
    let history_of = |store: &Store| -> Result<Vec<Vec<RunRecord>>, StoreError> {
        match args.jobs.is_empty() {
            true => Ok(Vec::new()),
            false => jobs
                .iter()
                .map(|j| store.recent_runs(&j.name, args.runs))
                .collect(),
        }
    };
    let read = Store::open(&plan.settings.database)
        .and_then(|store| Ok((store.status(&pairs)?, history_of(&store)?)));
    let (stored, histories) = match read {
        Ok(read) => read,
        Err(err) => {
            eprintln!("error: {err}");
            return Exit::Failed;
        }
    };
    let now = match project::clock() {
        Ok(now) => now,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    let mut histories = histories.into_iter();
    let lines: Vec<StatusLine> = stored
        .into_iter()
        .zip(&jobs)
        .map(|(stored, job)| {
            let last = stored
                .last_success_started_at
                .as_deref()
                .and_then(parse_time);
            let due = next_due(job.schedule.as_deref(), last, now)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            StatusLine {
                stored,
                next_due: due,
                recent_runs: histories.next(),
            }
        })
        .collect();
    if args.json {
        match serde_json::to_value(&lines)
            .map(parse_stored_json)
            .and_then(|v| serde_json::to_string_pretty(&v))
        {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("error: {err}");
                return Exit::Failed;
            }
        }
    } else {
        println!("{}", render(&lines));
        for line in &lines {
            if let Some(runs) = &line.recent_runs {
                print!("\n{}", super::history::render(&line.stored.job, runs));
            }
        }
    }
    Exit::Ok
}

/// Marks and checkpoints are stored as JSON text; scripts get them as JSON
/// values rather than strings to parse again.
fn parse_stored_json(mut lines: serde_json::Value) -> serde_json::Value {
    for line in lines.as_array_mut().into_iter().flatten() {
        for key in ["marks", "checkpoints"] {
            for value in line[key]
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
            {
                if let Some(parsed) = value.as_str().and_then(|t| serde_json::from_str(t).ok()) {
                    *value = parsed;
                }
            }
        }
    }
    lines
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn render(lines: &[StatusLine]) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "job",
        "last run",
        "started",
        "seconds",
        "records",
        "rows",
        "resume",
        "high-water mark",
        "next due",
    ]);
    for line in lines {
        let s = &line.stored;
        let run = s.last_run.as_ref();
        table.add_row([
            s.job.clone(),
            run.map(|r| r.status.as_str().to_string())
                .unwrap_or_else(|| "never".into()),
            run.map(|r| r.started_at.clone()).unwrap_or_default(),
            run.and_then(|r| seconds(&r.started_at, r.finished_at.as_deref()))
                .unwrap_or_default(),
            run.map(|r| r.records.to_string()).unwrap_or_default(),
            s.rows.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            resume_point(s),
            marks(s),
            line.next_due.clone().unwrap_or_else(|| "every run".into()),
        ]);
    }
    table.to_string()
}

fn seconds(started: &str, finished: Option<&str>) -> Option<String> {
    let elapsed = parse_time(finished?)? - parse_time(started)?;
    Some(format!("{:.1}", elapsed.num_milliseconds() as f64 / 1000.0))
}

/// Where an unfinished stream continues, in words.
fn resume_point(status: &JobStatus) -> String {
    let describe = |text: &str| match serde_json::from_str::<StreamPosition>(text) {
        Ok(position) => {
            let next = match position.next {
                NextRequest::Start => "start".to_string(),
                NextRequest::Url { url } => url,
                NextRequest::Cursor { cursor } => format!("cursor {cursor}"),
                NextRequest::Offset { offset } => format!("offset {offset}"),
                NextRequest::Page { page } => format!("page {page}"),
            };
            let plural = if position.pages == 1 { "" } else { "s" };
            format!("{next} (after {} page{plural})", position.pages)
        }
        Err(_) => "unreadable checkpoint".to_string(),
    };
    match status.checkpoints.len() {
        0 if status.last_run.is_none() => "-".into(),
        0 if !status.finished_partitions.is_empty() => {
            format!("{} partitions done", status.finished_partitions.len())
        }
        // Stopped before its first page was committed: the next run starts over.
        0 if status
            .last_run
            .as_ref()
            .is_some_and(|r| r.status != RunStatus::Succeeded) =>
        {
            "start".into()
        }
        0 => "complete".into(),
        1 => status
            .checkpoints
            .iter()
            .map(|(p, pos)| label(p, &describe(pos)))
            .collect(),
        n => format!("{n} partitions unfinished"),
    }
}

fn label(partition: &str, text: &str) -> String {
    if partition.is_empty() {
        text.to_string()
    } else {
        format!("{partition}: {text}")
    }
}

fn marks(status: &JobStatus) -> String {
    match status.marks.len() {
        0 => "-".into(),
        1 => status
            .marks
            .iter()
            .map(|(p, m)| label(p, m.trim_matches('"')))
            .collect(),
        n => format!("{n} partitions"),
    }
}
