//! `RequestStats`: what one job's requests did, counted as they happen by
//! every stream of the job (lock-free counters, so partitions running in
//! parallel share one without contention), read once at the end for the
//! run summary.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters for one job's requests; share it with `Arc` and attach it with
/// `RequestContext::with_stats`.
///
/// Every HTTP request sent (each retry and each redirect hop is one) counts
/// in `requests`, and then in exactly one outcome: the class of its
/// response status, or `transport_errors` when no complete response came
/// (connect error, reset, timeout, body broken off). A request abandoned
/// because the run was cancelled has no outcome.
#[derive(Debug, Default)]
pub struct RequestStats {
    requests: AtomicU64,
    status_2xx: AtomicU64,
    status_3xx: AtomicU64,
    status_4xx: AtomicU64,
    status_5xx: AtomicU64,
    transport_errors: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub transport_errors: u64,
    /// Attempts after the first of a page (what the backoff slept before).
    pub retries: u64,
    /// Page body bytes read (after gzip decoding); error bodies are not counted.
    pub bytes: u64,
}

/// Counters of several streams or jobs add up field by field.
impl std::ops::AddAssign<&StatsSnapshot> for StatsSnapshot {
    fn add_assign(&mut self, other: &StatsSnapshot) {
        self.requests += other.requests;
        self.status_2xx += other.status_2xx;
        self.status_3xx += other.status_3xx;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.transport_errors += other.transport_errors;
        self.retries += other.retries;
        self.bytes += other.bytes;
    }
}

impl RequestStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        // Relaxed: each counter is read on its own; a snapshot taken while
        // requests run may mix moments, which a summary does not mind.
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: get(&self.requests),
            status_2xx: get(&self.status_2xx),
            status_3xx: get(&self.status_3xx),
            status_4xx: get(&self.status_4xx),
            status_5xx: get(&self.status_5xx),
            transport_errors: get(&self.transport_errors),
            retries: get(&self.retries),
            bytes: get(&self.bytes),
        }
    }

    pub(crate) fn sent(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A response arrived (and, for a page, its body was read).
    pub(crate) fn answered(&self, status: u16) {
        let counter = match status {
            200..=299 => &self.status_2xx,
            300..=399 => &self.status_3xx,
            400..=499 => &self.status_4xx,
            // 1xx never reaches us (hyper handles it); anything odd is
            // counted with the server errors.
            _ => &self.status_5xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn transport_error(&self) {
        self.transport_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_by_class() {
        let stats = RequestStats::new();
        for status in [200, 206, 301, 404, 429, 500, 503, 600] {
            stats.sent();
            stats.answered(status);
        }
        stats.sent();
        stats.transport_error();
        stats.retry();
        stats.read(10);
        stats.read(5);
        let seen = stats.snapshot();
        let expected = StatsSnapshot {
            requests: 9,
            status_2xx: 2,
            status_3xx: 1,
            status_4xx: 2,
            status_5xx: 3,
            transport_errors: 1,
            retries: 1,
            bytes: 15,
        };
        assert_eq!(seen, expected);
    }
}
