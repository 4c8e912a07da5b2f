//! Behaviour tests of the store against real SQLite databases (in memory or
//! temp files) with hand-made pages.

mod claims;
mod dead_runs;
mod job_leases;
mod leases;
mod migrations;
mod partition_column;
mod passes;
mod reader;
mod replace;
mod status;
mod streams;
mod support;
mod swap_atomic;
mod writes;
