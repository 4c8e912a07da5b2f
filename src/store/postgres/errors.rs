//! A `postgres::Error` as the [`StoreError`] that names what failed. Each
//! builder is `Send + Clone + 'static`: it goes into the work sent to the
//! connection thread.

use crate::store::error::StoreError;
use crate::store::types::{RunId, StreamKey};

pub(super) fn stream_err(
    stream: &StreamKey,
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + use<> {
    let (job, partition) = (stream.job.clone(), stream.partition.clone());
    move |source| StoreError::Stream {
        job: job.clone(),
        partition: partition.clone(),
        action,
        source: Box::new(source),
    }
}

pub(super) fn job_err(
    job: &str,
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + use<> {
    let job = job.to_string();
    move |source| StoreError::Job {
        job: job.clone(),
        action,
        source: Box::new(source),
    }
}

pub(super) fn db_err(
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + 'static {
    move |source| StoreError::Database {
        action,
        source: Box::new(source),
    }
}

pub(super) fn run_err(
    run_id: RunId,
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + 'static {
    move |source| StoreError::Run {
        run_id: run_id.0,
        action,
        source: Box::new(source),
    }
}

pub(super) fn table_err(
    table: &str,
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError {
    let table = table.to_string();
    move |source| StoreError::Table {
        table: table.clone(),
        action,
        source: Box::new(source),
    }
}
