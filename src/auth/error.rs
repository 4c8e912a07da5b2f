//! Errors of the auth stage. None of them carries a secret value: only the
//! names of variables, files and commands, and what the server said.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "environment variable {name} is not set (hint: export it, or load a .env file with --env-file)"
    )]
    MissingEnv { name: String },
    #[error("environment variable {name} is empty")]
    EmptyEnv { name: String },
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {path} is empty")]
    EmptyFile { path: PathBuf },
    #[error("secret command `{program}` could not start: {source}")]
    CommandStart {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Never carries the command's output: it may hold the secret.
    #[error(
        "secret command `{program}` exited with {status} (its output is not shown: it may hold the secret)"
    )]
    CommandFailed { program: String, status: String },
    #[error("secret command `{program}` printed nothing")]
    CommandEmpty { program: String },
    #[error("auth \"{auth}\": the value is not valid in an HTTP header")]
    InvalidHeaderValue { auth: String },
    #[error(
        "auth \"{auth}\": credentials were rejected (401) and cannot be refreshed (hint: check the token or key)"
    )]
    Rejected { auth: String },
    /// A token endpoint problem (OAuth2); the message is already redacted.
    #[error("auth \"{auth}\": {message}")]
    TokenEndpoint { auth: String, message: String },
    #[error("auth \"{auth}\" is not defined")]
    Unknown { auth: String },
}
