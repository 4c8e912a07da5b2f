//! Why `apisync init` could not write a job file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{path} already exists; init never overwrites a file (hint: pick another name or delete it first)"
    )]
    Exists { path: PathBuf },
    #[error("{name:?} is not a usable job name: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error(
        "{url} carries a user name or password; init writes the URL into the job file, which people commit (hint: remove `user:password@` and use an auth with type = \"basic\", then pass --auth)"
    )]
    UserInfo { url: String },
    #[error(
        "auth \"{name}\" is not defined in apisync.toml (hint: add [auth.{name}] or leave out --auth)"
    )]
    UnknownAuth { name: String },
    #[error("auth \"{name}\": {message}")]
    Auth { name: String, message: String },
    #[error("GET {url} was not sent: auth \"{name}\": {refusal}")]
    Refused {
        url: String,
        name: String,
        refusal: crate::secret::Refusal,
    },
    #[error("GET {url} failed: {message}")]
    Fetch { url: String, message: String },
    #[error("GET {url} returned {status}: {snippet} (hint: check the URL and --auth)")]
    Status {
        url: String,
        status: u16,
        snippet: String,
    },
    #[error("GET {url}: the body is not JSON: {message}")]
    NotJson { url: String, message: String },
    #[error(
        "GET {url}: the body is larger than {limit} bytes; init reads one page (hint: ask for a smaller page, e.g. limit=10)"
    )]
    TooLarge { url: String, limit: usize },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
