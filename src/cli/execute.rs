//! Running jobs for a command (`run`, `backfill`, `demo`): signals, the
//! token store, the progress display, the summary and the exit code.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::args::{GlobalArgs, MetricsArgs};
use super::{Exit, signals};
use crate::auth::TokenStore;
use crate::plan::ProjectPlan;
use crate::run::{JobMode, RunSummary};
use crate::token_store::DbTokenStore;

/// Run with signal handling, print the summary, pick the exit code.
pub(crate) async fn execute(
    global: &GlobalArgs,
    plan: &ProjectPlan,
    jobs: Vec<crate::plan::JobPlan>,
    mode: JobMode,
    metrics: &MetricsArgs,
) -> Exit {
    let cancel = CancellationToken::new();
    let stopped = signals::watch(cancel.clone());
    let tokens: Arc<dyn TokenStore> = match DbTokenStore::open(&plan.settings.database) {
        Ok(store) => Arc::new(store),
        Err(err) => {
            eprintln!("error: {err}");
            return Exit::Failed;
        }
    };
    let display = super::progress::start();
    let progress: Arc<dyn crate::run::Progress> = match &display {
        Some(display) => display.clone(),
        None => Arc::new(crate::run::NoProgress),
    };
    let result = crate::run::execute_observed(plan, jobs, mode, cancel, tokens, progress).await;
    // The bars leave the terminal before the summary is printed.
    if let Some(display) = display {
        display.finish();
    }
    match result {
        Ok(summary) => {
            print_summary(global, &summary);
            let written = super::metrics::publish(plan, &summary, metrics).await;
            match exit_for(&summary, stopped.exit()) {
                Exit::Ok if !written => Exit::Failed,
                exit => exit,
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            stopped.exit().unwrap_or(Exit::Failed)
        }
    }
}

/// A table for people; one JSON object (one line) in JSON log mode.
fn print_summary(global: &GlobalArgs, summary: &RunSummary) {
    if global.log_format == super::LogFormat::Json {
        match serde_json::to_string(summary) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("error: cannot print the summary: {err}"),
        }
    } else {
        print!("{}", summary.render());
    }
}

fn exit_for(summary: &RunSummary, signal: Option<Exit>) -> Exit {
    match signal {
        Some(exit) => exit,
        None if summary.any_failed() => Exit::Failed,
        None if summary.any_interrupted() => Exit::Interrupted,
        None => Exit::Ok,
    }
}
