//! (stub: filled in by its issue)
pub mod tokens;
