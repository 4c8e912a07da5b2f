//! `load_project`: read apisync.toml and the jobs folder, layer the
//! settings, plan everything, and return every problem at once.

use std::path::{Path, PathBuf};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::project::build;
use super::settings::{SettingsOverrides, layer};
use crate::definition::{LoadErrorKind, ProjectDef, SourceFile, load_jobs_dir, load_project_file};
use crate::plan::ProjectPlan;

/// A planned project and what is worth telling the user about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub plan: ProjectPlan,
    /// Rendered like diagnostics: plain secrets in files, stray `APISYNC_*`.
    pub warnings: Vec<String>,
}

/// The folder a project's relative paths start from: that of `config`, or
/// the current directory.
pub fn project_root(config: Option<&Path>) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    match config {
        Some(path) => cwd
            .join(path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(cwd),
        None => cwd,
    }
}

/// `config`: explicit apisync.toml path; None = ./apisync.toml if it exists,
/// else a project rooted at the current directory with defaults.
pub fn load_project(
    config: Option<&Path>,
    overrides: &SettingsOverrides,
    known_env: &[&str],
) -> Result<Loaded, Diagnostics> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load_project_with_env(config, overrides, &env, known_env)
}

/// Same, but with the environment given explicitly (for tests).
pub fn load_project_with_env(
    config: Option<&Path>,
    overrides: &SettingsOverrides,
    env: &[(String, String)],
    known_env: &[&str],
) -> Result<Loaded, Diagnostics> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let config_path = match config {
        Some(path) => Some(cwd.join(path)),
        None => Some(cwd.join("apisync.toml")).filter(|p| p.is_file()),
    };
    let root = project_root(config_path.as_deref());
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut warnings = Vec::new();
    // A broken apisync.toml is reported, and the jobs are still checked
    // against defaults so that one pass shows everything.
    let project: Option<(SourceFile, ProjectDef)> = config_path.as_deref().and_then(|path| {
        load_project_file(path)
            .map_err(|err| out.push(Diagnostic::from(&err)))
            .ok()
    });
    let settings = layer(
        project.as_ref().map(|(_, d)| d),
        &root,
        overrides,
        env,
        known_env,
        &mut out,
        &mut warnings,
    );
    let jobs_dir = root.join(&settings.jobs_dir);
    let (jobs, errors) = load_jobs_dir(&jobs_dir);
    out.extend(errors.iter().map(Diagnostic::from));
    let config = project.as_ref().map(|(s, d)| (s, d));
    let unparsed: Vec<String> = errors
        .iter()
        .filter(|e| matches!(e.kind, LoadErrorKind::Parse { .. }))
        .filter_map(|e| e.path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let plan = build(
        config,
        settings,
        &jobs,
        &unparsed,
        env,
        &mut out,
        &mut warnings,
    );
    match plan {
        Some(plan) if out.is_empty() => Ok(Loaded { plan, warnings }),
        _ => {
            out.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            Err(Diagnostics(out))
        }
    }
}
