//! `type = "cursor"`: each page names an opaque token for the next one
//! (`cursor_path`, in the body or in the last record, or the response
//! header `cursor_header`), sent back as
//! `cursor_param` in the query or the JSON body.

use serde_json::Value;
use url::Url;

use super::body::{empty, set_at};
use super::facts::{Facts, at, fatal, text};
use super::paging::{After, Answer, Paging};
use crate::fetch::{DecodeError, FetchError, NextRequest};
use crate::plan::ParamLocation;

pub(crate) struct Cursor<'a> {
    /// Pointer into the body, or into the last record when `from_last_record`.
    pub path: &'a str,
    pub param: &'a str,
    pub param_in: ParamLocation,
    pub from_last_record: bool,
    /// The response header the cursor is read from instead (`path` unused).
    pub header: Option<&'a str>,
}

impl<'a> Paging<'a> for Cursor<'a> {
    fn resumes_at(&self, next: &NextRequest) -> bool {
        matches!(next, NextRequest::Cursor { .. })
    }

    fn add_params(
        &self,
        next: &NextRequest,
        url: &mut Url,
        body: &mut Option<Value>,
    ) -> Result<(), String> {
        let NextRequest::Cursor { cursor } = next else {
            return Ok(()); // the first page: no cursor yet
        };
        match self.param_in {
            ParamLocation::Query => {
                url.query_pairs_mut().append_pair(self.param, cursor);
                Ok(())
            }
            ParamLocation::Body => set_at(
                body.get_or_insert_with(empty),
                self.param,
                Value::from(cursor.as_str()),
            ),
        }
    }

    fn query_params(&self) -> Vec<&'a str> {
        match self.param_in {
            ParamLocation::Query => vec![self.param],
            ParamLocation::Body => Vec::new(),
        }
    }

    fn body_pointer(&self) -> Option<&'a str> {
        (!self.from_last_record && self.header.is_none()).then_some(self.path)
    }

    fn reads_last_record(&self) -> bool {
        self.from_last_record
    }

    fn facts(&self, page: &Answer<'_>) -> Result<Facts, DecodeError> {
        if let Some(name) = self.header {
            // A missing or empty header ends the stream, as a missing cursor
            // does. A cursor must go back byte for byte: one that is not
            // visible ASCII is an error, not a guess at its characters.
            let next_cursor = match page.response.headers.get(name) {
                None => None,
                Some(value) => Some(value.to_str().map_err(|_| {
                    fatal(format!(
                        "the response header {name} holds bytes that are not visible ASCII, so its cursor cannot be sent back as the server gave it (hint: check pagination.cursor_header; the API may send the cursor elsewhere)"
                    ))
                })?),
            }
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
            return Ok(Facts {
                next_cursor,
                ..Facts::default()
            });
        }
        let found = match self.from_last_record {
            true => page.last_record.and_then(|r| r.pointer(self.path)).cloned(),
            false => at(page.body, self.path)?,
        };
        Ok(Facts {
            next_cursor: text(found, self.path)?,
            ..Facts::default()
        })
    }

    /// A cursor this stream already used is a loop, never a hang.
    fn next(&self, after: &After<'_>) -> Result<Option<NextRequest>, FetchError> {
        let Some(cursor) = &after.page.next_cursor else {
            return Ok(None);
        };
        let repeated = matches!(after.at, NextRequest::Cursor { cursor: old } if old == cursor);
        if repeated || after.seen_recently(cursor) {
            let source = match self.header {
                Some(_) => "pagination.cursor_header",
                None => "pagination.cursor_path",
            };
            return Err(after.error(format!(
                "the server returned a cursor this stream already used ({cursor:?}) (hint: check {source} and pagination.cursor_param; the API may ignore the cursor)"
            )));
        }
        Ok(Some(NextRequest::Cursor {
            cursor: cursor.clone(),
        }))
    }
}
