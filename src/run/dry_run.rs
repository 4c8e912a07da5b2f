//! `run --dry-run`: the plan in words, sending nothing and changing
//! nothing. Jobs in the order they would start, their partitions, each
//! stream's first request (secrets redacted: no credential is even
//! resolved) and where it would resume. The database is only looked at:
//! a missing SQLite file is not created, and none is migrated.

use std::fmt::Write as _;

use super::error::RunError;
use super::incremental;
use super::mode::JobMode;
use super::partitions::{BATCH, Page, Pick, date_slices, parent_page, value_partition};
use crate::fetch::{HttpClient, HttpOptions, StreamFetcher, StreamPosition};
use crate::plan::{JobPlan, Partition, PartitionsPlan, ProjectPlan};
use crate::store::{StoreReader, StreamKey};

/// How many streams of one job are listed before "... and N more".
const SHOWN_STREAMS: usize = 5;

pub fn dry_run(plan: &ProjectPlan, jobs: &[JobPlan], mode: &JobMode) -> Result<String, RunError> {
    let reader = StoreReader::open_to_peek(&plan.settings.database)?;
    // A database without this version's state (new, or written by an older
    // apisync that a run would upgrade first) holds no position to show.
    let store = match reader {
        Some(reader) if reader.has_state()? => Some(reader),
        _ => None,
    };
    let store = store.as_ref();
    let http = HttpClient::new(&HttpOptions {
        concurrency: 1,
        user_agent: String::new(),
        hosts: plan.hosts.clone(),
    })?;
    let mut out = String::new();
    for (index, job) in execution_order(jobs).into_iter().enumerate() {
        let partitions = match &mode.backfill {
            Some(slices) => slices.clone(),
            None => planned_partitions(store, plan, job, !mode.full_refresh)?,
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
            let line = describe_stream(store, &http, job, partition, mode)?;
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

/// The streams `job` would run, as `run` plans them, read through `store`
/// without changing it (`run --dry-run` and `preview`). With
/// `changed_only` (what `run` does unless `--full-refresh`), a
/// `changed_only` job lists only the parents written since its last
/// finished pass started, as its next pass would; `preview` shows any.
pub(crate) fn planned_partitions(
    store: Option<&StoreReader>,
    plan: &ProjectPlan,
    job: &JobPlan,
    changed_only: bool,
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
        Some(from_job) => {
            let Some((parent, pick)) = Pick::of(from_job) else {
                unreachable!("values and dates are matched above")
            };
            let table = plan
                .jobs
                .iter()
                .find(|j| j.name == parent)
                .map_or_else(|| parent.to_string(), |j| j.output.table.clone());
            match store {
                Some(store) if store.has_table(&table)? => {
                    let since = match changed_only && from_job.changed_only_parent().is_some() {
                        true => store.last_pass_start(&job.name)?,
                        false => None,
                    };
                    every_parent_partition(store, &table, &pick, since)?
                }
                // The parent has not run yet: its table does not exist.
                _ => Vec::new(),
            }
        }
    })
}

/// Every partition a parent's table makes, read a page at a time as a
/// run reads them.
fn every_parent_partition(
    store: &StoreReader,
    table: &str,
    pick: &Pick,
    since: Option<String>,
) -> Result<Vec<Partition>, RunError> {
    let mut partitions = Vec::new();
    let mut page = Page { after: None, since };
    loop {
        let (values, found) = parent_page(store, table, pick, &page, BATCH)?;
        partitions.extend(found);
        match values.last() {
            Some(last) if values.len() == BATCH => page.after = Some(last.clone()),
            _ => return Ok(partitions),
        }
    }
}

fn describe_stream(
    store: Option<&StoreReader>,
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
    let saved = store.map(|s| s.checkpoint(&key)).transpose()?.flatten();
    let now = chrono::Utc::now();
    let position = match saved {
        Some(text) => {
            let saved = serde_json::from_str::<StreamPosition>(&text).map_err(|err| {
                RunError::BadCheckpoint {
                    job: job.name.clone(),
                    message: err.to_string(),
                }
            })?;
            incremental::resumed_position(job, partition, saved, now)
        }
        None => {
            let mark = if mode.full_refresh || mode.backfill.is_some() {
                None
            } else {
                store.map(|s| s.mark(&key)).transpose()?.flatten()
            };
            incremental::fresh_position(job, partition, mark.as_deref(), now)
        }
    };
    let position = position.map_err(RunError::window(&job.name, &partition.key))?;
    let Some(position) = position else {
        return Ok(format!(
            "{label}nothing to fetch: the mark has reached the end of the last window"
        ));
    };
    let window = match &position.window {
        Some(w) => format!(", window {} to {}", w.start, w.end),
        None => String::new(),
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
        "{label}{method} {} ({resume}{window})",
        fetcher.first_request_url()
    ))
}
