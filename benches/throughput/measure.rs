//! Running a child process and reading its wall time and peak RSS.
//!
//! Peak RSS comes from `wait4`'s `ru_maxrss` (the kernel's high-water mark
//! of the child's resident set, in KiB on Linux): exact, with no polling
//! that could miss a short peak. One trap: at `exec` the kernel folds the
//! high-water mark of the address space being replaced into the child's
//! `ru_maxrss`, and `Command::spawn` may share the parent's address space
//! until then (vfork), so a child of the benchmark (which holds the page
//! server's 230 MB) would report at least that. So the benchmark re-runs
//! itself as a small launcher ([`LAUNCH_FLAG`]) that spawns and measures the
//! child: the launcher's own footprint is a few MiB, far below apisync's.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// First argument that turns the benchmark binary into the launcher:
/// `throughput --launch-and-measure USAGE_FILE PROGRAM ARGS...`.
pub const LAUNCH_FLAG: &str = "--launch-and-measure";

/// What a finished child used.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub wall: Duration,
    /// User plus system CPU time: unlike wall time, barely moved by other
    /// processes on a busy machine.
    pub cpu: Duration,
    pub max_rss_kib: u64,
    pub exit_code: Option<i32>,
}

impl Usage {
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Spawn `command`, wait for it with `wait4` and return its usage. Blocks:
/// call it from `spawn_blocking` when a runtime serves the child.
pub fn run(mut command: Command) -> std::io::Result<Usage> {
    let started = Instant::now();
    let child = command.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped (std's `Child` is
        // never waited on); status and usage point at live locals.
        let done = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if done == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let wall = started.elapsed();
    // The child is reaped: forget it so its Drop does nothing further.
    drop(child);
    let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(Usage {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        exit_code,
    })
}

/// Run `command` through the launcher (see the module doc), with its
/// stdout and stderr in `<stem>.stdout` and `<stem>.stderr`. Blocks.
pub fn run_launched(command: Command, stem: &Path) -> Result<Usage, String> {
    let file = |ext: &str| {
        let path = stem.with_extension(ext);
        std::fs::File::create(&path).map_err(|err| format!("create {}: {err}", path.display()))
    };
    let usage_file = stem.with_extension("usage");
    let me = std::env::current_exe().map_err(|err| format!("find the benchmark binary: {err}"))?;
    let mut launcher = Command::new(me);
    launcher
        .arg(LAUNCH_FLAG)
        .arg(&usage_file)
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::from(file("stdout")?))
        .stderr(Stdio::from(file("stderr")?));
    copy_setup(&command, &mut launcher);
    let status = launcher
        .status()
        .map_err(|err| format!("run the launcher: {err}"))?;
    let text = std::fs::read_to_string(&usage_file).unwrap_or_default();
    let fields: Vec<u64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields[..] {
        [nanos, cpu_nanos, max_rss_kib, code] if status.success() => Ok(Usage {
            wall: Duration::from_nanos(nanos),
            cpu: Duration::from_nanos(cpu_nanos),
            max_rss_kib,
            exit_code: i32::try_from(code).ok(),
        }),
        _ => Err(format!(
            "the launcher failed ({status}); see {}",
            stem.with_extension("stderr").display()
        )),
    }
}

/// The launcher: run `PROGRAM ARGS...` with this process's environment,
/// directory and stdio, and write `wall_nanos cpu_nanos max_rss_kib exit_code` to
/// USAGE_FILE (exit code 255 when killed by a signal).
pub fn launch(args: &[String]) -> ExitCode {
    let [usage_file, program, rest @ ..] = args else {
        eprintln!("{LAUNCH_FLAG} USAGE_FILE PROGRAM ARGS...");
        return ExitCode::from(2);
    };
    let mut command = Command::new(program);
    command.args(rest);
    match run(command) {
        Ok(usage) => {
            let line = format!(
                "{} {} {} {}\n",
                usage.wall.as_nanos(),
                usage.cpu.as_nanos(),
                usage.max_rss_kib,
                usage.exit_code.unwrap_or(255)
            );
            match std::fs::write(usage_file, line) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("write {usage_file}: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            eprintln!("run {program}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Give `into` the directory and environment changes of `from`.
pub fn copy_setup(from: &Command, into: &mut Command) {
    if let Some(dir) = from.get_current_dir() {
        into.current_dir(dir);
    }
    for (key, value) in from.get_envs() {
        match value {
            Some(value) => into.env(key, value),
            None => into.env_remove(key),
        };
    }
}
