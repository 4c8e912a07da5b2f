//! A `rusqlite::Error` as the [`StoreError`] that names what failed.

use crate::store::error::StoreError;
use crate::store::types::StreamKey;

pub(super) fn stream_err<'a>(
    stream: &'a StreamKey,
    action: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError + Copy + 'a {
    move |source| StoreError::Stream {
        job: stream.job.clone(),
        partition: stream.partition.clone(),
        action,
        source: Box::new(source),
    }
}

pub(super) fn job_err<'a>(
    job: &'a str,
    action: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError + Copy + 'a {
    move |source| StoreError::Job {
        job: job.to_string(),
        action,
        source: Box::new(source),
    }
}

pub(super) fn db_err(action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + Copy {
    move |source| StoreError::Database {
        action,
        source: Box::new(source),
    }
}
