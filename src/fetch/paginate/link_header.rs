//! `type = "link_header"`: the next page is the Link header's rel="next"
//! (RFC 8288), followed as given.

use super::facts::{Facts, fatal};
use super::next_url::follow;
use super::paging::{After, Answer, Paging};
use crate::fetch::decode::next_link;
use crate::fetch::{DecodeError, FetchError, NextRequest};

pub(crate) struct LinkHeader;

impl Paging<'_> for LinkHeader {
    fn resumes_at(&self, next: &NextRequest) -> bool {
        matches!(next, NextRequest::Url { .. })
    }

    /// A relative Link resolves against the response URL (after redirects).
    fn facts(&self, page: &Answer<'_>) -> Result<Facts, DecodeError> {
        let next_url = next_link(&page.response.headers, &page.response.url)
            .map_err(|e| fatal(e.to_string()))?;
        Ok(Facts {
            next_url,
            ..Facts::default()
        })
    }

    fn next(&self, after: &After<'_>) -> Result<Option<NextRequest>, FetchError> {
        follow(after)
    }
}
