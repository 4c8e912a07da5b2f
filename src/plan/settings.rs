//! Runtime settings, layered: apisync.toml, then `APISYNC_*` environment
//! variables (through the `config` crate), then command-line flags.
//!
//! The file is parsed with serde + toml first (for its error locations);
//! `config` only reads the environment layer, where its lowercasing of keys
//! is what we want.

use std::path::{Path, PathBuf};

use super::database::{Database, DatabaseArg};
use super::diagnostics::Diagnostic;
use crate::definition::ProjectDef;
use crate::definition::suggest::closest;
use crate::plan::Settings;

const SETTING_KEYS: &[&str] = &["database", "jobs_dir", "concurrency", "job_concurrency"];

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default)]
pub struct SettingsOverrides {
    pub database: Option<DatabaseArg>,
    pub jobs_dir: Option<PathBuf>,
    pub concurrency: Option<usize>,
    pub job_concurrency: Option<usize>,
}

/// `root` is the folder of apisync.toml (or the project directory without one).
pub(crate) fn layer(
    file: Option<&ProjectDef>,
    root: &Path,
    overrides: &SettingsOverrides,
    env: &[(String, String)],
    known_env: &[&str],
    out: &mut Vec<Diagnostic>,
    warnings: &mut Vec<String>,
) -> Settings {
    let file_path = |value: Option<&toml::Spanned<String>>, default: &str| {
        root.join(value.map_or(default, |v| v.get_ref().as_str()))
    };
    let database = file.and_then(|f| f.database.as_ref());
    let mut settings = Settings {
        database: database_setting(
            database.map_or("apisync.db", |v| v.get_ref().as_str()),
            root,
            out,
        ),
        jobs_dir: file_path(file.and_then(|f| f.jobs_dir.as_ref()), "jobs"),
        concurrency: file
            .and_then(|f| f.concurrency.as_ref())
            .map_or(8, |c| *c.get_ref()),
        job_concurrency: file
            .and_then(|f| f.job_concurrency.as_ref())
            .map_or(4, |c| *c.get_ref()),
    };
    warn_unknown(env, known_env, warnings);
    apply_env(&mut settings, env, out);
    if let Some(v) = &overrides.database {
        // As given on the command line: relative to the working directory.
        settings.database = database_setting(v.expose(), Path::new(""), out);
    }
    if let Some(v) = &overrides.jobs_dir {
        settings.jobs_dir = v.clone();
    }
    settings.concurrency = overrides.concurrency.unwrap_or(settings.concurrency);
    settings.job_concurrency = overrides
        .job_concurrency
        .unwrap_or(settings.job_concurrency);
    for (name, value) in [
        ("concurrency", settings.concurrency),
        ("job_concurrency", settings.job_concurrency),
    ] {
        if value == 0 {
            out.push(setting_error(
                name,
                format!("`{name}` must be at least 1"),
                None,
            ));
        }
    }
    settings
}

/// A `database` value: a `postgres://` URL, or a SQLite path joined to
/// `base`. A bad URL is reported (password hidden) and the default file kept,
/// so validation goes on to report everything else too.
fn database_setting(value: &str, base: &Path, out: &mut Vec<Diagnostic>) -> Database {
    Database::from_setting(value, base).unwrap_or_else(|err| {
        out.push(setting_error("database", err.to_string(), None));
        Database::sqlite(base.join("apisync.db"))
    })
}

fn setting_error(name: &str, message: String, hint: Option<String>) -> Diagnostic {
    Diagnostic {
        file: PathBuf::from("settings"),
        line: 0,
        column: 0,
        job: None,
        key: name.to_string(),
        message,
        hint,
    }
}

fn apply_env(settings: &mut Settings, env: &[(String, String)], out: &mut Vec<Diagnostic>) {
    let vars: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| {
            SETTING_KEYS
                .iter()
                .any(|s| k.eq_ignore_ascii_case(&format!("APISYNC_{s}")))
        })
        .cloned()
        .collect();
    let source = config::Environment::with_prefix("APISYNC").source(Some(vars));
    let layer = match config::Config::builder().add_source(source).build() {
        Ok(layer) => layer,
        Err(err) => {
            out.push(setting_error(
                "environment",
                format!("cannot read APISYNC_* variables: {err}"),
                None,
            ));
            return;
        }
    };
    if let Ok(v) = layer.get_string("database") {
        settings.database = database_setting(&v, Path::new(""), out);
    }
    if let Ok(v) = layer.get_string("jobs_dir") {
        settings.jobs_dir = PathBuf::from(v);
    }
    for (key, slot) in [
        ("concurrency", &mut settings.concurrency),
        ("job_concurrency", &mut settings.job_concurrency),
    ] {
        let Ok(text) = layer.get_string(key) else {
            continue;
        };
        match text.trim().parse::<usize>() {
            Ok(n) => *slot = n,
            Err(_) => {
                let var = format!("APISYNC_{}", key.to_uppercase());
                let mut d = setting_error(
                    key,
                    format!("`{var}` \"{text}\" is not a number"),
                    Some("set it to a whole number such as 4".into()),
                );
                d.file = PathBuf::from(var);
                out.push(d);
            }
        }
    }
}

/// Environments carry strays: unknown `APISYNC_*` names are warnings only.
fn warn_unknown(env: &[(String, String)], known_env: &[&str], warnings: &mut Vec<String>) {
    let valid: Vec<String> = SETTING_KEYS
        .iter()
        .map(|s| format!("APISYNC_{}", s.to_uppercase()))
        .collect();
    for (name, _) in env {
        let upper = name.to_uppercase();
        if !upper.starts_with("APISYNC_")
            || valid.contains(&upper)
            || known_env.iter().any(|k| k.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let candidates = valid
            .iter()
            .map(String::as_str)
            .chain(known_env.iter().copied());
        let hint = closest(&upper, candidates)
            .map_or_else(String::new, |n| format!(" (hint: did you mean `{n}`?)"));
        warnings.push(format!(
            "environment: unknown variable `{name}` is ignored{hint}"
        ));
    }
}
