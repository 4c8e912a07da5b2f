//! `run --dry-run`: the plan in words, sending nothing. Jobs in the order
//! they would start, their partitions, each stream's first request (secrets
//! redacted: no credential is even resolved) and where it would resume.

use std::fmt::Write as _;

use super::partitions::{date_slices, value_partition};
use super::{JobMode, RunError, incremental};
use crate::fetch::{HttpClient, HttpOptions, StreamFetcher, StreamPosition};
use crate::plan::{JobPlan, Partition, PartitionsPlan, ProjectPlan};
use crate::store::{Store, StreamKey};

/// How many streams of one job are listed before "... and N more".
const SHOWN_STREAMS: usize = 5;

pub fn dry_run(plan: &ProjectPlan, jobs: &[JobPlan], mode: &JobMode) -> Result<String, RunError> {
    let store = Store::open(&plan.settings.database)?;
    let http = HttpClient::new(&HttpOptions {
        concurrency: 1,
        user_agent: String::new(),
        hosts: plan.hosts.clone(),
    })?;
    let mut out = String::new();
    for (index, job) in execution_order(jobs).into_iter().enumerate() {
        let partitions = match &mode.backfill {
            Some(slices) => slices.clone(),
            None => planned_partitions(&store, plan, job)?,
        };
        let auth = job
            .auth
            .as_deref()
            .map(|a| format!(", auth \"{a}\""))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}. {} -> table \"{}\" ({:?}{auth}), {} stream(s)",
            index + 1,
            job.name,
            job.output.table,
            job.output.mode,
            partitions.len()
        );
        for partition in partitions.iter().take(SHOWN_STREAMS) {
            let line = describe_stream(&store, &http, job, partition, mode)?;
            let _ = writeln!(out, "   {line}");
        }
        if partitions.len() > SHOWN_STREAMS {
            let _ = writeln!(out, "   ... and {} more", partitions.len() - SHOWN_STREAMS);
        }
    }
    Ok(out)
}

/// Jobs sorted so that each comes after the selected jobs it depends on.
pub(crate) fn execution_order(jobs: &[JobPlan]) -> Vec<&JobPlan> {
    let mut ordered: Vec<&JobPlan> = Vec::with_capacity(jobs.len());
    let mut left: Vec<&JobPlan> = jobs.iter().collect();
    while !left.is_empty() {
        let ready = left.iter().position(|job| {
            job.depends_on
                .iter()
                .all(|dep| !left.iter().any(|other| &other.name == dep))
        });
        // Validation rejects cycles; should one slip through, keep file order.
        ordered.push(left.remove(ready.unwrap_or(0)));
    }
    ordered
}

fn planned_partitions(
    store: &Store,
    plan: &ProjectPlan,
    job: &JobPlan,
) -> Result<Vec<Partition>, RunError> {
    let failed = |message: String| RunError::Partitions {
        job: job.name.clone(),
        message,
    };
    Ok(match &job.partitions {
        None => vec![Partition::whole()],
        Some(PartitionsPlan::Values(values)) => values.iter().map(|v| value_partition(v)).collect(),
        Some(PartitionsPlan::Dates { from, to, step }) => {
            date_slices(from, to, *step, chrono::Utc::now()).map_err(failed)?
        }
        Some(PartitionsPlan::FromJob { job: parent, field }) => {
            let table = plan
                .jobs
                .iter()
                .find(|j| &j.name == parent)
                .map(|j| j.output.table.clone());
            let table = table.unwrap_or_else(|| parent.clone());
            match store.distinct_values(&table, field) {
                Ok(values) => values.iter().map(|v| value_partition(v)).collect(),
                // The parent has not run yet: its table does not exist.
                Err(_) => Vec::new(),
            }
        }
    })
}

fn describe_stream(
    store: &Store,
    http: &HttpClient,
    job: &JobPlan,
    partition: &Partition,
    mode: &JobMode,
) -> Result<String, RunError> {
    let key = StreamKey::new(job.name.clone(), partition.key.clone());
    let label = if partition.key.is_empty() {
        String::new()
    } else {
        format!("[{}] ", partition.key)
    };
    let position = match store.load_checkpoint(&key)? {
        Some(text) => serde_json::from_str::<StreamPosition>(&text).map_err(|err| {
            RunError::BadCheckpoint {
                job: job.name.clone(),
                message: err.to_string(),
            }
        })?,
        None => {
            let mark = if mode.full_refresh || mode.backfill.is_some() {
                None
            } else {
                store.load_mark(&key)?
            };
            StreamPosition::start(incremental::since(job, mark.as_deref()))
        }
    };
    let resume = match position.pages {
        0 => "from the start".to_string(),
        pages => format!("resuming after {pages} committed page(s)"),
    };
    let fetcher = StreamFetcher::new(
        http.clone(),
        std::sync::Arc::new(job.clone()),
        partition.clone(),
        None,
        position,
    )?;
    let method = match job.request.method {
        crate::plan::HttpMethod::Get => "GET",
        crate::plan::HttpMethod::Post => "POST",
    };
    Ok(format!(
        "{label}{method} {} ({resume})",
        fetcher.first_request_url()
    ))
}
