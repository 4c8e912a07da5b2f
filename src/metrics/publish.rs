//! The end of a run: render the summary, write the file, push the groups.
//! A file that cannot be written is an error (the user asked for it and a
//! stale file would hide the run); a push that fails is a WARN: the data
//! is synced, and a monitoring outage must not fail a sync job.

use std::collections::HashMap;
use std::path::PathBuf;

use url::Url;

use super::{JobLabel, JobView, MetricsError, group_url, push, render, write_atomically};
use crate::run::RunSummary;
use crate::store::Store;

/// Where the metrics of a run go (`--metrics-file`, `--pushgateway`).
#[derive(Debug, Clone, Default)]
pub struct MetricsTargets {
    pub file: Option<PathBuf>,
    pub pushgateway: Option<Url>,
}

impl MetricsTargets {
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.pushgateway.is_none()
    }
}

/// Write and push the metrics of `summary`. Push failures are logged as
/// WARN and not returned.
pub async fn publish(
    targets: &MetricsTargets,
    summary: &RunSummary,
    last_success: &HashMap<String, f64>,
) -> Result<(), MetricsError> {
    let views: Vec<JobView<'_>> = summary
        .jobs
        .iter()
        .map(|job| JobView {
            summary: job,
            last_success: last_success.get(&job.job).copied(),
        })
        .collect();
    if let Some(base) = &targets.pushgateway {
        let shard = summary.shard.as_ref().map(|shard| shard.index);
        push_groups(base, &views, shard).await;
    }
    match &targets.file {
        Some(path) => write_atomically(path, &render(&views, JobLabel::Include)),
        None => Ok(()),
    }
}

async fn push_groups(base: &Url, views: &[JobView<'_>], shard: Option<u32>) {
    let client = match reqwest::Client::builder()
        .timeout(super::PUSH_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(error = %err, "cannot build the Pushgateway client; metrics not pushed");
            return;
        }
    };
    for view in views {
        let body = render(std::slice::from_ref(view), JobLabel::Omit);
        let pushed = match group_url(base, &view.summary.job, shard) {
            Ok(url) => push(&client, &url, body).await,
            Err(err) => Err(err),
        };
        if let Err(err) = pushed {
            tracing::warn!(job = %view.summary.job, error = %err, "metrics not pushed");
        }
    }
}

/// Unix seconds when each job's last successful run started, from the
/// runs table (this run's included: it is recorded before metrics are
/// written). A read error leaves the figures out, with a WARN.
pub fn last_success_times(
    summary: &RunSummary,
    database: &crate::plan::Database,
) -> HashMap<String, f64> {
    let jobs: Vec<&str> = summary.jobs.iter().map(|j| j.job.as_str()).collect();
    match Store::open(database).and_then(|store| store.last_success_starts(&jobs)) {
        Ok(starts) => starts
            .into_iter()
            .filter_map(|(job, at)| {
                let at = chrono::DateTime::parse_from_rfc3339(&at).ok()?;
                Some((job, at.timestamp_millis() as f64 / 1000.0))
            })
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the last successful runs for metrics");
            HashMap::new()
        }
    }
}
