//! What a live display learns while a run goes on: a stream starts, hands
//! its pages over, ends. The run stage only reports; how (or whether) it is
//! shown is the CLI's business, so `run/` knows nothing of terminals.
//!
//! The reports sit on the page path, so they must stay cheap: one call per
//! page (never per record), no lock held across an await, no allocation
//! after a stream's start.

use std::sync::Arc;

use crate::fetch::RequestStats;

/// Told about every stream of a run. Implementations are shared by all the
/// jobs running at once.
pub trait Progress: Send + Sync {
    /// A stream of `job` (`partition` is empty for a job without
    /// partitions) starts; `stats` counts its requests and retries as they
    /// happen. The returned observer hears about its pages; dropping it
    /// means the stream ended (finished, failed or cancelled alike).
    fn stream_started(
        &self,
        job: &str,
        partition: &str,
        stats: &Arc<RequestStats>,
    ) -> Arc<dyn StreamProgress>;
}

/// One running stream's observer.
pub trait StreamProgress: Send + Sync {
    /// A page was handed to the writer; `pages` and `records` are the
    /// stream's totals so far (not increments, so a missed call loses
    /// nothing).
    fn page(&self, pages: u64, records: u64);
}

/// No display: what the run uses unless told otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stream_started(&self, _: &str, _: &str, _: &Arc<RequestStats>) -> Arc<dyn StreamProgress> {
        Arc::new(NoProgress)
    }
}

impl StreamProgress for NoProgress {
    fn page(&self, _: u64, _: u64) {}
}
