//! Reading apisync.toml and the jobs folder, and turning toml's errors into
//! file:line:column errors with a hint.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::job::JobDef;
use super::project::ProjectDef;
use super::source::SourceFile;
use super::suggest::closest;

/// Keys whose values are secrets: their values never go into a message.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "key",
    "username",
    "password",
    "client_id",
    "client_secret",
    "refresh_token",
];

const SECRET_HINT: &str =
    "write { env = \"NAME\" }, { file = \"PATH\" }, { command = [\"argv\", ...] } or a string";

/// A file that could not be read or parsed into its definition.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct LoadError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub column: usize,
    /// Dotted key path the problem is at ("" for the file).
    pub key: String,
    pub kind: LoadErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    #[error("cannot read the file")]
    Read(#[source] std::io::Error),
    #[error("{message}")]
    Parse {
        message: String,
        hint: Option<String>,
    },
    #[error("job file name `{stem}` is not a valid job name")]
    JobName { stem: String },
}

impl LoadError {
    /// What the user can do about it, if anything specific.
    pub fn hint(&self) -> Option<String> {
        match &self.kind {
            LoadErrorKind::Read(err) => Some(format!("{err}; check the path and its permissions")),
            LoadErrorKind::Parse { hint, .. } => hint.clone(),
            LoadErrorKind::JobName { .. } => {
                Some("rename it to letters, digits and `_`, not starting with a digit".into())
            }
        }
    }

    fn whole_file(path: &Path, kind: LoadErrorKind) -> Self {
        LoadError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            kind,
        }
    }
}

/// A job file, parsed.
#[derive(Debug, Clone)]
pub struct LoadedJob {
    /// The file stem.
    pub name: String,
    pub source: SourceFile,
    pub def: JobDef,
}

/// `[A-Za-z_][A-Za-z0-9_]*`: job names, tables and columns.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn read_source(path: &Path) -> Result<SourceFile, LoadError> {
    std::fs::read_to_string(path)
        .map(|text| SourceFile::new(path, text))
        .map_err(|err| LoadError::whole_file(path, LoadErrorKind::Read(err)))
}

/// apisync.toml, read and parsed.
pub fn load_project_file(path: &Path) -> Result<(SourceFile, ProjectDef), LoadError> {
    let source = read_source(path)?;
    let def = parse(&source)?;
    Ok((source, def))
}

/// Every `*.toml` directly in `dir` (not in sub folders), sorted by name.
/// A missing folder holds no jobs. Every broken file is reported, not the first.
pub fn load_jobs_dir(dir: &Path) -> (Vec<LoadedJob>, Vec<LoadError>) {
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return (jobs, errors),
        Err(err) => {
            errors.push(LoadError::whole_file(dir, LoadErrorKind::Read(err)));
            return (jobs, errors);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        match load_job_file(&path) {
            Ok(job) => jobs.push(job),
            Err(err) => errors.push(err),
        }
    }
    (jobs, errors)
}

/// One job file; its name is the file stem, which must be an identifier.
pub fn load_job_file(path: &Path) -> Result<LoadedJob, LoadError> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !is_identifier(&stem) {
        return Err(LoadError::whole_file(path, LoadErrorKind::JobName { stem }));
    }
    let source = read_source(path)?;
    let def = parse(&source)?;
    Ok(LoadedJob {
        name: stem,
        source,
        def,
    })
}

/// Parse a file's text into its definition type.
pub fn parse<T: DeserializeOwned>(source: &SourceFile) -> Result<T, LoadError> {
    toml::from_str(&source.text).map_err(|err| convert(source, &err))
}

fn convert(source: &SourceFile, err: &toml::de::Error) -> LoadError {
    let span = err.span().unwrap_or(0..0);
    let (line, column) = source.line_col(span.start);
    let table = source.table_at(&span);
    let (mut message, mut key, mut hint) = explain(err.message(), &table);
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        key = source.key_at(&span, &table);
        // serde quotes the value it got; under a secret key that may be the secret.
        let field = key.rsplit('.').next().unwrap_or_default();
        if SECRET_FIELDS.contains(&field) {
            message = format!("`{field}` is not a valid secret");
            hint = Some(SECRET_HINT.to_string());
        }
    }
    LoadError {
        path: source.path.clone(),
        line,
        column,
        key,
        kind: LoadErrorKind::Parse { message, hint },
    }
}

/// Rewrites serde's wording ("unknown field") into the format's ("unknown
/// key ... in [table]") and adds a suggestion from serde's expected list.
fn explain(message: &str, table: &str) -> (String, String, Option<String>) {
    let message = message.trim_end();
    // An unknown table (`[pagniation]`) is found at its own header: the
    // table it is unknown in is the header's parent.
    let mut table = table;
    if let Some(word) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if table == word {
            table = "";
        } else if let Some(parent) = table.strip_suffix(word).and_then(|t| t.strip_suffix('.')) {
            table = parent;
        }
    }
    let place = if table.is_empty() {
        String::new()
    } else {
        format!(" in [{table}]")
    };
    let dotted = |name: &str| {
        if table.is_empty() {
            name.to_string()
        } else {
            format!("{table}.{name}")
        }
    };
    for (prefix, noun, what) in [
        ("unknown field `", "key", "keys"),
        ("unknown variant `", "value", "values"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (word, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let valid = backticked(expected);
            let hint = match closest(word, valid.iter().map(String::as_str)) {
                Some(near) => Some(format!("did you mean `{near}`?")),
                None if valid.is_empty() => None,
                None => Some(format!("valid {what}: {}", valid.join(", "))),
            };
            let key = if noun == "key" {
                dotted(word)
            } else {
                table.to_string()
            };
            return (format!("unknown {noun} `{word}`{place}"), key, hint);
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let word = rest.split('`').next().unwrap_or(rest);
        return (format!("missing key `{word}`{place}"), dotted(word), None);
    }
    (format!("{message}{place}"), table.to_string(), None)
}

/// The `quoted` words of "expected one of `a`, `b`".
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests;
