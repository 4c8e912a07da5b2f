//! Pagination: one file per type (`none`, `cursor`, `offset`, `page`,
//! `link_header`, `next_url`), each implementing [`Paging`]: its request
//! parameters, the body pointers it reads, the next position from a page's
//! facts, whether its pages can be fetched ahead. The `Paginator` is the
//! one pure state machine over them (stop rules, loop window, `max_pages`);
//! `request` builds a stream's requests, `facts` reads what a page says.
//!
//! A new type is a variant of the plan's `PaginationKind`, one arm in
//! [`paging_of`] and one file here.

mod body;
mod cursor;
mod facts;
mod link_header;
mod next_url;
mod none;
mod offset;
mod page;
mod paginator;
mod paging;
mod request;

pub(crate) use body::set_at;
pub use paginator::Paginator;
pub use paging::DecodedPage;
pub(crate) use paging::Paging;

use crate::plan::PaginationKind;

/// The query parameters pagination type `kind` adds to a request.
pub(crate) fn query_params(kind: &PaginationKind) -> Vec<&str> {
    paging_of(kind).query_params()
}

/// The job's pagination type, as a view of its plan (built per page, never
/// per record).
pub(crate) fn paging_of(kind: &PaginationKind) -> Box<dyn Paging<'_> + '_> {
    match kind {
        PaginationKind::None => Box::new(none::NoPagination),
        PaginationKind::LinkHeader => Box::new(link_header::LinkHeader),
        PaginationKind::NextUrl { next_url_path } => Box::new(next_url::NextUrl {
            path: next_url_path,
        }),
        PaginationKind::Cursor {
            cursor_path,
            cursor_param,
            cursor_in,
            from_last_record,
            cursor_header,
        } => Box::new(cursor::Cursor {
            path: cursor_path,
            param: cursor_param,
            param_in: *cursor_in,
            from_last_record: *from_last_record,
            header: cursor_header.as_deref(),
        }),
        PaginationKind::Offset {
            offset_param,
            limit_param,
            limit,
            total_path,
            total_header,
            param_in,
        } => Box::new(offset::Offset {
            offset_param,
            limit_param,
            limit: *limit,
            total_path: total_path.as_deref(),
            total_header: total_header.as_deref(),
            param_in: *param_in,
        }),
        PaginationKind::Page {
            page_param,
            start,
            size_param,
            size,
            total_pages_path,
            param_in,
        } => Box::new(page::PageNumber {
            page_param,
            start: *start,
            size_param: size_param.as_deref(),
            size: *size,
            total_pages_path: total_pages_path.as_deref(),
            param_in: *param_in,
        }),
    }
}
