//! What a response says about the next page: the next cursor or URL,
//! `has_more`, and the total records or pages. Each type reads its own
//! (`Paging::facts`) with the readers here, which say what a value must be.

use serde_json::Value;
use url::Url;

use crate::fetch::DecodeError;
use crate::fetch::decode::BodyView;

/// What one response says about the next page in its type's terms
/// (`has_more` is every type's, read by the paginator).
#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub next_cursor: Option<String>,
    pub next_url: Option<Url>,
    pub total: Option<u64>,
}

pub(super) fn fatal(message: String) -> DecodeError {
    DecodeError {
        message,
        retryable: false,
    }
}

/// The value at `pointer` in the body, parsed; None when absent.
pub(super) fn at(body: &BodyView<'_>, pointer: &str) -> Result<Option<Value>, DecodeError> {
    body.at(pointer)?
        .map(|raw| {
            serde_json::from_str(raw)
                .map_err(|e| fatal(format!("the value at {pointer} is not JSON: {e}")))
        })
        .transpose()
}

/// A next token or URL: strings and numbers count; null, absent or ""
/// mean "no next page".
pub(super) fn text(value: Option<Value>, pointer: &str) -> Result<Option<String>, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(fatal(format!(
            "the value at {pointer} is {other}, not a string (hint: check the pagination pointers)"
        ))),
    }
}

/// `has_more`: a boolean; absent or null mean "continue".
pub(super) fn has_more(value: Option<Value>, pointer: &str) -> Result<Option<bool>, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(other) => Err(fatal(format!(
            "the value at {pointer} is {other}, not a boolean (hint: check pagination.has_more_path)"
        ))),
    }
}

/// A count: a non-negative integer, or a string of one.
pub(super) fn count(value: Option<Value>, pointer: &str) -> Result<Option<u64>, DecodeError> {
    let parsed = match &value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    parsed.map(Some).ok_or_else(|| {
        fatal(format!(
            "the value at {pointer} is {}, not a count (hint: check the pagination total pointer)",
            value.unwrap_or(Value::Null)
        ))
    })
}

/// JSON equality as a reader means it: numbers by value (`0` is `0.0`),
/// everything else exactly (`1` is not `"1"`).
pub(super) fn same(found: &Value, wanted: &Value) -> bool {
    match (found, wanted) {
        // Two integers compare exactly; a float on either side by value.
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            a.as_f64() == b.as_f64()
        }
        _ => found == wanted,
    }
}
