//! Loading the project for a command: the plan with the command line's
//! overrides, its warnings logged, its problems printed; one job by name;
//! the clock commands read "now" from.

use super::args::{GlobalArgs, NOW_ENV};
use super::{CLI_ENV, Exit};
use crate::plan::{JobPlan, Loaded, ProjectPlan, SettingsOverrides, load_project};
use crate::run::select_jobs;

pub(crate) fn overrides(global: &GlobalArgs) -> SettingsOverrides {
    SettingsOverrides {
        database: global.db.clone(),
        concurrency: global.concurrency,
        ..SettingsOverrides::default()
    }
}

/// Load and validate the project; print diagnostics and warnings.
pub(crate) fn load(global: &GlobalArgs) -> Result<ProjectPlan, Exit> {
    match load_project(global.config.as_deref(), &overrides(global), CLI_ENV) {
        Ok(Loaded { plan, warnings }) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            Ok(plan)
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            Err(Exit::Usage)
        }
    }
}

/// The project's plan and its job `name`, for the commands that take one
/// job (`reset`, `preview`); an unknown name is a usage error.
pub(crate) fn load_one_job(
    global: &GlobalArgs,
    name: &str,
) -> Result<(ProjectPlan, JobPlan), Exit> {
    let plan = load(global)?;
    match select_jobs(&plan, &[name.to_string()], &[]) {
        Ok(jobs) => match jobs.into_iter().next() {
            Some(job) => Ok((plan, job)),
            None => {
                eprintln!("error: no job \"{name}\"");
                Err(Exit::Usage)
            }
        },
        Err(err) => {
            eprintln!("error: {err}");
            Err(Exit::Usage)
        }
    }
}

/// The current time: the system clock, or `APISYNC_NOW` (RFC 3339), which
/// exists so tests can check due times without waiting for real time.
pub(crate) fn clock() -> Result<chrono::DateTime<chrono::Utc>, String> {
    match std::env::var(NOW_ENV) {
        Err(_) => Ok(chrono::Utc::now()),
        Ok(text) => chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|err| {
                format!("{NOW_ENV}={text:?} is not an RFC 3339 time ({err}) (hint: unset it; it is meant for tests)")
            }),
    }
}
