//! PostgreSQL keeps its write-ahead log itself: nothing to copy by hand,
//! so the [`Wal`] defaults (which do nothing) stand.

use super::PgStore;
use crate::store::backend::Wal;

impl Wal for PgStore {}
