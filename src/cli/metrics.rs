//! `--metrics-file` and `--pushgateway` at the end of `run` and `backfill`.

use super::args::MetricsArgs;
use crate::metrics::{MetricsTargets, last_success_times};
use crate::plan::ProjectPlan;
use crate::run::RunSummary;

/// Write and push the run's metrics. False when the metrics file could not
/// be written (the run then exits 1); a failed push is only a WARN.
pub async fn publish(plan: &ProjectPlan, summary: &RunSummary, args: &MetricsArgs) -> bool {
    let targets = MetricsTargets {
        file: args.metrics_file.clone(),
        pushgateway: args.pushgateway.clone(),
    };
    if targets.is_empty() {
        return true;
    }
    let last = last_success_times(summary, &plan.settings.database);
    match crate::metrics::publish(&targets, summary, &last).await {
        Ok(()) => true,
        Err(err) => {
            eprintln!("error: {err}");
            false
        }
    }
}
