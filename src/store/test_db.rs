//! A fresh database per test, on each backend: a SQLite file in a temp dir,
//! or a PostgreSQL database created (random name) on the server named by
//! `APISYNC_TEST_POSTGRES` and dropped afterwards. Without that variable the
//! PostgreSQL variants skip with a note, unless `CI` is set: then they fail,
//! so CI never skips them silently. `.ci/postgres` starts such a server.

use super::handle::Store;
use super::postgres::PgConn;
use crate::plan::{Database, PostgresUrl};

pub(crate) const ENV: &str = "APISYNC_TEST_POSTGRES";

pub(crate) struct TestDb {
    pub(crate) database: Database,
    _dir: Option<tempfile::TempDir>,
    /// The server's URL and this test's database name, to drop it.
    created: Option<(PostgresUrl, String)>,
}

impl TestDb {
    pub(crate) fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        TestDb {
            database: Database::sqlite(dir.path().join("test.db")),
            _dir: Some(dir),
            created: None,
        }
    }

    /// None (after printing why) when no server is configured and CI is not set.
    pub(crate) fn postgres() -> Option<TestDb> {
        let server = server_url()?;
        let name = format!("apisync_test_{:016x}", rand::random::<u64>());
        admin(&server, format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(server.expose()).expect("server URL");
        url.set_path(&name);
        let url = PostgresUrl::parse(url.as_str()).expect("test URL");
        Some(TestDb {
            database: Database::Postgres(url),
            _dir: None,
            created: Some((server, name)),
        })
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.database, Database::Postgres(_))
    }

    pub(crate) fn store(&self) -> Store {
        Store::open(&self.database).expect("open the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = self.created.take() {
            admin(
                &server,
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// A fresh database on each backend available (SQLite always), for tests
/// that cannot use [`backend_test`] (async ones).
pub(crate) fn backends() -> Vec<TestDb> {
    std::iter::once(TestDb::sqlite())
        .chain(TestDb::postgres())
        .collect()
}

/// The server for PostgreSQL tests, or None (skip) outside CI.
pub(crate) fn server_url() -> Option<PostgresUrl> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => {
            Some(PostgresUrl::parse(&url).unwrap_or_else(|e| panic!("{ENV}: {e}")))
        }
        _ if std::env::var_os("CI").is_some() => panic!(
            "{ENV} is not set but CI is: the PostgreSQL tests must run in CI \
             (start a server with `eval \"$(.ci/postgres)\"`)"
        ),
        _ => {
            eprintln!(
                "note: skipping a PostgreSQL test: set {ENV} (e.g. `eval \"$(.ci/postgres)\"`) to run it"
            );
            None
        }
    }
}

/// One statement on the server's maintenance database, on a connection
/// thread (safe inside async tests).
pub(crate) fn admin(server: &PostgresUrl, sql: String) {
    let conn = PgConn::connect(server).expect("connect to APISYNC_TEST_POSTGRES");
    conn.run(move |s| s.client.batch_execute(&sql))
        .expect("connection")
        .expect("admin SQL");
}

/// A test that runs once per backend: `backend_test! { fn name(db) { ... } }`
/// makes `name::sqlite` and `name::postgres`, each with a fresh `db: &TestDb`.
macro_rules! backend_test {
    ($(#[$attr:meta])* fn $name:ident($db:ident) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($db: &$crate::store::test_db::TestDb) $body

            #[test]
            fn sqlite() {
                body(&$crate::store::test_db::TestDb::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(db) = $crate::store::test_db::TestDb::postgres() {
                    body(&db);
                }
            }
        }
    };
}
pub(crate) use backend_test;
