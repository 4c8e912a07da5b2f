//! The job lease from the runner's side: taking the lease before a plain
//! (unsharded) job runs, or waiting for it with `--wait`; renewing it
//! through a [`Heartbeat`] while the job runs; and giving it back at the
//! end, whatever the outcome. The lease rows are the store's
//! (`store/sqlite/job_leases.rs`, `store/postgres/job_leases.rs`); a sharded run uses stream claims instead.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::env::RunEnv;
use super::error::RunError;
use super::heartbeat::{HEARTBEAT_EVERY, Heartbeat};
use super::holder::{holder_is_dead, stale_after};
use crate::run::writer::Renewal;
use crate::store::LeaseOutcome;

/// `--wait` polls the lease with this backoff, doubling up to the cap.
const WAIT_FIRST: Duration = Duration::from_millis(250);
const WAIT_CAP: Duration = Duration::from_secs(10);

/// The outcome of [`acquire`].
pub(crate) enum Acquired {
    Lease(Lease),
    /// Another live process runs the job; the text says who, for the summary.
    Busy(String),
    /// Cancelled while waiting.
    Cancelled,
}

/// A held lease: its heartbeat task and the job's own cancellation token,
/// which fires on SIGINT/SIGTERM and when the lease is lost.
pub(crate) struct Lease {
    job: String,
    pub cancel: CancellationToken,
    heartbeat: Heartbeat,
}

