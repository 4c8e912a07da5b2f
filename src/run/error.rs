//! Errors of the run stage: the ones that end a stream, a job or the run.

use crate::auth::AuthError;
use crate::fetch::FetchError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(
        "job \"{job}\": the saved checkpoint cannot be read ({message}) (hint: `apisync reset {job}` forgets it)"
    )]
    BadCheckpoint { job: String, message: String },
    #[error("job \"{job}\": {message}")]
    Credential { job: String, message: String },
    #[error("job \"{job}\": {message}")]
    Partitions { job: String, message: String },
    #[error("job \"{job}\": skipped because job \"{dependency}\" did not succeed")]
    DependencyFailed { job: String, dependency: String },
    #[error(
        "job \"{job}\"{}: no page completed for {} while waiting on {url}; the stream stopped at its last committed page (hint: raise --stall-timeout if the API is this slow, or check the server)",
        partition_label(.partition),
        humantime::format_duration(*.after)
    )]
    Stalled {
        job: String,
        partition: String,
        /// The page URL the stream was waiting on, secrets redacted.
        url: String,
        after: std::time::Duration,
    },
    #[error("cannot start the database writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    #[error("the database writer stopped unexpectedly (see the error logged before this)")]
    WriterGone,
}

/// ` (partition "eu")`, or nothing for an unpartitioned job.
fn partition_label(partition: &str) -> String {
    match partition {
        "" => String::new(),
        key => format!(" (partition \"{key}\")"),
    }
}
