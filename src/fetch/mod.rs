//! HTTP: building requests, retries, one state machine per pagination type
//! with loop and page-cap guards. Yields `Page { records, position }`; never
//! touches the database (run hands the resume position in).

mod types;

pub use types::*;
