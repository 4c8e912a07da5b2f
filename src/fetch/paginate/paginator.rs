//! One pure state machine for every pagination type: which request comes
//! next, what a response says about the next page, and when the stream
//! stops; what differs by type is asked of the type (`Paging`). No I/O:
//! `stream` drives it with the HTTP client, and tests drive it with
//! hand-made responses.
//!
//! Every type stops on an empty page, a missing/null/empty next token or
//! URL, `has_more` false, the body's value at `stop_path` equal to
//! `stop_value`, and `max_pages`; a cursor or URL seen among the
//! stream's last `LOOP_WINDOW` pages, or (offset and page types) a page
//! whose body repeats the previous one, is an error, never a hang.

use std::collections::VecDeque;

use serde_json::Value;
use url::Url;

use super::facts::{self, Facts};
use super::paging::{After, Answer, DecodedPage, Paging, hash_of, mismatch};
use super::paging_of;
use super::request::RequestBase;
use crate::fetch::decode::{PartitionValues, compare, read_page};
use crate::fetch::{
    DecodeError, FetchError, FetchErrorKind, NextRequest, Page, PageRequest, PageResponse,
    RequestContext, StreamPosition,
};
use crate::plan::{JobPlan, Partition};

/// How many recent cursors or next URLs a stream remembers to tell a loop
/// (A -> B -> A) from progress. Bounded, so memory does not grow with the
/// stream; a longer cycle ends at `max_pages`.
const LOOP_WINDOW: usize = 64;

/// The pagination state of one stream.
#[derive(Debug, Clone)]
pub struct Paginator {
    job: JobPlan,
    base: RequestBase,
    position: StreamPosition,
    /// The request for `position`; None once the last page was advanced past.
    request: Option<PageRequest>,
    /// Hashes of the last `LOOP_WINDOW` cursors / next URLs, newest last.
    recent: VecDeque<u64>,
    /// The previous page's `body` (offset and page types): compared, not
    /// hashed, so a page costs nothing unless its length matches.
    previous_body: Option<bytes::Bytes>,
    /// The partition's values that go into each record's key and columns.
    partition_values: PartitionValues,
}

impl Paginator {
    pub fn new(
        job: &JobPlan,
        partition: &Partition,
        position: StreamPosition,
    ) -> Result<Self, FetchError> {
        let fail = |message: String| {
            FetchError::new(
                &job.name,
                job.request.url.clone(),
                FetchErrorKind::Pagination { message },
            )
            .with_method(job.request.method)
        };
        let base = RequestBase::new(job, partition, &position).map_err(fail)?;
        let paging = paging_of(&job.pagination.kind);
        let fits = position.next == NextRequest::Start || paging.resumes_at(&position.next);
        if !fits {
            return Err(fail(mismatch(&job.pagination.kind, &position.next)));
        }
        let request = base.build(job, &position).map_err(fail)?;
        let recent = match remembered(&position.next) {
            Some(hash) => VecDeque::from([hash]),
            None => VecDeque::new(),
        };
        Ok(Paginator {
            job: job.clone(),
            base,
            position,
            request: Some(request),
            recent,
            previous_body: None,
            partition_values: PartitionValues::new(job, partition),
        })
    }

    /// The job's own first URL (job URL + query), whatever the position:
    /// its origin is the only one that sees the credential.
    pub fn start_url(&self) -> &Url {
        self.base.start_url()
    }

    /// The job's URL template as written: its origin is the only one that
    /// sees the credential (never one chosen by a partition value).
    pub fn pinned_url(&self) -> &Url {
        self.base.pinned_url()
    }

    /// Where the stream stands now.
    pub fn position(&self) -> &StreamPosition {
        &self.position
    }

    /// The next request (None when the stream is finished).
    pub fn next_request(&self) -> Option<PageRequest> {
        self.request.clone()
    }

    /// The request for `next` built from this stream's state, as `advance`
    /// would build it: fetch-ahead asks for pages it already knows will
    /// come (offset and page types with a known total). None when it cannot
    /// be built (the paginator's own request then reports why).
    pub fn request_at(&self, next: &NextRequest) -> Option<PageRequest> {
        let position = StreamPosition {
            next: next.clone(),
            ..self.position.clone()
        };
        self.base.build(&self.job, &position).ok()
    }

    /// The job's pagination type.
    pub(crate) fn paging(&self) -> Box<dyn Paging<'_> + '_> {
        paging_of(&self.job.pagination.kind)
    }

