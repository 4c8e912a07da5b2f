//! `type = "next_url"`: the body names the next page's URL
//! (`next_url_path`), followed as given; the link_header type follows its
//! URLs the same way.

use super::facts::{Facts, at, fatal, text};
use super::paging::{After, Answer, Paging};
use crate::fetch::{DecodeError, FetchError, NextRequest};

pub(crate) struct NextUrl<'a> {
    pub path: &'a str,
}

impl<'a> Paging<'a> for NextUrl<'a> {
    fn resumes_at(&self, next: &NextRequest) -> bool {
        matches!(next, NextRequest::Url { .. })
    }

    fn body_pointer(&self) -> Option<&'a str> {
        Some(self.path)
    }

    /// A relative next URL resolves against the URL that was asked for.
    fn facts(&self, page: &Answer<'_>) -> Result<Facts, DecodeError> {
        let path = self.path;
        let next_url = match text(at(page.body, path)?, path)? {
            Some(next) => Some(page.request_url.join(&next).map_err(|e| {
                fatal(format!(
                    "the next URL {next:?} at {path} is not a valid URL: {e}"
                ))
            })?),
            None => None,
        };
        Ok(Facts {
            next_url,
            ..Facts::default()
        })
    }

    fn next(&self, after: &After<'_>) -> Result<Option<NextRequest>, FetchError> {
        follow(after)
    }
}

/// The next URL the page gave, when the stream may follow it: the target
/// must be allowed (same origin, or cross-origin allowed), and a URL this
/// stream already followed is a loop, never a hang. Stored without secret
/// query parameters (it becomes the checkpoint).
pub(super) fn follow(after: &After<'_>) -> Result<Option<NextRequest>, FetchError> {
    let Some(url) = &after.page.next_url else {
        return Ok(None);
    };
    let (ctx, request) = (after.ctx, after.request);
    // The error names the page that carried the link (the URL the user can
    // open to see why); the target is in the kind.
    ctx.target_allowed(url)
        .map_err(|kind| ctx.error(&ctx.redact(&request.url), kind))?;
    let stored = ctx.strip_secret_params(url);
    // A credential anywhere else (the path, inside a longer value) cannot
    // be taken out without changing what is asked for: the URL is neither
    // saved nor followed.
    if crate::secret::holds_credential(stored.as_str()) {
        return Err(after.error(format!(
            "the server's next URL holds a credential of this job outside a query parameter of its own ({}); it is neither saved nor followed (hint: the API echoes the key into its links; ask its maintainers, or page another way)",
            crate::secret::scrub(stored.as_str())
        )));
    }
    if stored == ctx.strip_secret_params(&request.url) || after.seen_recently(stored.as_str()) {
        return Err(after.error(format!(
            "the server returned a next URL this stream already followed ({}) (hint: the API may ignore its own paging parameters; set pagination.max_pages as a safety stop)",
            ctx.redact(url)
        )));
    }
    Ok(Some(NextRequest::Url {
        url: stored.to_string(),
    }))
}
