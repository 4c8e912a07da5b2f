//! Upgrading a database an older apisync wrote (schema 4, apisync's tables
//! named `runs`, `marks`, ... beside the user's): the new build moves them
//! to `_apisync_*` on SQLite and into the schema `_apisync` on PostgreSQL.
//! Every row survives under the new name, the old names are gone, `status`
//! reads the old state, and a rerun resumes from the stored mark.

mod common;

use common::databases::PostgresDatabase;
use common::paged::{Api, json};
use common::{BEARER, Project, describe};
use serde_json::Value;

/// A SQLite database written by apisync at schema 4 (see
/// tests/fixtures/upgrade/README.md for how it was made).
const SQLITE_FIXTURE: &[u8] = include_bytes!("fixtures/upgrade/v4_sqlite.db");

/// Names of apisync's tables and indexes before schema 5.
const OLD_NAMES: &[&str] = &[
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
    "runs_by_job",
    "run_shards_by_holder",
];

/// Records 1..=4 with `v` = 10 * id; the fixture's mark is 30 (ids 1..=3
/// were synced). Answers `since=N` with the records whose `v >= N`.
async fn api() -> Api {
    let records = (1..=4u64)
        .map(|id| serde_json::json!({ "id": id, "v": id * 10 }))
        .collect();
    Api::start(records, |seen, data| {
        let since = seen.number("since").unwrap_or(0) as u64;
        let page: Vec<Value> = data
            .iter()
            .filter(|r| r["v"].as_u64().is_some_and(|v| v >= since))
            .cloned()
            .collect();
        json(serde_json::json!({ "data": page }))
    })
    .await
}

/// The jobs the fixture's state belongs to (tests/fixtures/upgrade/items.toml
/// with the test server's URL, and the partitioned `parts`).
fn write_jobs(project: &Project, base: &str) {
    project.job(
        "items",
        &format!(
            r#"{BEARER}
[request]
url = "{base}/items"
[records]
path = "/data"
primary_key = ["/id"]
[incremental]
cursor_field = "/v"
cursor_type = "integer"
param = "since"
[output]
table = "items"
mode = "merge"
"#
        ),
    );
    project.job(
        "parts",
        &format!(
            r#"{BEARER}
[request]
url = "{base}/parts/{{partition}}"
[pagination]
type = "cursor"
cursor_path = "/next"
cursor_param = "cursor"
[records]
path = "/data"
primary_key = ["/id"]
[incremental]
cursor_field = "/v"
cursor_type = "string"
param = "since"
[partitions]
values = ["a", "b"]
"#
        ),
    );
}