    /// Decode a response into records + pagination facts (runs inside the retry loop).
    pub fn decode(&self, resp: &PageResponse) -> Result<DecodedPage, DecodeError> {
        let (mut page, body) = read_page(resp, &self.job)?;
        self.partition_values.apply(&mut page.records);
        let request_url = self.request.as_ref().map_or(self.start_url(), |r| &r.url);
        let has_more = match &self.job.pagination.has_more_path {
            Some(path) => facts::has_more(facts::at(&body, path)?, path)?,
            None => None,
        };
        let stopped = match &self.job.pagination.stop {
            Some(stop) => {
                facts::at(&body, &stop.path)?.is_some_and(|v| facts::same(&v, &stop.value))
            }
            None => false,
        };
        let paging = self.paging();
        let Facts {
            next_cursor,
            next_url,
            total,
        } = paging.facts(&Answer {
            body: &body,
            response: resp,
            request_url,
            last_record: page.last.as_ref(),
        })?;
        // A cursor is saved in the checkpoint table and sent back in the
        // request: a server that hands a credential back as one (echoing
        // the request) must not get it stored or moved into a URL.
        if next_cursor
            .as_deref()
            .is_some_and(crate::secret::holds_credential)
        {
            return Err(facts::fatal(
                "the server returned a credential of this job in the next page's cursor; it is neither saved nor sent (hint: check pagination.cursor_path or cursor_header; the API may echo the request into its answer)".into(),
            ));
        }
        Ok(DecodedPage {
            records: page.records,
            received: page.received,
            max_seen: page.max_seen,
            next_cursor,
            next_url,
            has_more,
            stopped,
            total,
            body: (paging.compares_bodies() && page.received > 0).then(|| resp.body.clone()),
            bytes: resp.body.len() as u64,
        })
    }

    /// Advance: compute the next position, apply stop rules, detect loops.
    /// On error the paginator is unchanged.
    pub fn advance(&mut self, page: DecodedPage, ctx: &RequestContext) -> Result<Page, FetchError> {
        let Some(request) = &self.request else {
            let message = "a page arrived after the last one (hint: this is a bug in apisync; please report it)".into();
            return Err(ctx.error(
                &ctx.redact(self.start_url()),
                FetchErrorKind::Pagination { message },
            ));
        };
        let pages = self.position.pages + 1;
        let max_pages = self.job.pagination.max_pages;
        let ended = page.received == 0 || page.has_more == Some(false) || page.stopped;
        let capped = max_pages > 0 && pages >= max_pages;
        // A window that `max_pages` stops is not complete: its next page
        // is kept as the position, so a later run goes on inside it.
        let windowed = self
            .job
            .incremental
            .as_ref()
            .is_some_and(|i| i.windows.is_some());
        let next = match !ended && (!capped || windowed) {
            true => self.next_after(request, &page, ctx)?,
            false => None,
        };
        let cut_short = capped && next.is_some();
        let position = StreamPosition {
            next: next.clone().unwrap_or_else(|| self.position.next.clone()),
            pages,
            since: self.position.since.clone(),
            max_seen: self.merge_max(page.max_seen),
            now: self.position.now.clone(),
            window: self.position.window.clone(),
        };
        let next_request = match next.filter(|_| !cut_short) {
            Some(_) => Some(self.base.build(&self.job, &position).map_err(|message| {
                ctx.error(
                    &ctx.redact(&request.url),
                    FetchErrorKind::Pagination { message },
                )
            })?),
            None => None,
        };
        let out = Page {
            url: ctx.redact(&request.url),
            records: page.records,
            position: position.clone(),
            last: next_request.is_none(),
            cut_short,
            bytes: page.bytes,
        };
        if let Some(next) = remembered(&position.next) {
            if self.recent.len() == LOOP_WINDOW {
                self.recent.pop_front();
            }
            self.recent.push_back(next);
        }
        self.previous_body = page.body;
        self.position = position;
        self.request = next_request;
        Ok(out)
    }

    /// The stream's running max: the position's (pages before a resume)
    /// and this page's, compared by cursor type.
    fn merge_max(&self, page_max: Option<Value>) -> Option<Value> {
        let old = self.position.max_seen.clone();
        let (Some(inc), Some(new)) = (&self.job.incremental, page_max) else {
            return old;
        };
        match old {
            Some(old) if compare(inc.cursor_type, &old, &new).is_ge() => Some(old),
            _ => Some(new),
        }
    }

    /// The position after a page that did not stop the stream by itself.
    fn next_after(
        &self,
        request: &PageRequest,
        page: &DecodedPage,
        ctx: &RequestContext,
    ) -> Result<Option<NextRequest>, FetchError> {
        let after = After {
            at: &self.position.next,
            page,
            request,
            ctx,
            recent: &self.recent,
        };
        let paging = self.paging();
        if paging.compares_bodies() && page.body.is_some() && page.body == self.previous_body {
            return Err(after.error(
                "the server answered two pages in a row with the same body (hint: the API may ignore the offset or page parameter; check pagination.offset_param / page_param)".into(),
            ));
        }
        paging.next(&after)
    }
}

/// What the loop window remembers of a position: its cursor or URL.
fn remembered(next: &NextRequest) -> Option<u64> {
    match next {
        NextRequest::Cursor { cursor } => Some(hash_of(cursor)),
        NextRequest::Url { url } => Some(hash_of(url)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
