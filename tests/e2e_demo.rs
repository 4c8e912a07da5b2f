//! `apisync demo` works from any folder with nothing but the binary, and
//! syncs the three demo endpoints completely.

mod common;

use common::describe;

/// `apisync demo --port 0 ARGS...` run in `dir`, with the demo token unset.
async fn demo(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_apisync"))
        .args(["demo", "--port", "0"])
        .args(args)
        .current_dir(dir)
        .env_remove("DEMO_API_TOKEN")
        // The default level, whatever the caller's environment says.
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_syncs_every_demo_record_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = demo(dir.path(), &[]).await;
    let text = describe(&output);
    assert!(output.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for job in ["demo_customers", "demo_orders", "demo_events"] {
        assert!(stdout.contains(job), "summary lists {job}: {text}");
    }
    assert!(stdout.contains("sqlite3 apisync-demo.db"), "{text}");
    // A run where nothing went wrong warns of nothing (for instance, that
    // a lease it released could not be released).
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{text}");
    let db = rusqlite::Connection::open(dir.path().join("apisync-demo.db")).unwrap();
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count("demo_customers"), 2_000);
    assert_eq!(count("demo_orders"), 6_000);
    assert_eq!(count("demo_events"), 2_000);
    let paid: i64 = db
        .query_row(
            "SELECT count(*) FROM demo_orders WHERE status = 'paid'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(paid, 2_000, "declared columns are filled");
}

/// `--db` with a PostgreSQL URL: the demo names the database with its
/// password hidden, even when the server cannot be reached (here a closed
/// port), and writes no SQLite file in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_into_a_postgres_url_never_prints_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://demo:hunter2@127.0.0.1:1/sync?sslmode=disable";
    let output = demo(dir.path(), &["--db", url]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("into postgres://demo:***@127.0.0.1:1/sync"),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}
