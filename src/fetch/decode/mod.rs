//! From a response to what the rest of fetch reads: the records of a page
//! (`records`: text as received, primary key, columns, incremental max),
//! JSON pointers over raw text (`pointer`), the one pass that finds the
//! records and the pagination values without building a tree (`scan`), the
//! body as pagination reads it (`body`), and the Link header (`link`).

mod body;
mod link;
mod pointer;
pub(super) mod records;
mod scan;

pub(crate) use body::BodyView;
pub use link::{Link, LinkError, next_link, parse_links};
pub use pointer::{PointerError, raw_at, tokens};
pub use records::primary_key_of;
pub(crate) use records::{compare, read_page};
