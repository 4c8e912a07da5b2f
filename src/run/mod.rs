//! Running jobs: selection, ordering by `depends_on`, bounded concurrency,
//! one stream per partition, the single writer thread behind a bounded
//! channel, cancellation, and the run summary.
//!
//! The flow of one job:
//! 1. select (`select.rs`, `due.rs`) and order (`scheduler.rs`) the jobs;
//! 2. plan its streams: its unfinished partitions, listed in batches
//!    (`partitions.rs`);
//! 3. gate: each pass over the streams goes through a stream gate
//!    (`gate/`): the plain gate lets every stream run (the job holds its
//!    lease, `job_lease.rs`); the sharded gate claims each stream in the
//!    invocation and ends the claim (`sharded/`);
//! 4. fetch each stream from its checkpoint (`stream.rs`, through `fetch`);
//! 5. write its pages through the one writer thread (`writer.rs`);
//! 6. finish: complete the pass, record the run's outcome (`job.rs`,
//!    `outcome.rs`), and add it to the summary (`summary.rs`).
//!
//! Dependencies run one way, from the bottom up: `error`, `mode`,
//! `assignment`, `holder`, `heartbeat`, `env`; `partitions`, `stream`;
//! `gate/`; `job_lease`, `job`; `sharded/`; `scheduler`; `execute`.

mod assignment;
mod dry_run;
mod due;
mod env;
mod error;
mod execute;
mod gate;
mod heartbeat;
mod holder;
mod incremental;
mod job;
mod job_lease;
mod mode;
mod outcome;
mod partitions;
mod preview;
mod progress;
mod scheduler;
mod select;
mod sharded;
mod stream;
mod summary;
#[cfg(test)]
pub(crate) mod test_support;
mod windows;
mod writer;

pub use assignment::{
    COUNT_ENV, INDEX_ENV, INVOCATION_ENV, ShardSpec, Sharding, job_shard, owner, resolve_sharding,
    stream_shard,
};
pub use dry_run::dry_run;
pub use due::{is_due, next_due};
pub use error::RunError;
pub use execute::{execute, execute_observed};
pub use holder::STALE_ENV;
pub use mode::JobMode;
pub use partitions::date_slices;
pub use preview::{Preview, PreviewError, PreviewRequest, PreviewStart, PreviewStop, preview};
pub use progress::{NoProgress, Progress, StreamProgress};
pub use select::{SelectError, select_due, select_jobs};
pub use summary::{JobStatus, JobSummary, RunSummary, ShardReport, StreamCounts};
pub use writer::{Writer, WriterThread};
