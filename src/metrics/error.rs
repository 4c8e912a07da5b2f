//! Why metrics could not be written or pushed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot write the metrics file {path}: {source} (hint: the folder must exist and be writable)"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Pushgateway URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    /// `url` never holds the URL's user or password.
    #[error("pushing metrics to {url} failed: {message}")]
    Push { url: String, message: String },
}
