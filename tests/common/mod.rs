//! Shared test support: a temporary project folder with job files, a way
//! to run the built binary against it, and table readers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// The bearer token test servers accept.
pub const TOKEN: &str = "test-token-4f9a";

/// A project folder in a temp dir: apisync.toml, jobs/, and the database.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("jobs")).expect("jobs dir");
        std::fs::write(dir.path().join("apisync.toml"), "").expect("apisync.toml");
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self, text: &str) -> &Self {
        std::fs::write(self.path().join("apisync.toml"), text).expect("write apisync.toml");
        self
    }

    pub fn job(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.path().join("jobs").join(format!("{name}.toml")), text)
            .expect("write job");
        self
    }

    pub fn database(&self) -> PathBuf {
        self.path().join("apisync.db")
    }

    /// The binary, run in the project folder with the test token in the environment.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_apisync"));
        // The binary reads `APISYNC_*` settings: a developer's own (say
        // APISYNC_DATABASE) or CI's must not leak into a test's project.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("APISYNC_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .current_dir(self.path())
            .env("TEST_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .env_remove("NO_COLOR")
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        command
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("run apisync")
    }

    pub fn open(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.database()).expect("open database")
    }

    /// Every `_data` of `table`, parsed.
    /// Every text value of every column of every table of the database,
    /// as `table: value` lines: what "a secret never reaches the database"
    /// is checked against.
    pub fn database_text(&self) -> String {
        let db = self.open();
        let tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut all = String::new();
        for table in tables {
            let mut statement = db.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
            let columns = statement.column_count();
            let mut rows = statement.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for column in 0..columns {
                    if let Ok(text) = row.get::<_, String>(column) {
                        all.push_str(&format!("{table}: {text}\n"));
                    }
                }
            }
        }
        all
    }

    pub fn rows(&self, table: &str) -> Vec<serde_json::Value> {
        let db = self.open();
        let mut statement = db
            .prepare(&format!("SELECT _data FROM \"{table}\" ORDER BY rowid"))
            .expect("prepare");
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .expect("query")
            .map(|text| serde_json::from_str(&text.expect("row")).expect("valid JSON in _data"))
            .collect()
    }
}

/// stdout and stderr of a run, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A test that needs a tool this machine lacks (util-linux `script`): a
/// note locally, but a failure under CI, where a skipped test must never
/// pass for a tested one.
pub fn tool_missing(tool: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "`{tool}` is not installed, and CI must run this test (install it in .ci/run)"
    );
    eprintln!("skipped: `{tool}` is not installed");
}

/// Everything a run printed, stdout then stderr: where a message is looked
/// for when it does not matter which stream carried it.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The demo API's customers, 10 per page through its cursor, with the test
/// bearer token; `extra` lines follow (an `[output]` table, say).
pub fn demo_customers_job(base: &str, extra: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/v1/customers"
query = {{ limit = "10" }}
[pagination]
type = "cursor"
cursor_path = "/meta/next_cursor"
cursor_param = "cursor"
[records]
path = "/data"
primary_key = ["/id"]
{extra}"#
    )
}

/// A `page`-paginated job on `{base}/items` with the test bearer token,
/// records under `/data` keyed by `/id`, `extra` lines after the key (more
/// `[records]` keys, or further sections) and fast retries.
pub fn page_job(base: &str, extra: &str, max_attempts: u32) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/items"
[pagination]
type = "page"
[records]
path = "/data"
primary_key = ["/id"]
{extra}
[retry]
max_attempts = {max_attempts}
initial_backoff = "1ms"
max_backoff = "2ms"
"#
    )
}

/// A bearer auth table reading the test token from the environment.
pub const BEARER: &str = r#"auth = { type = "bearer", token = { env = "TEST_TOKEN" } }"#;
/// Serve `app` on 127.0.0.1 on a free port, in the background; its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

pub mod databases;
pub mod faults;
pub mod oauth_server;
pub mod paged;
