//! `type = "page"`: `page_param` numbers the pages from `start`, with an
//! optional page size; the total pages (`total_pages_path`), when given,
//! ends the stream and lets its pages be fetched ahead.

use serde_json::Value;
use url::Url;

use super::body::{empty, set_at};
use super::facts::{Facts, at, count};
use super::paging::{After, Answer, Paging};
use crate::fetch::{DecodeError, FetchError, NextRequest};
use crate::plan::ParamLocation;

pub(crate) struct PageNumber<'a> {
    pub page_param: &'a str,
    pub start: u64,
    pub size_param: Option<&'a str>,
    pub size: Option<u64>,
    pub total_pages_path: Option<&'a str>,
    /// Query parameters, or pointers into the JSON body (integers there).
    pub param_in: ParamLocation,
}

impl PageNumber<'_> {
    /// The page after the one fetched at `at`; None once `total` pages
    /// (counted from `start`) were asked for.
    fn after(&self, at: &NextRequest, total: Option<u64>) -> Option<NextRequest> {
        let next = match at {
            NextRequest::Page { page } => *page,
            _ => self.start,
        } + 1;
        match total {
            Some(total_pages) if next.saturating_sub(self.start) >= total_pages => None,
            _ => Some(NextRequest::Page { page: next }),
        }
    }
}

impl<'a> Paging<'a> for PageNumber<'a> {
    fn resumes_at(&self, next: &NextRequest) -> bool {
        matches!(next, NextRequest::Page { .. })
    }

    fn add_params(
        &self,
        next: &NextRequest,
        url: &mut Url,
        body: &mut Option<Value>,
    ) -> Result<(), String> {
        let page = match next {
            NextRequest::Page { page } => *page,
            _ => self.start,
        };
        let size = self.size_param.zip(self.size);
        match self.param_in {
            ParamLocation::Query => {
                let mut pairs = url.query_pairs_mut();
                pairs.append_pair(self.page_param, &page.to_string());
                if let Some((param, size)) = size {
                    pairs.append_pair(param, &size.to_string());
                }
            }
            ParamLocation::Body => {
                let body = body.get_or_insert_with(empty);
                set_at(body, self.page_param, Value::from(page))?;
                if let Some((param, size)) = size {
                    set_at(body, param, Value::from(size))?;
                }
            }
        }
        Ok(())
    }

    fn query_params(&self) -> Vec<&'a str> {
        match self.param_in {
            ParamLocation::Query => std::iter::once(self.page_param)
                .chain(self.size_param)
                .collect(),
            ParamLocation::Body => Vec::new(),
        }
    }

    fn body_pointer(&self) -> Option<&'a str> {
        self.total_pages_path
    }

    fn facts(&self, page: &Answer<'_>) -> Result<Facts, DecodeError> {
        let total = match self.total_pages_path {
            Some(path) => count(at(page.body, path)?, path)?,
            None => None,
        };
        Ok(Facts {
            total,
            ..Facts::default()
        })
    }

    fn compares_bodies(&self) -> bool {
        true
    }

    fn next(&self, after: &After<'_>) -> Result<Option<NextRequest>, FetchError> {
        Ok(self.after(after.at, after.page.total))
    }

    fn fetch_ahead(&self) -> bool {
        self.total_pages_path.is_some()
    }

    /// Page numbers do not depend on how many records a page holds.
    fn ahead_of(
        &self,
        at: &NextRequest,
        _per_page: Option<u64>,
        total: u64,
    ) -> Option<NextRequest> {
        self.after(at, Some(total))
    }
}
