//! `StreamFetcher`: one stream's pages, the paginator driven by the HTTP
//! client. The paginator only moves after a page arrived and was accepted,
//! so dropping `next_page` mid-request loses nothing: the next call asks
//! for the same page again (or finds it in the fetch-ahead window).
//!
//! Offset and page streams with a known total fetch the pages after the
//! next one ahead, concurrently (`ahead`); every other stream asks for one
//! page at a time.

use std::sync::Arc;

use super::ahead::Ahead;
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
    /// Pages requested ahead (offset and page types that give a total).
    ahead: Option<Ahead>,
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
        let ctx = RequestContext::new(&job, paginator.pinned_url(), credential);
        let width = http.width_for(paginator.start_url());
        let ahead = Ahead::for_job(&job, width, &paginator);
        Ok(StreamFetcher {
            http,
            ctx,
            paginator,
            ahead,
        })
    }

    /// The values of the job's `{secret.*}` placeholders (see
    /// `RequestContext::with_secrets`).
    pub fn with_secrets(
        mut self,
        secrets: Arc<std::collections::BTreeMap<String, crate::secret::Secret>>,
    ) -> Self {
        self.ctx = self.ctx.with_secrets(secrets);
        self
    }

    /// Count this stream's requests in `stats` (see `RequestContext::with_stats`).
    pub fn with_stats(mut self, stats: Arc<RequestStats>) -> Self {
        self.ctx = self.ctx.with_stats(stats);
        self
    }

    /// The next page; None after the last one. Cancel-safe.
    pub async fn next_page(&mut self) -> Result<Option<Page>, FetchError> {
        let Some(request) = self.paginator.next_request() else {
            return Ok(None);
        };
        let ahead = match &mut self.ahead {
            Some(ahead) => ahead.take(&self.paginator).await,
            None => None,
        };
        let decoded = match ahead {
            Some(answer) => answer?,
            None => {
                let paginator = &self.paginator;
                self.http
                    .fetch(&self.ctx, &request, |resp| paginator.decode(resp))
                    .await?
            }
        };
        let (total, received) = (decoded.total, decoded.received);
        let page = self.paginator.advance(decoded, &self.ctx)?;
        if let Some(ahead) = &mut self.ahead {
            ahead.refill(&self.paginator, total, received, &self.http, &self.ctx);
        }
        Ok(Some(page))
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
