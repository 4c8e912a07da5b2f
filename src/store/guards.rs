//! The claims and job leases a store handle took, and the guard each write
//! checks inside its transaction.
//!
//! The promise: every page, end of stream and end of pass of a sharded or
//! leased job checks, in the same transaction, that this process still
//! holds the stream's claim and the job's lease. A process that stalled
//! past the stale limit, and whose stream or job another process took over
//! meanwhile, then stops writing at once instead of appending after the
//! new holder. [`WriteGuards`] remembers what was taken through the handle
//! (`Store::claim_stream`, `Store::try_acquire_lease`) until it is given
//! back, and hands each write its [`Guard`].

use std::collections::HashMap;

use super::types::StreamKey;

/// The claim this process holds on a stream it is running (a row of
/// `invocation_streams` naming `holder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldClaim {
    pub invocation: String,
    pub holder: String,
}

/// What one write must still hold, checked inside its transaction: the
/// stream's claim (sharded runs) and the job's lease (leased runs), each
/// when taken.
///
/// Only the store makes one (from its [`WriteGuards`]), so code outside
/// it cannot reach a backend's page, stream or pass writes with a guard
/// that skips the checks: it goes through `Store`'s own methods, which
/// fill the guard in.
#[derive(Debug, Clone, Copy)]
pub struct Guard<'a> {
    pub(in crate::store) claim: Option<&'a HeldClaim>,
    /// The holder name this process took the job's lease as.
    pub(in crate::store) lease: Option<&'a str>,
}

impl Guard<'static> {
    /// A guard that checks nothing: for the store's own tests of writes
    /// outside any lease or claim.
    #[cfg(test)]
    pub(in crate::store) fn unchecked() -> Guard<'static> {
        Guard {
            claim: None,
            lease: None,
        }
    }
}

/// The claims and leases taken through one store handle.
#[derive(Debug, Default)]
pub struct WriteGuards {
    /// Sharded streams this handle's process claimed and is running.
    claims: HashMap<StreamKey, HeldClaim>,
    /// Jobs whose lease this handle took, and the holder it took them as.
    leases: HashMap<String, String>,
}

impl WriteGuards {
    /// The guard of a write to `stream`.
    pub fn for_stream(&self, stream: &StreamKey) -> Guard<'_> {
        Guard {
            claim: self.claims.get(stream),
            lease: self.lease(&stream.job),
        }
    }

    /// The guard of the end of `job`'s pass: its lease only (a pass is not
    /// one stream's, so no claim).
    pub fn for_job(&self, job: &str) -> Guard<'_> {
        Guard {
            claim: None,
            lease: self.lease(job),
        }
    }

    /// The holder `job`'s lease was taken as, if it was.
    pub fn lease(&self, job: &str) -> Option<&str> {
        self.leases.get(job).map(String::as_str)
    }

    pub fn claimed(&mut self, stream: &StreamKey, claim: HeldClaim) {
        self.claims.insert(stream.clone(), claim);
    }

    pub fn unclaimed(&mut self, stream: &StreamKey) {
        self.claims.remove(stream);
    }

    pub fn leased(&mut self, job: &str, holder: &str) {
        self.leases.insert(job.to_string(), holder.to_string());
    }

    /// `holder` gave `job`'s lease up (a release by another holder name
    /// leaves this one's in place).
    pub fn released(&mut self, job: &str, holder: &str) {
        if self.lease(job) == Some(holder) {
            self.leases.remove(job);
        }
    }
}
