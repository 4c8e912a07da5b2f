//! The database an end-to-end test points apisync at: a SQLite file in the
//! project folder, or a fresh PostgreSQL database on the server named by
//! `APISYNC_TEST_POSTGRES` (`.ci/postgres` starts one), dropped when the
//! test ends. Without that variable a PostgreSQL test skips with a note,
//! unless `CI` is set: then it fails, so CI never skips it silently.
//!
//! Tests read either backend the same way: every value as text.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const POSTGRES_ENV: &str = "APISYNC_TEST_POSTGRES";

/// The test server trusts every login, so any password works: this one
/// is in every PostgreSQL URL apisync gets and must never be printed.
pub const PASSWORD: &str = "pg-s3cret-Pw9";

/// Rows of a query, each value as text (NULL as None).
pub type Rows = Vec<Vec<Option<String>>>;

/// A database of its own on the PostgreSQL test server, dropped at the end.
pub struct PostgresDatabase {
    server: String,
    name: String,
    /// The URL apisync gets, password included.
    pub url: String,
}

impl PostgresDatabase {
    /// None (after a note) when no server is configured and CI is not set.
    pub fn create() -> Option<PostgresDatabase> {
        let server = match std::env::var(POSTGRES_ENV) {
            Ok(url) if !url.trim().is_empty() => url,
            _ if std::env::var_os("CI").is_some() => {
                panic!("{POSTGRES_ENV} is not set but CI is: the PostgreSQL tests must run in CI")
            }
            _ => {
                eprintln!(
                    "note: skipping a PostgreSQL test: set {POSTGRES_ENV} (eval \"$(.ci/postgres)\")"
                );
                return None;
            }
        };
        let name = format!("apisync_e2e_{:016x}", rand::random::<u64>());
        postgres_sql(&server, &format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(&server).expect("server URL");
        url.set_path(&name);
        url.set_password(Some(PASSWORD)).expect("password");
        Some(PostgresDatabase {
            url: url.to_string(),
            server,
            name,
        })
    }

    pub fn query(&self, query: &str) -> Rows {
        postgres_sql(&self.url, query)
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        postgres_sql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Run `query` (one or more statements) on a plain thread (the sync client
/// refuses to run inside a runtime); every value as text.
pub fn postgres_sql(url: &str, query: &str) -> Rows {
    let (url, query) = (url.to_string(), query.to_string());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .simple_query(&query)
            .expect("query")
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
    .join()
    .expect("query thread")
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database of one test, on either backend.
pub enum TestDatabase {
    Sqlite(PathBuf),
    Postgres(PostgresDatabase),
}

impl TestDatabase {
    /// SQLite: `apisync.db` in `project_dir`. PostgreSQL: a fresh database,
    /// or None when the test should skip (see the module doc).
    pub fn new(backend: Backend, project_dir: &Path) -> Option<TestDatabase> {
        match backend {
            Backend::Sqlite => Some(TestDatabase::Sqlite(project_dir.join("apisync.db"))),
            Backend::Postgres => PostgresDatabase::create().map(TestDatabase::Postgres),
        }
    }

    /// The value of `database` in apisync.toml.
    pub fn setting(&self) -> String {
        match self {
            TestDatabase::Sqlite(path) => path.display().to_string(),
            TestDatabase::Postgres(db) => db.url.clone(),
        }
    }

    /// Every row of `query`. apisync's own tables are named as on SQLite
    /// (`_apisync_runs`); on PostgreSQL they are read in their schema
    /// (`_apisync.runs`).
    pub fn query(&self, query: &str) -> Rows {
        match self {
            TestDatabase::Sqlite(path) => sqlite_rows(path, query),
            TestDatabase::Postgres(db) => db.query(&state_names_for_postgres(query)),
        }
    }

    /// Run statements that return nothing.
    pub fn execute(&self, statements: &str) {
        match self {
            TestDatabase::Sqlite(path) => rusqlite::Connection::open(path)
                .expect("open database")
                .execute_batch(statements)
                .expect("execute"),
            TestDatabase::Postgres(db) => drop(db.query(&state_names_for_postgres(statements))),
        }
    }

    /// The one value of a one-row, one-column query.
    pub fn scalar(&self, query: &str) -> Option<String> {
        let rows = self.query(query);
        assert!(
            rows.len() == 1 && rows[0].len() == 1,
            "{query}: one value expected, got {rows:?}"
        );
        rows[0][0].clone()
    }

    /// Every `_data` of `table`, parsed, in insertion order.
    pub fn rows(&self, table: &str) -> Vec<serde_json::Value> {
        let query = match self {
            TestDatabase::Sqlite(_) => format!("SELECT _data FROM \"{table}\" ORDER BY rowid"),
            TestDatabase::Postgres(_) => {
                format!("SELECT _data::text FROM \"{table}\" ORDER BY ctid")
            }
        };
        self.query(&query)
            .into_iter()
            .map(|row| {
                let text = row[0].as_deref().expect("_data is never NULL");
                serde_json::from_str(text).expect("valid JSON in _data")
            })
            .collect()
    }
}

/// apisync's own tables, by their name in the PostgreSQL schema `_apisync`;
/// on SQLite each is `_apisync_` and the name.
const STATE_TABLES: &[&str] = &[
    "schema_version",
    "runs",
    "checkpoints",
    "marks",
    "finished_streams",
    "job_leases",
    "invocations",
    "invocation_holders",
    "invocation_streams",
    "invocation_jobs",
    "run_shards",
    "refresh_tokens",
    "passes",
];

/// `_apisync_runs` (SQLite's name) as `_apisync.runs` (PostgreSQL's).
pub fn state_names_for_postgres(sql: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("_apisync_") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let tail = &from["_apisync_".len()..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let starts_word = !before.ends_with(is_ident);
        out.push_str(if starts_word && STATE_TABLES.contains(&&tail[..end]) {
            "_apisync."
        } else {
            "_apisync_"
        });
        out.push_str(&tail[..end]);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn sqlite_rows(path: &Path, query: &str) -> Rows {
    let db = rusqlite::Connection::open(path).expect("open database");
    let mut statement = db.prepare(query).expect("prepare");
    let width = statement.column_count();
    let mut rows = statement.query([]).expect("query");
    let mut all = Vec::new();
    while let Some(row) = rows.next().expect("next row") {
        let values = (0..width)
            .map(|i| {
                use rusqlite::types::ValueRef;
                match row.get_ref(i).expect("a value") {
                    ValueRef::Null => None,
                    ValueRef::Integer(n) => Some(n.to_string()),
                    ValueRef::Real(x) => Some(x.to_string()),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                }
            })
            .collect();
        all.push(values);
    }
    all
}
