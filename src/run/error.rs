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
    #[error("job \"{job}\"{}: {message}", partition_label(.partition))]
    Window {
        job: String,
        partition: String,
        message: String,
    },
    #[error(
        "job \"{job}\": the rows of table \"{table}\" were written with another primary key: a row stored with key {stored} has key {now} by records.primary_key now, so merging would write every record again beside its old row (hint: keep the old primary_key, or start over: `apisync reset {job}` and empty the table, or write to a new table with [output] table = \"...\")"
    )]
    KeyChanged {
        job: String,
        table: String,
        stored: String,
        now: String,
    },
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
    #[error(
        "{refused}; that was the saved position{}, and starting over from the high-water mark would write again the pages this stream already wrote ({mode} has no key to merge them on), so the stream stopped and keeps its checkpoint (hint: {})",
        partition_label(.partition),
        position_rejected_remedy(.job, .partition, .mode)
    )]
    PositionRejected {
        job: String,
        partition: String,
        /// "append mode", or "replace mode without a primary_key".
        mode: &'static str,
        /// The refused request (shown in the message, not as a source).
        refused: Box<FetchError>,
    },
    #[error("cannot start the database writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    #[error("the database writer stopped unexpectedly (see the error logged before this)")]
    WriterGone,
}

impl RunError {
    /// A window of `job`'s stream `partition` cannot be placed or followed.
    pub(crate) fn window(job: &str, partition: &str) -> impl Fn(String) -> RunError {
        let (job, partition) = (job.to_string(), partition.to_string());
        move |message| RunError::Window {
            job: job.clone(),
            partition: partition.clone(),
            message,
        }
    }
}

/// How to start over when a rejected position cannot be dropped safely.
fn position_rejected_remedy(job: &str, partition: &str, mode: &str) -> String {
    if mode.starts_with("replace") {
        return format!(
            "`apisync reset {job}` drops the half-built staging table, and the next run builds the table again from the first page"
        );
    }
    match partition {
        "" => format!(
            "to start over, delete the rows this stream wrote since it last finished (their `_run_id` is that of the runs since then), then run `apisync reset {job} --keep-marks`, which starts it over from its high-water mark"
        ),
        key => format!(
            "to start over, delete this partition's rows written since it last finished (its `_partition`, with the `_run_id` of the runs since then), then run `apisync reset {job} --partition {key} --keep-marks`, which starts it over from its high-water mark"
        ),
    }
}

/// ` (partition "eu")`, or nothing for an unpartitioned job.
fn partition_label(partition: &str) -> String {
    match partition {
        "" => String::new(),
        key => format!(" (partition \"{key}\")"),
    }
}
