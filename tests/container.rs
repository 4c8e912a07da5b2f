//! The container image's essence without a registry: the static release
//! binary, alone in an empty root (as in the `FROM scratch` image of the
//! Dockerfile), runs `apisync demo` and resolves a host name from
//! /etc/hosts the way it will in a pod, with no shared library, NSS module,
//! CA bundle or shell beside it.
//!
//! Needs root (chroot) and the binary the Dockerfile builds, named by
//! `APISYNC_STATIC_BINARY` (.ci/run builds it). Without either the tests
//! skip with a note, except under CI (env `CI` set), where they fail.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BINARY_ENV: &str = "APISYNC_STATIC_BINARY";
/// Where the Dockerfile puts the binary.
const IN_IMAGE: &str = "/usr/local/bin/apisync";

/// The static binary, or None (with a note) when this machine cannot run
/// the test; under CI that is a failure instead.
fn static_binary() -> Option<PathBuf> {
    let why = match (std::env::var_os(BINARY_ENV), unsafe { libc::geteuid() }) {
        (Some(path), 0) => return Some(PathBuf::from(path)),
        (None, _) => format!("{BINARY_ENV} is not set (hint: see .ci/run)"),
        (Some(_), _) => "chroot needs root".to_string(),
    };
    if std::env::var_os("CI").is_some() {
        panic!("the container test cannot run under CI: {why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// An empty root holding only what the image holds: the binary and /tmp.
fn image_root(binary: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let target = root.path().join(IN_IMAGE.trim_start_matches('/'));
    std::fs::create_dir_all(target.parent().expect("has a parent")).expect("bin dir");
    std::fs::copy(binary, &target).expect("copy the binary");
    for dir in ["tmp", "data", "dev"] {
        std::fs::create_dir_all(root.path().join(dir)).expect("dir");
    }
    // Every container runtime provides /dev/urandom (and /dev/null); the
    // static binary reads its random seed from it (getrandom's fallback
    // when glibc's symbol cannot be looked up), so the chroot has it too.
    for (name, minor) in [("null", 3), ("random", 8), ("urandom", 9)] {
        let path = std::ffi::CString::new(format!("{}/dev/{name}", root.path().display()))
            .expect("no NUL");
        // SAFETY: a plain system call on a path we own.
        let made = unsafe {
            libc::mknod(
                path.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(1, minor),
            )
        };
        assert_eq!(
            made,
            0,
            "mknod /dev/{name}: {}",
            std::io::Error::last_os_error()
        );
    }
    root
}

/// Run the binary inside `root` with an environment as empty as a pod's.
fn run_in(root: &Path, args: &[&str]) -> Output {
    let root_c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).expect("no NUL");
    let mut command = Command::new(IN_IMAGE);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin")
        .env("TMPDIR", "/tmp");
    // SAFETY: chroot and chdir are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().expect("start the binary in the chroot")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn rows(database: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(database).expect("open the database");
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
    .expect("count rows")
}

#[test]
fn the_static_binary_runs_the_demo_in_an_empty_root() {
    let Some(binary) = static_binary() else {
        return;
    };
    let root = image_root(&binary);
    let output = run_in(
        root.path(),
        &["--db", "/data/demo.db", "demo", "--port", "0"],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(rows(&root.path().join("data/demo.db"), "demo_orders") > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_resolve_from_etc_hosts_as_in_a_pod() {
    let Some(binary) = static_binary() else {
        return;
    };
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            { "id": 1 }, { "id": 2 }
        ])))
        .mount(&server)
        .await;
    let root = image_root(&binary);
    let project = root.path().join("project");
    std::fs::create_dir_all(project.join("jobs")).expect("jobs dir");
    std::fs::write(
        project.join("apisync.toml"),
        "database = \"/data/items.db\"\n",
    )
    .expect("project file");
    let port = server.address().port();
    let job = format!(
        "[request]\nurl = \"http://api.apisync.test:{port}/items\"\n\n\
         [records]\nprimary_key = [\"/id\"]\n\n\
         [retry]\nmax_attempts = 1\n"
    );
    std::fs::write(project.join("jobs/items.toml"), job).expect("job file");
    let args = ["--config", "/project/apisync.toml", "run", "items"];

    // No /etc/hosts (and no DNS server): the name cannot resolve, and the
    // error says which host.
    let output = tokio::task::spawn_blocking({
        let root = root.path().to_path_buf();
        move || run_in(&root, &args)
    })
    .await
    .expect("join");
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("api.apisync.test"),
        "{}",
        text(&output)
    );

    // With the /etc/hosts a pod gets, the name resolves through glibc's
    // built-in files lookup (no NSS module in the root).
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    std::fs::write(
        root.path().join("etc/hosts"),
        "127.0.0.1 localhost\n127.0.0.1 api.apisync.test\n",
    )
    .expect("hosts");
    let output = tokio::task::spawn_blocking({
        let root = root.path().to_path_buf();
        move || run_in(&root, &args)
    })
    .await
    .expect("join");
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(rows(&root.path().join("data/items.db"), "items"), 2);
}
