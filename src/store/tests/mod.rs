//! Behaviour tests of the store against real SQLite databases (in memory or
//! temp files) with hand-made pages.

mod leases;
mod replace;
mod status;
mod streams;
mod support;
mod swap_atomic;
mod writes;
