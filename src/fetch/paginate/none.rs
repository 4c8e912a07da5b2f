//! `type = "none"`: one request returns everything.

use super::paging::{After, Paging};
use crate::fetch::{FetchError, NextRequest};

pub(crate) struct NoPagination;

impl Paging<'_> for NoPagination {
    fn next(&self, _after: &After<'_>) -> Result<Option<NextRequest>, FetchError> {
        Ok(None)
    }
}
