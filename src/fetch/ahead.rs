//! Fetch-ahead: for `offset` and `page` pagination whose total is known
//! (`total_path`, `total_header`, `total_pages_path`), every request up to
//! the total is known once a page has said it, so the pages after the next
//! one are requested concurrently while the stream hands them on strictly in
//! order. The type says whether it can (`Paging::fetch_ahead`) and plans the
//! positions (`Paging::ahead_of`) with the same arithmetic the paginator
//! advances by.
//!
//! The paginator stays the only judge of what comes next. A page fetched
//! ahead is a guess: it is used only when its position is exactly the one
//! the paginator asks for after the page before it was accepted. A guess
//! that turns out wrong (a short page moved the offsets, an empty page or
//! `has_more = false` ended the stream) is dropped with every guess after
//! it, so pages are written exactly as the one-at-a-time stream would write
//! them: same order, same checkpoints, same stop rules and loop check.
//!
//! Bounds: at most `width` pages per stream are in flight or waiting to be
//! handed on (the reorder window, so memory stays under `width` x
//! `max_page_bytes`); `width` is `min(concurrency, host concurrency,
//! MAX_WIDTH)`. Every request goes through `HttpClient::fetch`, so the
//! global and per-host limits, rate limits, 429 pauses, retries, auth and
//! request stats apply to each one. Nothing is requested past the total or
//! `max_pages`.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::paginate::paging_of;
use super::{
    DecodedPage, FetchError, HttpClient, NextRequest, PageRequest, Paginator, RequestContext,
};
use crate::plan::JobPlan;

/// The widest reorder window of one stream, whatever `concurrency` allows:
/// beyond 8 pages in flight a single stream gains little on a latency-bound
/// API, while its memory (window x `max_page_bytes`) keeps growing.
pub(crate) const MAX_WIDTH: usize = 8;

/// What a fetched-ahead request answers with: its slot and the page.
type Answer = (u64, Result<DecodedPage, FetchError>);

/// The fetch-ahead state of one stream.
pub(crate) struct Ahead {
    width: usize,
    /// Records per page: the last accepted page's count, the guess for the
    /// pages after it (None until a page arrived; see `Paging::ahead_of`).
    per_page: Option<u64>,
    max_pages: u64,
    /// The latest total a page gave (records for offset, pages for page).
    total: Option<u64>,
    /// Decodes pages in the request tasks: the paginator as it was before
    /// the first page (decoding offset and page bodies needs only the job;
    /// a later copy would keep a page body alive for the whole stream).
    decoder: Arc<Paginator>,
    /// The window, in stream order; the front is the paginator's next page.
    slots: VecDeque<Slot>,
    /// The requests in flight; dropping the set aborts them.
    tasks: JoinSet<Answer>,
    next_id: u64,
}

