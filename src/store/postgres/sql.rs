//! JSON in PostgreSQL's terms: a JSON pointer as a path for `#>>`.

use crate::store::error::StoreError;

/// RFC 6901 pointer (`/a/b~1c/0`) to a PostgreSQL path array for `#>>`
/// (`{a,b/c,0}` as text[]): PostgreSQL reads each token as a key or an
/// index by what it finds, and any key can be expressed.
pub(crate) fn pointer_to_tokens(pointer: &str) -> Result<Vec<String>, StoreError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(StoreError::Pointer {
            pointer: pointer.to_string(),
            reason: "a JSON pointer starts with '/' (hint: write \"/field\")",
        });
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}