async fn run_ok(project: &Project, args: &[&str]) -> String {
    let output = project.run(args).await;
    assert!(output.status.success(), "{args:?}: {}", describe(&output));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// `status --json` shows the state the old apisync left.
async fn assert_status_reads_the_old_state(project: &Project) {
    let text = run_ok(project, &["status", "--json"]).await;
    let jobs: Value = serde_json::from_str(&text).expect("status --json is JSON");
    let job = |name: &str| {
        jobs.as_array()
            .and_then(|all| all.iter().find(|j| j["job"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
    };
    let items = job("items");
    assert_eq!(items["last_run"]["status"], "succeeded", "{items}");
    assert_eq!(items["last_run"]["records"], 3, "{items}");
    assert_eq!(items["marks"][""], 30, "{items}");
    let parts = job("parts");
    assert_eq!(parts["last_run"]["status"], "interrupted", "{parts}");
    assert_eq!(
        parts["checkpoints"]["b"]["next"]["cursor"], "b-page-2",
        "{parts}"
    );
    assert_eq!(parts["marks"]["a"], "a-mark", "{parts}");
}

/// A rerun of `items` asks only for what changed since the stored mark.
async fn assert_rerun_resumes_from_the_mark(project: &Project, api: &Api) {
    run_ok(project, &["run", "items"]).await;
    let asked: Vec<Option<String>> = api
        .seen()
        .iter()
        .filter(|s| s.path == "/items")
        .map(|s| s.param("since").map(str::to_string))
        .collect();
    assert_eq!(
        asked,
        [Some("30".to_string())],
        "the mark of the old database is used"
    );
}

fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let width = statement.column_count();
    statement
        .query_map([], |row| {
            (0..width)
                .map(|i| row.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("query")
        .map(|row| {
            row.expect("row")
                .into_iter()
                .map(|v| match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[tokio::test]
async fn a_schema_4_sqlite_database_keeps_every_row_under_the_new_names() {
    let project = Project::new();
    std::fs::write(project.database(), SQLITE_FIXTURE).expect("copy the fixture");
    let api = api().await;
    write_jobs(&project, &api.base);

    assert_status_reads_the_old_state(&project).await;

    let conn = project.open();
    let rows = |sql: &str| sqlite_rows(&conn, sql);
    assert_eq!(
        rows(
            "SELECT group_concat(version) FROM (SELECT version FROM _apisync_schema_version ORDER BY version)"
        ),
        ["1,2,3,4,5,6"]
    );
    assert_eq!(
        rows("SELECT id, job, status, pages, records FROM _apisync_runs ORDER BY id"),
        ["1|items|succeeded|1|3", "2|parts|interrupted|2|4"]
    );
    assert_eq!(
        rows("SELECT job, partition, position FROM _apisync_checkpoints"),
        [r#"parts|b|{"next":{"type":"cursor","cursor":"b-page-2"},"pages":2}"#]
    );
    assert_eq!(
        rows("SELECT job, partition, value FROM _apisync_marks ORDER BY job"),
        ["items||30", "parts|a|a-mark"]
    );
    assert_eq!(
        rows("SELECT job, partition, run_id FROM _apisync_finished_streams"),
        ["parts|a|2"]
    );
    assert_eq!(
        rows("SELECT job, holder FROM _apisync_job_leases"),
        ["parts|oldhost:4242:abcd"]
    );
    assert_eq!(
        rows("SELECT auth, refresh_token FROM _apisync_refresh_tokens"),
        ["crm|fixture-rotated-refresh-token"]
    );
    assert_eq!(
        rows("SELECT invocation FROM _apisync_invocations"),
        ["inv-1"]
    );
    assert_eq!(
        rows("SELECT holder, ended_at IS NOT NULL FROM _apisync_invocation_holders"),
        ["oldhost:4242:abcd|1"]
    );
    assert_eq!(
        rows("SELECT job, status FROM _apisync_invocation_streams"),
        ["items|done"]
    );
    assert_eq!(rows("SELECT job FROM _apisync_invocation_jobs"), ["items"]);
    assert_eq!(
        rows("SELECT run_id, invocation FROM _apisync_run_shards"),
        ["1|inv-1"]
    );
    // Foreign keys follow the rename; the indexes have their new names.
    assert_eq!(
        rows(
            "SELECT m.name, f.\"table\" FROM sqlite_schema m, pragma_foreign_key_list(m.name) f
             ORDER BY m.name"
        ),
        [
            "_apisync_finished_streams|_apisync_runs",
            "_apisync_run_shards|_apisync_runs"
        ]
    );
    assert_eq!(rows("PRAGMA foreign_key_check"), Vec::<String>::new());
    assert_eq!(
        rows(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ),
        ["_apisync_run_shards_by_holder", "_apisync_runs_by_job"]
    );
    let old: Vec<String> = rows("SELECT name FROM sqlite_schema")
        .into_iter()
        .filter(|name| OLD_NAMES.contains(&name.as_str()))
        .collect();
    assert!(old.is_empty(), "old names left: {old:?}");
    drop(conn);

    assert_rerun_resumes_from_the_mark(&project, &api).await;
    let conn = project.open();
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT value FROM _apisync_marks WHERE job = 'items'"
        ),
        ["40"]
    );
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT json_extract(_data, '$.id') FROM items ORDER BY 1"
        ),
        ["1", "2", "3", "4"]
    );
}

/// The schema 4 of PostgreSQL, as an older apisync created it: its own
/// migration files (applied ones are never edited) and `schema_version`.
fn old_postgres_schema() -> String {
    [
        "CREATE TABLE schema_version (version bigint PRIMARY KEY, applied_at text NOT NULL);",
        include_str!("../migrations/postgres/0001_init.sql"),
        include_str!("../migrations/postgres/0002_refresh_tokens.sql"),
        include_str!("../migrations/postgres/0003_leases.sql"),
        include_str!("../migrations/postgres/0004_shards.sql"),
        "INSERT INTO schema_version SELECT v, '2026-12-07T06:00:00.000Z' FROM generate_series(1, 4) v;",
    ]
    .join("\n")
}

/// The same state as the SQLite fixture, written as schema 4 would hold it.
const OLD_POSTGRES_ROWS: &str = r#"
INSERT INTO runs (job, started_at, finished_at, status, pages, records)
    VALUES ('items', '2026-12-07T06:12:55.431Z', '2026-12-07T06:12:55.448Z', 'succeeded', 1, 3),
           ('parts', '2026-12-07T06:00:00.000Z', '2026-12-07T06:00:05.000Z', 'interrupted', 2, 4);
INSERT INTO checkpoints VALUES ('parts', 'b', '{"next":{"type":"cursor","cursor":"b-page-2"},"pages":2}', '2026-12-07T06:00:04.000Z');
INSERT INTO marks VALUES ('items', '', '30', '2026-12-07T06:12:55.447Z'),
                         ('parts', 'a', 'a-mark', '2026-12-07T06:00:03.000Z');
INSERT INTO finished_streams VALUES ('parts', 'a', 2, '2026-12-07T06:00:03.000Z');
INSERT INTO job_leases VALUES ('parts', 'oldhost:4242:abcd', '2026-12-07T06:00:00.000Z', '2026-12-07T06:00:05.000Z');
INSERT INTO _apisync_refresh_tokens VALUES ('crm', 'fixture-rotated-refresh-token', '2026-12-07T06:00:01.000Z');
INSERT INTO invocations VALUES ('inv-1', '2026-12-07T05:00:00.000Z');
INSERT INTO invocation_holders VALUES ('inv-1', 'oldhost:4242:abcd', 0, FALSE, '2026-12-07T05:00:00.000Z', '2026-12-07T05:00:09.000Z', '2026-12-07T05:00:10.000Z');
INSERT INTO invocation_streams VALUES ('inv-1', 'items', '', 0, 'done', 'oldhost:4242:abcd', '2026-12-07T05:00:01.000Z', '2026-12-07T05:00:02.000Z');
INSERT INTO invocation_jobs VALUES ('inv-1', 'items', '2026-12-07T05:00:02.000Z');
INSERT INTO run_shards VALUES (1, 'inv-1', 0, 'oldhost:4242:abcd');
"#;

fn joined(rows: common::databases::Rows) -> Vec<String> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[tokio::test]
async fn a_schema_4_postgres_database_moves_into_the_apisync_schema() {
    let Some(db) = PostgresDatabase::create() else {
        return;
    };
    db.query(&old_postgres_schema());
    db.query(OLD_POSTGRES_ROWS);
    let project = Project::new();
    project.config(&format!("database = \"{}\"\n", db.url));
    let api = api().await;
    write_jobs(&project, &api.base);

    assert_status_reads_the_old_state(&project).await;

    let rows = |sql: &str| joined(db.query(sql));
    assert_eq!(
        rows("SELECT string_agg(version::text, ',' ORDER BY version) FROM _apisync.schema_version"),
        ["1,2,3,4,5,6"]
    );
    assert_eq!(
        rows("SELECT id, job, status, pages, records FROM _apisync.runs ORDER BY id"),
        ["1|items|succeeded|1|3", "2|parts|interrupted|2|4"]
    );
    assert_eq!(
        rows("SELECT job, partition, position FROM _apisync.checkpoints"),
        [r#"parts|b|{"next":{"type":"cursor","cursor":"b-page-2"},"pages":2}"#]
    );
    assert_eq!(
        rows("SELECT job, partition, value FROM _apisync.marks ORDER BY job"),
        ["items||30", "parts|a|a-mark"]
    );
    assert_eq!(
        rows("SELECT job, partition, run_id FROM _apisync.finished_streams"),
        ["parts|a|2"]
    );
    assert_eq!(
        rows("SELECT job, holder FROM _apisync.job_leases"),
        ["parts|oldhost:4242:abcd"]
    );
    assert_eq!(
        rows("SELECT auth, refresh_token FROM _apisync.refresh_tokens"),
        ["crm|fixture-rotated-refresh-token"]
    );
    assert_eq!(
        rows("SELECT invocation FROM _apisync.invocations"),
        ["inv-1"]
    );
    assert_eq!(
        rows("SELECT holder, ended_at IS NOT NULL FROM _apisync.invocation_holders"),
        ["oldhost:4242:abcd|t"]
    );
    assert_eq!(
        rows("SELECT job, status FROM _apisync.invocation_streams"),
        ["items|done"]
    );
    assert_eq!(rows("SELECT job FROM _apisync.invocation_jobs"), ["items"]);
    assert_eq!(
        rows("SELECT run_id, invocation FROM _apisync.run_shards"),
        ["1|inv-1"]
    );
    let old = rows(&format!(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname <> '_apisync' AND c.relname IN ({})",
        OLD_NAMES
            .iter()
            .chain(&["_apisync_refresh_tokens"])
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    assert!(old.is_empty(), "old names left outside _apisync: {old:?}");

    assert_rerun_resumes_from_the_mark(&project, &api).await;
    assert_eq!(
        rows("SELECT value FROM _apisync.marks WHERE job = 'items'"),
        ["40"]
    );
    // The new run's id follows the old ones: the identity moved with its table.
    assert_eq!(
        rows("SELECT id, job, status FROM _apisync.runs WHERE id > 2"),
        ["3|items|succeeded"]
    );
    assert_eq!(
        rows("SELECT _data->>'id' FROM public.items ORDER BY 1"),
        ["3", "4"]
    );
}
