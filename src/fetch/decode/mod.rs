//! From a response to what the rest of fetch reads: the records of a page
//! (`records`: text as received, primary key, columns, incremental max),
//! JSON pointers over raw text (`pointer`), the one pass that finds the
//! records and the pagination values without building a tree (`scan`), the
//! body as pagination reads it (`body`), the Link header (`link`), and a
//! stream's partition values in its records' key and columns
//! (`partition_values`).

mod body;
mod link;
mod partition_values;
mod pointer;
pub(super) mod records;
mod scan;

pub(crate) use body::BodyView;
pub use link::{Link, LinkError, next_link, parse_links};
pub(crate) use partition_values::{PartitionValues, without_parts};
pub use pointer::{PointerError, raw_at, tokens};
pub use records::primary_key_of;
pub(crate) use records::{compare, read_page};
