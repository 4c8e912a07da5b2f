//! `StreamFetcher`: one stream's pages, the paginator driven by the HTTP
//! client. The paginator only moves after a page arrived and was accepted,
//! so dropping `next_page` mid-request loses nothing: the next call asks
//! for the same page again.

use std::sync::Arc;

use super::{
    FetchError, HttpClient, Page, Paginator, RequestContext, RequestStats, StreamPosition,
};
use crate::auth::Credential;
use crate::plan::{JobPlan, Partition};

/// Fetches one stream (a job, or one partition of it) page by page.
#[derive(Debug)]
pub struct StreamFetcher {
    http: HttpClient,
    ctx: RequestContext,
    paginator: Paginator,
}

impl StreamFetcher {
    pub fn new(
        http: HttpClient,
        job: Arc<JobPlan>,
        partition: Partition,
        credential: Option<Arc<Credential>>,
        position: StreamPosition,
    ) -> Result<Self, FetchError> {
        let paginator = Paginator::new(&job, &partition, position)?;
        // Credentials belong to the job's own URL, even when resuming at a
        // saved next URL on another origin.
        let ctx = RequestContext::new(&job, paginator.start_url(), credential);
        Ok(StreamFetcher {
            http,
            ctx,
            paginator,
        })
    }

    /// Count this stream's requests in `stats` (see `RequestContext::with_stats`).
    pub fn with_stats(mut self, stats: Arc<RequestStats>) -> Self {
        self.ctx = self.ctx.with_stats(stats);
        self
    }

    /// The next page; None after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Page>, FetchError> {
        let Some(request) = self.paginator.next_request() else {
            return Ok(None);
        };
        let paginator = &self.paginator;
        let decoded = self
            .http
            .fetch(&self.ctx, &request, |resp| paginator.decode(resp))
            .await?;
        self.paginator.advance(decoded, &self.ctx).map(Some)
    }

    /// The URL the stream asks for next (its first, before any page),
    /// secrets redacted, for `--dry-run` and the stall error.
    pub fn first_request_url(&self) -> String {
        match self.paginator.next_request() {
            Some(request) => self.ctx.redact(&request.url),
            None => self.ctx.redact(self.paginator.start_url()),
        }
    }

    /// Where the stream stands (after the last page returned).
    pub fn position(&self) -> &StreamPosition {
        self.paginator.position()
    }
}
