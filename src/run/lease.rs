//! The job lease from the runner's side: who this process is, taking the
//! lease before a job runs (or waiting for it with `--wait`), renewing it
//! through the writer thread while the job runs, and giving it back at the
//! end, whatever the outcome.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::writer::Renewal;
use super::{RunEnv, RunError, Writer};
use crate::store::LeaseOutcome;

/// How often a running job renews its lease.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// A heartbeat older than this means the holder is gone. Far above the
/// heartbeat period: the writer may wait up to its busy timeout for another
/// process's write lock before it can renew.
pub(super) const STALE_AFTER: Duration = Duration::from_secs(180);

/// For tests only: the stale limit (a humantime duration) of job leases and
/// of sharded runs' stream claims alike, so a test of a dead holder need not
/// wait three minutes.
pub const STALE_ENV: &str = "APISYNC_STALE_AFTER";

/// A holder whose heartbeat is older than this is gone: [`STALE_AFTER`],
/// unless a test set [`STALE_ENV`]. One limit for leases and claims, so a
/// process is dead or alive to both at once.
pub(super) fn stale_after() -> Duration {
    static LIMIT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var(STALE_ENV)
            .ok()
            .and_then(|text| humantime::parse_duration(&text).ok())
            .unwrap_or(STALE_AFTER)
    })
}

/// `--wait` polls the lease with this backoff, doubling up to the cap.
const WAIT_FIRST: Duration = Duration::from_millis(250);
const WAIT_CAP: Duration = Duration::from_secs(10);

/// This process's holder id: `hostname:pid:random@start`. The random part
/// tells apart two processes that reused a pid in the database; `start`
/// (the process's start time in clock ticks since boot, field 22 of
/// `/proc/self/stat`; left out where there is no /proc) lets another
/// process on this host tell a reused pid from the holder itself.
pub(crate) fn holder_id() -> String {
    let start = process_start(std::process::id())
        .map(|ticks| format!("@{ticks}"))
        .unwrap_or_default();
    format!(
        "{}:{}:{:08x}{start}",
        hostname(),
        std::process::id(),
        rand::random::<u32>()
    )
}

/// What `/proc/PID/stat` says of a process: its state letter (field 3)
/// and its start time in clock ticks since boot (field 22). None when the
/// file cannot be read or parsed.
fn process_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 is the command in parentheses and may itself hold spaces
    // and parentheses: the fields after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21 lie between the state and the start time.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn process_start(pid: u32) -> Option<u64> {
    process_stat(pid).map(|(_, start)| start)
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().replace(':', "_"))
        .unwrap_or_default();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// A holder on this host whose process no longer runs is dead for sure:
/// its lease is taken at once instead of after [`STALE_AFTER`]. No longer
/// runs: no `/proc/PID`, or a zombie (`Z`, killed but not yet reaped by
/// its parent, still listed) or dying (`X`) process, or a process whose
/// start time differs from the one in the holder id (the pid was reused;
/// holder ids of older versions carry no start time, and are then judged
/// by the pid alone). Holders on other hosts, or when liveness cannot be
/// told (no /proc), are judged by their heartbeat only.
pub(super) fn holder_is_dead(holder: &str, this_holder: &str) -> bool {
    let (Some(theirs), Some(mine)) = (HolderId::parse(holder), HolderId::parse(this_holder)) else {
        return false;
    };
    if theirs.host != mine.host
        || theirs.pid == mine.pid
        || !std::path::Path::new("/proc/self").exists()
    {
        return false;
    }
    if !std::path::Path::new(&format!("/proc/{}", theirs.pid)).exists() {
        return true;
    }
    match process_stat(theirs.pid) {
        Some(('Z' | 'X' | 'x', _)) => true,
        Some((_, start)) => theirs.start.is_some_and(|recorded| recorded != start),
        // Listed but unreadable (it may have just exited): alive until
        // the next look, or until its heartbeat is stale.
        None => false,
    }
}

/// The parts of a holder id that tell whether it runs on this host.
struct HolderId<'a> {
    host: &'a str,
    pid: u32,
    start: Option<u64>,
}

impl<'a> HolderId<'a> {
    fn parse(id: &'a str) -> Option<HolderId<'a>> {
        let mut parts = id.rsplitn(3, ':');
        let random = parts.next()?;
        let pid = parts.next()?.parse::<u32>().ok()?;
        let host = parts.next()?;
        let start = match random.split_once('@') {
            Some((_, start)) => Some(start.parse::<u64>().ok()?),
            None => None,
        };
        Some(HolderId { host, pid, start })
    }
}

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
        delay = (delay * 2).min(WAIT_CAP);
    }
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

/// A task that renews something of this process's in the database every
/// `every`, through the writer, until stopped: a job lease, or a sharded
/// run's holder row.
pub(super) struct Heartbeat {
    stop: CancellationToken,
    task: JoinHandle<bool>,
}

