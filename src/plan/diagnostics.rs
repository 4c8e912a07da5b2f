//! Validation problems with their place: every problem of every file is
//! collected, then shown one per line with a count at the end.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::definition::{LoadError, SourceFile};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the file (or variable) as a whole.
    pub line: usize,
    pub column: usize,
    pub job: Option<String>,
    /// Dotted key path, such as `pagination.limit`.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Every problem found, in file order. Empty never leaves `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl std::error::Error for Diagnostics {}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", display_path(&self.file).display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if let Some(job) = &self.job {
            write!(f, "job \"{job}\": ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.0 {
            writeln!(f, "{diagnostic}")?;
        }
        let errors = self.0.len();
        let mut files: Vec<&Path> = self.0.iter().map(|d| d.file.as_path()).collect();
        files.sort();
        files.dedup();
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        write!(
            f,
            "{} in {}",
            plural(errors, "error"),
            plural(files.len(), "file")
        )
    }
}

/// `path` relative to the current directory when it is under it: shorter,
/// and what the user typed.
pub(crate) fn display_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

impl From<&LoadError> for Diagnostic {
    fn from(err: &LoadError) -> Self {
        let job = err
            .path
            .extension()
            .filter(|_| err.path.file_name().is_some_and(|n| n != "apisync.toml"))
            .and(err.path.file_stem())
            .map(|s| s.to_string_lossy().into_owned());
        Diagnostic {
            file: err.path.clone(),
            line: err.line,
            column: err.column,
            job,
            key: err.key.clone(),
            message: err.to_string(),
            hint: err.hint(),
        }
    }
}

/// Collects problems (and warnings) of one file, located from spans.
pub(crate) struct Sink<'a> {
    pub source: &'a SourceFile,
    pub job: Option<&'a str>,
    pub out: &'a mut Vec<Diagnostic>,
    pub warnings: &'a mut Vec<String>,
}

impl Sink<'_> {
    /// The folder relative paths of this file resolve against.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// A warning at a value, rendered like a diagnostic.
    pub fn warn_at(&mut self, span: Range<usize>, key: &str, message: &str) {
        let (line, column) = self.source.line_col(span.start);
        let diagnostic = Diagnostic {
            file: self.source.path.clone(),
            line,
            column,
            job: self.job.map(str::to_string),
            key: key.to_string(),
            message: message.to_string(),
            hint: None,
        };
        self.warnings.push(diagnostic.to_string());
    }

    /// A problem at a value, not recorded: one the plan carries for later
    /// (see `RequestPlan::missing_env`).
    pub fn located(
        &self,
        span: Range<usize>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, column) = self.source.line_col(span.start);
        self.diagnostic(line, column, key, message, hint)
    }

    /// A problem at a value of the file.
    pub fn at<T>(
        &mut self,
        value: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.at_span(value.span(), key, message, hint);
    }

    pub fn at_span(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, column) = self.source.line_col(span.start);
        self.push(line, column, key, message.into(), hint);
    }

    /// A problem of the file as a whole (a required table is missing).
    pub fn file(&mut self, key: &str, message: impl Into<String>, hint: Option<String>) {
        self.push(0, 0, key, message.into(), hint);
    }

    fn push(
        &mut self,
        line: usize,
        column: usize,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        let diagnostic = self.diagnostic(line, column, key, message, hint);
        self.out.push(diagnostic);
    }

    fn diagnostic(
        &self,
        line: usize,
        column: usize,
        key: &str,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: self.source.path.clone(),
            line,
            column,
            job: self.job.map(str::to_string),
            key: key.to_string(),
            message,
            hint,
        }
    }
}
