//! Who holds what: this process's holder id, whether another holder is
//! still alive, and when a silent one counts as gone. Job leases
//! (`job_lease.rs`) and a sharded run's claims (`sharded/`) judge holders
//! by these same rules, so a process is dead or alive to both at once.
//! The rows themselves live in the store (`store/leases.rs`).

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
