//! One pass over a job's streams: its unfinished partitions, read in
//! batches, those the gate wants, each let in by the gate, run (at most
//! `stream_width` at once) and let out again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Ended, Entry, StreamGate};
use crate::fetch::{RequestStats, StatsSnapshot};
use crate::plan::{JobPlan, Partition};
use crate::run::env::RunEnv;
use crate::run::error::RunError;
use crate::run::mode::JobMode;
use crate::run::partitions::unfinished_partitions;
use crate::run::stream::{StreamEnv, StreamOutcome, StreamWatch, run_stream};
use crate::run::summary::JobSummary;

/// One trip through a job's unfinished partitions: all of them, or those
/// the gate wants, each let in by the gate before it runs.
pub(crate) struct Pass<'a> {
    pub env: &'a RunEnv,
    pub job: &'a Arc<JobPlan>,
    pub mode: &'a JobMode,
    pub cancel: &'a CancellationToken,
    pub stream_env: &'a StreamEnv,
}

/// Whether a stream of a pass ran here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// It ran here; `stolen`: it is another shard's.
    Here { stolen: bool },
    /// Nothing to do (done, or failed and not ours to retry).
    Skipped,
    /// Another live process holds it.
    Busy,
}

/// What one stream of a pass did: its partition, counts, result, and
/// whether it ran here.
type StreamRun = (
    String,
    (StreamOutcome, StatsSnapshot),
    Result<(), RunError>,
    Ran,
);

impl Pass<'_> {
    /// Run the pass through `gate`, adding its counts to `summary` and its
    /// first stream error to `first_error`; the number of streams another
    /// live process held. An `Err` is a failure to list partitions.
    pub(crate) async fn run<G: StreamGate>(
        &self,
        gate: &G,
        summary: &mut JobSummary,
        first_error: &mut Option<RunError>,
    ) -> Result<usize, RunError> {
        let (env, job, cancel) = (self.env, self.job, self.cancel);
        self.begin_changed_only().await?;
        // Partitions arrive in batches, finished ones already left out; no new
        // one starts once the job is cancelled.
        let stopped_early = AtomicBool::new(false);
        let mut results = unfinished_partitions(env, job, self.mode, gate.now())?
            .filter(move |partition| {
                let wanted = match partition {
                    Ok(partition) => gate.wants(job, &partition.key),
                    Err(_) => true,
                };
                futures::future::ready(wanted)
            })
            .take_while(|_| {
                let go_on = !cancel.is_cancelled();
                if !go_on {
                    stopped_early.store(true, Ordering::Relaxed);
                }
                futures::future::ready(go_on)
            })
            .map(|partition| {
                let (stream_env, job) = (self.stream_env, job.clone());
                // The whole-job stream has no partition key, and logs none.
                let span = tracing::error_span!("stream", partition = tracing::field::Empty);
                if let Ok(partition) = &partition
                    && !partition.key.is_empty()
                {
                    span.record("partition", partition.key.as_str());
                }
                async move { run_one(env, stream_env, job, partition, gate).await }.instrument(span)
            })
            .buffer_unordered(env.stream_width.max(1))
            .boxed();
        let mut busy = 0;
        while let Some((partition, (counts, requests), result, ran)) = results.next().await {
            summary.add_requests(&requests);
            summary.pages += counts.pages;
            summary.records += counts.records;
            summary.interrupted |= counts.interrupted;
            match (ran, summary.streams.as_mut()) {
                (Ran::Here { stolen }, Some(streams)) => {
                    streams.run += 1;
                    streams.stolen += u64::from(stolen);
                }
                (Ran::Busy, _) => busy += 1,
                _ => {}
            }
            if let Err(err) = result {
                tracing::error!(job = %job.name, partition = %partition, error = %err, "stream failed");
                first_error.get_or_insert(err);
            }
        }
        drop(results);
        summary.interrupted |= stopped_early.load(Ordering::Relaxed);
        Ok(busy)
    }

    /// A `changed_only` job's pass records its start before it reads its
    /// parents (see `Streams::begin_pass`): a parent row written after
    /// that start is then either read by this pass or newer than the start
    /// the next pass counts from. Every pass of a run calls it (a sharded
    /// run has one per phase, and several shards): the first start stays.
    /// A sharded pass starts here too, not at the invocation's start: the
    /// parents it waited for wrote their rows after that, and counting
    /// from it would fetch their children again on the next pass.
    async fn begin_changed_only(&self) -> Result<(), RunError> {
        let parent = self
            .job
            .partitions
            .as_ref()
            .and_then(|p| p.changed_only_parent());
        match (parent, &self.mode.backfill) {
            (Some(parent), None) => {
                let (job, parent) = (self.job.name.clone(), parent.to_string());
                let table = self.env.parent_tables.get(&parent).cloned();
                let table = table.unwrap_or_else(|| parent.clone());
                Ok(self.env.writer.begin_pass(job, parent, table).await??)
            }
            _ => Ok(()),
        }
    }
}

/// One stream: let in by the gate first, let out after.
async fn run_one<G: StreamGate>(
    env: &RunEnv,
    stream_env: &StreamEnv,
    job: Arc<JobPlan>,
    partition: Result<Partition, RunError>,
    gate: &G,
) -> StreamRun {
    let nothing = || (StreamOutcome::default(), StatsSnapshot::default());
    let partition = match partition {
        Ok(partition) => partition,
        Err(err) => return (String::new(), nothing(), Err(err), Ran::Skipped),
    };
    let label = partition.key.clone();
    let stolen = match gate.enter(env, &job, &label).await {
        Ok(Entry::Run { stolen }) => stolen,
        Ok(Entry::Skip) => return (label, nothing(), Ok(()), Ran::Skipped),
        Ok(Entry::Busy) => return (label, nothing(), Ok(()), Ran::Busy),
        Err(err) => return (label, nothing(), Err(err), Ran::Skipped),
    };
    // Per-stream counters, so a live display can show each stream's
    // retries; the job adds them up.
    let stats = Arc::new(RequestStats::new());
    let watch = StreamWatch {
        progress: env.progress.stream_started(&job.name, &label, &stats),
        stats,
    };
    // A partitioned job's rows get their partition's values in
    // `_partition`: the stream writes with its own spec holding them, made
    // once here; an unpartitioned job's streams share the job's.
    let own_env;
    let stream_env = match stream_env.table.for_partition(|| partition.object()) {
        Some(table) => {
            own_env = StreamEnv {
                table: Arc::new(table),
                ..stream_env.clone()
            };
            &own_env
        }
        None => stream_env,
    };
    let mut counts = StreamOutcome::default();
    let mut result = run_stream(stream_env, &watch, job.clone(), partition, &mut counts).await;
    let ended = match (&result, counts.interrupted) {
        (Err(_), _) => Ended::Failed,
        (Ok(()), true) => Ended::Interrupted,
        (Ok(()), false) => Ended::Done,
    };
    if let Err(err) = gate.leave(env, &job.name, &label, ended).await
        && result.is_ok()
    {
        result = Err(err);
    }
    (
        label,
        (counts, watch.stats.snapshot()),
        result,
        Ran::Here { stolen },
    )
}
