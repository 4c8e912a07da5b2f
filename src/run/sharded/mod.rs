//! A sharded run (`run --shard INDEX/COUNT --invocation ID [--steal]`):
//! several processes share one database and split the streams of every
//! job between them by [`crate::run::assignment::owner`].
//!
//! Per process: register as a holder of the invocation and keep a
//! heartbeat (`membership.rs`). Per job: skip it if its pass already
//! completed in the invocation; wait (through the database) until every
//! selected parent completed in the invocation, whichever shard ran it;
//! then claim and run this shard's streams, and with `--steal` every other
//! stream no live process holds; finally complete the job's pass if every
//! stream of it is done, whoever ran them. Job leases are not used: stream
//! claims take their place.
//!
//! The files, each using only those before it:
//! - `env.rs`: what the jobs of a sharded run share; the phases of a job.
//! - `membership.rs`: this process as a holder of the invocation.
//! - `undone.rs`: the streams of a job not done in the invocation;
//!   completing its pass.
//! - `gate.rs`: the sharded gate (phases, claims) around `run::job`.
//! - `parents.rs`: a child waits for its parents on every shard.
//! - `job.rs`: one sharded job, from its start.
//! - `finish.rs`: the end of a shard (`--steal` survivors, `held` lines).
//! - `invocation.rs`: join, run the jobs, finish, leave.

mod env;
mod finish;
mod gate;
mod invocation;
mod job;
mod membership;
mod parents;
mod undone;

pub(crate) use invocation::ShardedRun;
