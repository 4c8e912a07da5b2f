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
    #[error("cannot start the database writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    #[error("the database writer stopped unexpectedly (see the error logged before this)")]
    WriterGone,
}