struct Slot {
    id: u64,
    next: NextRequest,
    answer: Option<Result<DecodedPage, FetchError>>,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead")
            .field("width", &self.width)
            .field("per_page", &self.per_page)
            .field("total", &self.total)
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Ahead {
    /// Fetch-ahead for `job`, when its pagination can know its total and
    /// more than one request may be in flight; None otherwise (the stream
    /// fetches one page at a time, overlapping the write).
    pub(crate) fn for_job(job: &JobPlan, width: usize, paginator: &Paginator) -> Option<Ahead> {
        // A `stop_path` page is known only when it arrives: fetching ahead
        // would ask past it.
        if !paging_of(&job.pagination.kind).fetch_ahead() || job.pagination.stop.is_some() {
            return None;
        }
        let width = width.min(MAX_WIDTH);
        (width > 1).then(|| Ahead {
            width,
            per_page: None,
            max_pages: job.pagination.max_pages,
            total: None,
            decoder: Arc::new(paginator.clone()),
            slots: VecDeque::new(),
            tasks: JoinSet::new(),
            next_id: 0,
        })
    }

    /// The answer for the paginator's next page, when the window holds it;
    /// None when the caller should fetch it itself (no total known yet, or
    /// the window was for another position). Cancel-safe: answers that
    /// arrive are kept in their slots, so a dropped call loses nothing.
    pub(crate) async fn take(
        &mut self,
        paginator: &Paginator,
    ) -> Option<Result<DecodedPage, FetchError>> {
        let head = &paginator.position().next;
        if self.slots.front().is_none_or(|slot| &slot.next != head) {
            self.reset();
            return None;
        }
        loop {
            if let Some(answer) = self.slots.front_mut().and_then(|slot| slot.answer.take()) {
                self.slots.pop_front();
                return Some(answer);
            }
            match self.tasks.join_next().await {
                Some(Ok((id, answer))) => {
                    if let Some(slot) = self.slots.iter_mut().find(|slot| slot.id == id) {
                        slot.answer = Some(answer);
                    }
                }
                // A request task panicked: a bug, not a server's doing.
                Some(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                // Aborted (only `reset` aborts, and it empties the window)
                // or nothing left in flight while the head has no answer:
                // start over from the paginator's own request.
                Some(Err(_)) | None => {
                    self.reset();
                    return None;
                }
            }
        }
    }

    /// After the paginator accepted a page: drop the window if the stream
    /// ended or went elsewhere than planned, then fill it up to `width`
    /// with the requests that follow, within the total and `max_pages`.
    /// `total` and `received` are the accepted page's.
    pub(crate) fn refill(
        &mut self,
        paginator: &Paginator,
        total: Option<u64>,
        received: u64,
        http: &HttpClient,
        ctx: &RequestContext,
    ) {
        if paginator.next_request().is_none() {
            self.reset();
            return;
        }
        if total.is_some() {
            self.total = total;
        }
        // The next pages are guessed to be as long as this one: `limit`,
        // or less when the server caps its pages (PostgREST's db-max-rows).
        if received > 0 {
            self.per_page = Some(received);
        }
        let head = paginator.position().next.clone();
        if self.slots.front().is_some_and(|slot| slot.next != head) {
            // A short page moved the offsets: the guesses after it are wrong.
            self.reset();
        }
        let Some(total) = self.total else {
            return;
        };
        let decoder = self.decoder.clone();
        let pages_done = paginator.position().pages;
        while self.slots.len() < self.width {
            let next = match self.slots.back() {
                None => head.clone(),
                Some(last) => match self.after(&last.next, total) {
                    Some(next) => next,
                    None => break,
                },
            };
            let number = pages_done + 1 + self.slots.len() as u64;
            if self.max_pages > 0 && number > self.max_pages {
                break;
            }
            let Some(request) = paginator.request_at(&next) else {
                break;
            };
            self.spawn(request, next, http, ctx, &decoder);
        }
    }

    /// The position after `next`, if it is still within `total`: the
    /// pagination type's own arithmetic, as the paginator advances by it.
    fn after(&self, next: &NextRequest, total: u64) -> Option<NextRequest> {
        self.decoder.paging().ahead_of(next, self.per_page, total)
    }

    fn spawn(
        &mut self,
        request: PageRequest,
        next: NextRequest,
        http: &HttpClient,
        ctx: &RequestContext,
        decoder: &Arc<Paginator>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let (http, ctx, decoder) = (http.clone(), ctx.clone(), decoder.clone());
        self.tasks.spawn(async move {
            let answer = http
                .fetch(&ctx, &request, |resp| decoder.decode(resp))
                .await;
            (id, answer)
        });
        self.slots.push_back(Slot {
            id,
            next,
            answer: None,
        });
    }

    /// Forget the window: requests in flight are aborted (their
    /// connections are dropped), pages waiting are freed.
    fn reset(&mut self) {
        // Dropping a JoinSet aborts every task still in it.
        self.tasks = JoinSet::new();
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::StreamPosition;
    use super::super::http::context::tests::sample_job;
    use super::*;
    use crate::plan::{PaginationKind, ParamLocation, Partition};

    fn ahead(kind: PaginationKind, width: usize) -> Option<Ahead> {
        let mut job = sample_job();
        job.pagination.kind = kind;
        let paginator = Paginator::new(&job, &Partition::whole(), StreamPosition::start(None))
            .expect("a paginator");
        Ahead::for_job(&job, width, &paginator)
    }

    fn offset(total_path: Option<&str>) -> PaginationKind {
        PaginationKind::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            limit: 10,
            total_path: total_path.map(str::to_string),
            total_header: None,
            param_in: ParamLocation::Query,
        }
    }

    fn page(start: u64) -> PaginationKind {
        PaginationKind::Page {
            page_param: "page".into(),
            start,
            size_param: None,
            size: None,
            total_pages_path: Some("/total_pages".into()),
            param_in: ParamLocation::Query,
        }
    }

    #[test]
    fn only_streams_that_can_know_their_total_and_may_send_two_requests() {
        assert!(ahead(offset(Some("/total")), 8).is_some());
        assert!(ahead(page(1), 2).is_some());
        assert!(ahead(offset(None), 8).is_none(), "no total");
        assert!(ahead(offset(Some("/total")), 1).is_none(), "concurrency 1");
        assert!(ahead(PaginationKind::LinkHeader, 8).is_none());
        let wide = ahead(offset(Some("/total")), 64).expect("fetch-ahead");
        assert_eq!(wide.width, MAX_WIDTH);
    }

    #[test]
    fn planned_positions_stop_before_the_total() {
        let ahead = ahead(offset(Some("/total")), 8).expect("fetch-ahead");
        let at = |offset| NextRequest::Offset { offset };
        assert_eq!(ahead.after(&at(10), 30), Some(at(20)));
        assert_eq!(
            ahead.after(&at(20), 30),
            None,
            "offset 30 is past 30 records"
        );
        assert_eq!(ahead.after(&at(15), 30), Some(at(25)));
        // Page numbers count total pages from `start`.
        let pages = |start| self::ahead(page(start), 8).expect("fetch-ahead");
        let at = |page| NextRequest::Page { page };
        assert_eq!(pages(1).after(&at(2), 3), Some(at(3)));
        assert_eq!(pages(1).after(&at(3), 3), None);
        assert_eq!(pages(0).after(&at(1), 3), Some(at(2)));
        assert_eq!(pages(0).after(&at(2), 3), None);
    }
}
