//! Pure `definition -> plan`: defaults applied, URLs parsed, pagination
//! resolved, identifiers checked. Returns every problem at once; no I/O.

mod types;

pub use types::*;
