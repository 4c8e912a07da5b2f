//! The body as the pagination facts read it: the whole parsed body, or
//! what the one pass over it (`scan`) found at the pagination pointers.

use serde_json::value::RawValue;

use super::pointer::{raw_at, tokens};
use crate::fetch::DecodeError;

fn fatal(message: String) -> DecodeError {
    DecodeError {
        message,
        retryable: false,
    }
}

/// The body as the pagination facts read it.
#[derive(Debug)]
pub enum BodyView<'a> {
    /// The whole body as a raw value (the general path).
    Raw(&'a RawValue),
    /// What one pass found at each of the job's pagination pointers, and
    /// the body's text (valid JSON) for any other pointer.
    Scanned {
        text: &'a str,
        found: Vec<(&'a str, Option<&'a str>)>,
    },
}

impl<'a> BodyView<'a> {
    /// The raw text of the value at `pointer`; None when absent.
    pub fn at(&self, pointer: &str) -> Result<Option<&'a str>, DecodeError> {
        let raw = match self {
            BodyView::Raw(raw) => raw,
            BodyView::Scanned { text, found } => {
                if let Some((_, value)) = found.iter().find(|(p, _)| *p == pointer) {
                    return Ok(*value);
                }
                // Not one of the pointers scanned for: read the body again.
                &serde_json::from_str::<&RawValue>(text).map_err(|e| fatal(e.to_string()))?
            }
        };
        let tokens = tokens(pointer).map_err(|e| fatal(e.to_string()))?;
        Ok(raw_at(raw, &tokens).map(RawValue::get))
    }
}