/// Take the lease on `job`; with `wait`, poll until it is free (or the run
/// is cancelled) instead of giving up.
pub(crate) async fn acquire(env: &RunEnv, job: &str, wait: bool) -> Result<Acquired, RunError> {
    let mut delay = WAIT_FIRST;
    let mut announced = false;
    loop {
        let (name, holder) = (job.to_string(), env.holder.clone());
        let outcome = env
            .writer
            .try_acquire_lease(
                name,
                holder.clone(),
                stale_after(),
                Box::new(move |other| holder_is_dead(other, &holder)),
            )
            .await??;
        match outcome {
            LeaseOutcome::Acquired { replaced } => {
                if let Some(old) = replaced {
                    tracing::warn!(job, previous_holder = %old,
                        "took over the lease of a process that stopped without releasing it; its unfinished run is marked interrupted");
                }
                return Ok(Acquired::Lease(start_heartbeat(env, job, HEARTBEAT_EVERY)));
            }
            LeaseOutcome::HeldBy {
                holder,
                heartbeat_at,
            } => {
                let message = format!(
                    "job \"{job}\": skipped: another process is running it \
                     (holder {holder}, last heartbeat {heartbeat_at}) \
                     (hint: `apisync run --wait` waits for it instead)"
                );
                if !wait {
                    tracing::warn!("{message}");
                    return Ok(Acquired::Busy(message));
                }
                if !announced {
                    tracing::info!(job, %holder, "waiting for another process to finish the job");
                    announced = true;
                }
            }
        }
        tokio::select! {
            _ = env.cancel.cancelled() => return Ok(Acquired::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = next_wait(delay);
    }
}

/// The pause before asking for a busy lease again: doubling from
/// [`WAIT_FIRST`] up to [`WAIT_CAP`], so a long wait asks the database a few
/// times a minute, not in a busy loop.
fn next_wait(delay: Duration) -> Duration {
    (delay * 2).min(WAIT_CAP)
}

/// Renew the lease every `every` until released; cancel the job if the
/// lease turns out to be someone else's.
fn start_heartbeat(env: &RunEnv, job: &str, every: Duration) -> Lease {
    let cancel = env.cancel.child_token();
    let (name, holder, lost) = (job.to_string(), env.holder.clone(), cancel.clone());
    let heartbeat = Heartbeat::start(
        &env.writer,
        every,
        format!("the lease of job \"{job}\""),
        Renewal::Lease { job: name, holder },
        move || lost.cancel(),
    );
    Lease {
        job: job.to_string(),
        cancel,
        heartbeat,
    }
}

impl Lease {
    /// Stop the heartbeat and delete the lease. True when the lease had
    /// been lost to another process while the job ran.
    pub(crate) async fn release(self, env: &RunEnv) -> bool {
        let lost = self.heartbeat.stop().await;
        if !lost {
            let (job, holder) = (self.job.clone(), env.holder.clone());
            let released = env.writer.release_lease(job, holder).await;
            if !matches!(released, Ok(Ok(()))) {
                tracing::warn!(job = %self.job,
                    "could not release the lease; another process takes it over once its heartbeat is stale");
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::fetch::{HttpClient, HttpOptions};
    use crate::run::Writer;
    use crate::run::holder::STALE_AFTER;
    use crate::run::progress::NoProgress;
    use crate::store::Store;

    #[test]
    fn a_busy_lease_is_asked_for_again_after_doubling_pauses_up_to_the_cap() {
        let mut delay = WAIT_FIRST;
        let mut pauses = vec![delay];
        for _ in 0..8 {
            delay = next_wait(delay);
            pauses.push(delay);
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
    }

    fn env(writer: Writer, holder: &str) -> RunEnv {
        RunEnv {
            writer,
            http: HttpClient::new(&HttpOptions {
                concurrency: 1,
                user_agent: "apisync-test".into(),
                hosts: Default::default(),
            })
            .expect("client"),
            credentials: HashMap::new(),
            secrets: Default::default(),
            cancel: CancellationToken::new(),
            job_concurrency: 1,
            stream_width: 1,
            parent_tables: HashMap::new(),
            database: crate::plan::Database::sqlite("unused.db"),
            holder: holder.into(),
            progress: Arc::new(NoProgress),
            reader: std::sync::Mutex::new(None),
        }
    }

    /// `holder` asks for the lease of job "orders"; `dead`: whether it
    /// takes the current holder for dead.
    async fn ask(writer: &Writer, holder: &str, dead: bool) -> LeaseOutcome {
        writer
            .try_acquire_lease(
                "orders".into(),
                holder.into(),
                STALE_AFTER,
                Box::new(move |_| dead),
            )
            .await
            .expect("writer")
            .expect("store")
    }

    /// A writer over a database in `dir` whose job "orders" is leased to
    /// this process ("here:1:a"), and the run's env.
    async fn holding_orders(
        dir: &tempfile::TempDir,
    ) -> (Writer, crate::run::writer::WriterThread, RunEnv) {
        let store = Store::open(&crate::plan::Database::sqlite(dir.path().join("lease.db")))
            .expect("store");
        let (writer, thread) = Writer::spawn(store).expect("writer");
        let env = env(writer.clone(), "here:1:a");
        let acquired = ask(&writer, "here:1:a", false).await;
        assert_eq!(acquired, LeaseOutcome::Acquired { replaced: None });
        (writer, thread, env)
    }

    /// While the lease is this process's, each heartbeat moves its sign of
    /// life forward and nothing is reported lost: the job runs on.
    #[tokio::test]
    async fn a_held_lease_is_renewed_and_the_job_runs_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, thread, env) = holding_orders(&dir).await;
        let sign_of_life = || async {
            match ask(&writer, "other:2:b", false).await {
                LeaseOutcome::HeldBy {
                    holder,
                    heartbeat_at,
                } if holder == "here:1:a" => heartbeat_at,
                other => panic!("the lease left this process: {other:?}"),
            }
        };
        let first = sign_of_life().await;
        let lease = start_heartbeat(&env, "orders", Duration::from_millis(5));
        // Polled until a renewal shows (or the heartbeat gives up); the
        // timeout only turns a broken heartbeat into a failure, not a hang.
        let renewed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if lease.cancel.is_cancelled() {
                    return false;
                }
                if sign_of_life().await != first {
                    return true;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("a renewal within a minute");
        assert!(renewed, "the heartbeat reported a held lease as lost");
        assert!(!lease.cancel.is_cancelled());
        assert!(!lease.release(&env).await, "not reported as lost");
        drop(env);
        drop(writer);
        thread.join();
    }

    /// The heartbeat renews the lease while the job runs; once another
    /// process has taken the lease over, the next heartbeat stops the job
    /// (its cancel token fires) and release leaves the new holder's lease.
    #[tokio::test]
    async fn a_lost_lease_stops_the_job_and_is_not_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, thread, env) = holding_orders(&dir).await;
        let lease = start_heartbeat(&env, "orders", Duration::from_millis(20));
        // Another process decides this one is dead and takes the lease.
        let taken = ask(&writer, "there:2:b", true).await;
        assert_eq!(
            taken,
            LeaseOutcome::Acquired {
                replaced: Some("here:1:a".into())
            }
        );
        // The next heartbeat finds the lease gone. The timeout only turns a
        // broken heartbeat into a failure instead of a hang.
        tokio::time::timeout(Duration::from_secs(60), lease.cancel.cancelled())
            .await
            .expect("the heartbeat stopped the job");
        assert!(lease.release(&env).await, "reported as lost");
        let holder = ask(&writer, "third:3:c", false).await;
        assert!(
            matches!(&holder, LeaseOutcome::HeldBy { holder, .. } if holder == "there:2:b"),
            "the new holder keeps its lease: {holder:?}"
        );
        drop((env, writer));
        thread.join();
    }
}