impl Heartbeat {
    /// `renew` answers false when what it renews is no longer this
    /// process's (another one took it over): the heartbeat ends there and
    /// `lost` runs. A failed renewal is a warning; the next one may work.
    pub(super) fn start(
        writer: &Writer,
        every: Duration,
        what: String,
        renew: Renewal,
        lost: impl FnOnce() + Send + 'static,
    ) -> Heartbeat {
        let stop = CancellationToken::new();
        let (stopped, writer) = (stop.clone(), writer.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return false,
                    _ = tokio::time::sleep(every) => {}
                }
                match writer.renew(renew.clone()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        tracing::error!(
                            "another process took {what} over (this one looked dead); stopping what it covers"
                        );
                        lost();
                        return true;
                    }
                    Ok(Err(err)) => tracing::warn!(error = %err, "could not renew {what}"),
                    Err(err) => tracing::warn!(error = %err, "could not renew {what}"),
                }
            }
        });
        Heartbeat { stop, task }
    }

    /// Stop renewing. The task holds a Writer handle: it must end before
    /// the writer can, so this waits for it. True when a renewal found it
    /// taken over.
    pub(super) async fn stop(self) -> bool {
        self.stop.cancel();
        self.task.await.unwrap_or(false)
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
    use crate::run::progress::NoProgress;
    use crate::store::Store;

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
            cancel: CancellationToken::new(),
            job_concurrency: 1,
            stream_width: 1,
            parent_tables: HashMap::new(),
            database: crate::plan::Database::sqlite("unused.db"),
            holder: holder.into(),
            progress: Arc::new(NoProgress),
            shard: None,
            reader: std::sync::Mutex::new(None),
        }
    }

    /// The heartbeat renews the lease while the job runs; once another
    /// process has taken the lease over, the next heartbeat stops the job
    /// (its cancel token fires) and release leaves the new holder's lease.
    #[tokio::test]
    async fn a_lost_lease_stops_the_job_and_is_not_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&crate::plan::Database::sqlite(dir.path().join("lease.db")))
            .expect("store");
        let (writer, thread) = Writer::spawn(store).expect("writer");
        let env = env(writer.clone(), "here:1:a");
        let acquired = writer
            .try_acquire_lease(
                "orders".into(),
                "here:1:a".into(),
                STALE_AFTER,
                Box::new(|_| false),
            )
            .await
            .expect("writer")
            .expect("store");
        assert_eq!(acquired, LeaseOutcome::Acquired { replaced: None });
        let lease = start_heartbeat(&env, "orders", Duration::from_millis(20));
        // Another process decides this one is dead and takes the lease.
        let taken = writer
            .try_acquire_lease(
                "orders".into(),
                "there:2:b".into(),
                STALE_AFTER,
                Box::new(|_| true),
            )
            .await
            .expect("writer")
            .expect("store");
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
        let holder = writer
            .try_acquire_lease(
                "orders".into(),
                "third:3:c".into(),
                STALE_AFTER,
                Box::new(|_| false),
            )
            .await
            .expect("writer")
            .expect("store");
        assert!(
            matches!(&holder, LeaseOutcome::HeldBy { holder, .. } if holder == "there:2:b"),
            "the new holder keeps its lease: {holder:?}"
        );
        drop((env, writer));
        thread.join();
    }

    #[test]
    fn only_a_vanished_process_on_this_host_is_known_dead() {
        let me = holder_id();
        let host = hostname();
        // Above the largest pid Linux hands out (pid_max is at most 2^22).
        let gone = format!("{host}:999999999:abcd");
        assert!(holder_is_dead(&gone, &me));
        assert!(
            !holder_is_dead(&format!("{host}:1:abcd"), &me),
            "pid 1 lives"
        );
        assert!(!holder_is_dead("elsewhere:999999999:abcd", &me));
        assert!(!holder_is_dead(&me, &me));
        assert!(!holder_is_dead("garbage", &me));
        assert!(me.contains('@'), "the id carries the start time: {me}");
    }

    /// A killed process its parent has not reaped yet is still listed in
    /// /proc (state `Z`): it is dead all the same.
    #[test]
    fn a_zombie_on_this_host_is_dead() {
        let me = holder_id();
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn a child");
        let pid = child.id();
        // Not reaped: it stays a zombie until `wait`. Poll its state with
        // a bound (a deadline for a hung machine, not a synchronisation).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while process_stat(pid).map(|(state, _)| state) != Some('Z') {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::yield_now();
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        let zombie = format!("{}:{pid}:abcd", hostname());
        assert!(holder_is_dead(&zombie, &me), "a zombie is dead");
        child.wait().expect("reap");
    }

    /// A live process with the holder's pid but another start time is a
    /// reused pid: the holder is dead. With its own start time it lives.
    #[test]
    fn a_reused_pid_is_told_apart_by_its_start_time() {
        let me = holder_id();
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn a child");
        let pid = child.id();
        let start = process_start(pid).expect("its start time");
        let host = hostname();
        assert!(!holder_is_dead(&format!("{host}:{pid}:abcd@{start}"), &me));
        assert!(holder_is_dead(
            &format!("{host}:{pid}:abcd@{}", start + 1),
            &me
        ));
        assert!(
            !holder_is_dead(&format!("{host}:{pid}:abcd"), &me),
            "no start time: by pid"
        );
        child.kill().expect("kill the child");
        child.wait().expect("reap");
    }
}
