//! `type = "offset"`: `offset_param` counts the records already received,
//! `limit_param` asks for `limit` per page; the total (from `total_path` or
//! `total_header`), when given, ends the stream and lets its pages be
//! fetched ahead.

use serde_json::Value;
use url::Url;

use super::body::{empty, set_at};
use super::facts::{Facts, at, count, fatal};
use super::paging::{After, Answer, Paging};
use crate::fetch::{DecodeError, FetchError, NextRequest};
use crate::plan::ParamLocation;

pub(crate) struct Offset<'a> {
    pub offset_param: &'a str,
    pub limit_param: &'a str,
    pub limit: u64,
    pub total_path: Option<&'a str>,
    pub total_header: Option<&'a str>,
    /// Query parameters, or pointers into the JSON body (integers there).
    pub param_in: ParamLocation,
}

/// The position after a page of `received` records fetched at `at`; None
/// once the offset reaches `total`.
fn after(at: &NextRequest, received: u64, total: Option<u64>) -> Option<NextRequest> {
    let offset = match at {
        NextRequest::Offset { offset } => *offset,
        _ => 0,
    } + received;
    match total {
        Some(total) if offset >= total => None,
        _ => Some(NextRequest::Offset { offset }),
    }
}

impl<'a> Paging<'a> for Offset<'a> {
    fn resumes_at(&self, next: &NextRequest) -> bool {
        matches!(next, NextRequest::Offset { .. })
    }

    fn add_params(
        &self,
        next: &NextRequest,
        url: &mut Url,
        body: &mut Option<Value>,
    ) -> Result<(), String> {
        let offset = match next {
            NextRequest::Offset { offset } => *offset,
            _ => 0,
        };
        match self.param_in {
            ParamLocation::Query => {
                url.query_pairs_mut()
                    .append_pair(self.offset_param, &offset.to_string())
                    .append_pair(self.limit_param, &self.limit.to_string());
            }
            ParamLocation::Body => {
                let body = body.get_or_insert_with(empty);
                set_at(body, self.offset_param, Value::from(offset))?;
                set_at(body, self.limit_param, Value::from(self.limit))?;
            }
        }
        Ok(())
    }

    fn query_params(&self) -> Vec<&'a str> {
        match self.param_in {
            ParamLocation::Query => vec![self.offset_param, self.limit_param],
            ParamLocation::Body => Vec::new(),
        }
    }

    fn body_pointer(&self) -> Option<&'a str> {
        self.total_path
    }

    fn facts(&self, page: &Answer<'_>) -> Result<Facts, DecodeError> {
        Ok(Facts {
            total: self.total(page)?,
            ..Facts::default()
        })
    }

    fn compares_bodies(&self) -> bool {
        true
    }

    fn next(&self, step: &After<'_>) -> Result<Option<NextRequest>, FetchError> {
        Ok(after(step.at, step.page.received, step.page.total))
    }

    fn fetch_ahead(&self) -> bool {
        self.total_path.is_some() || self.total_header.is_some()
    }

    /// Pages are guessed to hold as many records as the last one (`limit`
    /// before any arrived; fewer when the server caps its pages, as
    /// PostgREST's db-max-rows does).
    fn ahead_of(&self, at: &NextRequest, per_page: Option<u64>, total: u64) -> Option<NextRequest> {
        after(at, per_page.unwrap_or(self.limit.max(1)), Some(total))
    }
}

impl Offset<'_> {
    /// The total records, from the body or from a header.
    fn total(&self, page: &Answer<'_>) -> Result<Option<u64>, DecodeError> {
        if let Some(path) = self.total_path {
            return count(at(page.body, path)?, path);
        }
        let Some(name) = self.total_header else {
            return Ok(None);
        };
        let Some(raw) = page.response.headers.get(name) else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(raw.as_bytes());
        // PostgREST's Content-Range: "0-99/1234" (or "*/1234"); "*" total = unknown.
        let total = text.rsplit('/').next().unwrap_or(&text).trim();
        if total == "*" {
            return Ok(None);
        }
        total.parse().map(Some).map_err(|_| {
            fatal(format!(
                "the {name} header is {text:?}, not a count (hint: check pagination.total_header)"
            ))
        })
    }
}
