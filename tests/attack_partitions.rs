//! Attacks on `partitions.fields` and partition values in the key and
//! columns (reach.md section 3).

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::routing::get;
use common::databases::{Backend, TestDatabase};
use common::{Project, describe, text};
use serde_json::{Value, json};

/// The parent rows the server hands out, and every child request's
/// (decoded path segment, decoded `brand` query value).
#[derive(Default)]
struct Api {
    parents: Vec<Value>,
    asked: Vec<(String, Option<String>)>,
    /// Comment ids per child request: `same` gives id 1 to every child,
    /// else the id is unique per request path.
    unique_ids: bool,
    /// Notified after this many child requests.
    hits: usize,
}

type Shared = Arc<Mutex<Api>>;

struct Server {
    base: String,
    api: Shared,
    hits: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Server {
    fn asked(&self) -> Vec<(String, Option<String>)> {
        self.api.lock().unwrap().asked.clone()
    }
    async fn wait_for(&self, n: usize) {
        let mut rx = self.hits.subscribe();
        rx.wait_for(|h| *h >= n).await.unwrap();
    }
}

async fn serve(parents: Vec<Value>, unique_ids: bool) -> Server {
    let api = Shared::new(Mutex::new(Api {
        parents,
        unique_ids,
        ..Api::default()
    }));
    let hits = Arc::new(tokio::sync::watch::channel(0usize).0);
    async fn parents_route(
        State((api, _)): State<(Shared, Arc<tokio::sync::watch::Sender<usize>>)>,
    ) -> Json<Value> {
        Json(json!({ "parents": api.lock().unwrap().parents.clone() }))
    }
    async fn child(
        State((api, hits)): State<(Shared, Arc<tokio::sync::watch::Sender<usize>>)>,
        request: Request,
    ) -> Json<Value> {
        let path = request.uri().path().to_string();
        let segment = path.strip_prefix("/c/").unwrap_or(&path);
        let segment = percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .into_owned();
        let brand = url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "brand")
            .map(|(_, v)| v.into_owned());
        let (id, n) = {
            let mut api = api.lock().unwrap();
            api.asked.push((segment.clone(), brand.clone()));
            api.hits += 1;
            let id = if api.unique_ids {
                json!(format!("{segment}|{}", brand.clone().unwrap_or_default()))
            } else {
                json!(1)
            };
            (id, api.hits)
        };
        hits.send_replace(n);
        Json(json!({ "comments": [
            { "id": id, "seen_id": segment, "seen_brand": brand }
        ] }))
    }
    let base = common::serve(
        Router::new()
            .route("/parents", get(parents_route))
            .fallback(child)
            .with_state((api.clone(), hits.clone())),
    )
    .await;
    Server { base, api, hits }
}

fn parent_job(base: &str) -> String {
    format!(
        "[request]\nurl = \"{base}/parents\"\n[records]\npath = \"/parents\"\n[output]\nmode = \"append\"\n"
    )
}

/// A child of `parents` over `fields = { id = "/id", brand = "/brand" }`,
/// asking `/c/{partition.id}?brand={partition.brand}`; `extra` is the rest
/// (`[records]` key, `[output]`).
fn child_job(base: &str, extra: &str) -> String {
    format!(
        r#"depends_on = ["parents"]
[request]
url = "{base}/c/{{partition.id}}"
query = {{ brand = "{{partition.brand}}" }}
[partitions]
from_job = "parents"
fields = {{ id = "/id", brand = "/brand" }}
{extra}"#
    )
}

fn project_with(server: &Server, child_extra: &str) -> Project {
    let project = Project::new();
    project.job("parents", &parent_job(&server.base));
    project.job("children", &child_job(&server.base, child_extra));
    project
}

fn pks(project: &Project, table: &str) -> Vec<String> {
    project
        .open()
        .prepare(&format!("SELECT _pk FROM \"{table}\" ORDER BY _pk"))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn count(project: &Project, table: &str) -> i64 {
    project
        .open()
        .query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })
        .unwrap()
}

// ---------------------------------------------------------------------
// The merge job's "primary key unchanged" check.
// ---------------------------------------------------------------------

/// `primary_key = ["/id"]` becomes `["/id", "{partition.id}"]`: every stored
/// row's key is `[n]`, every new one `[n,"t"]`, so each record would be
/// written a second time. The check must refuse the run (as it does when a
/// pointer part is added) instead of doubling the table.
#[tokio::test]
async fn key_check_misses_a_partition_part_added_after_the_pointer() {
    let parents = (1..=3).map(|i| json!({ "id": i, "brand": "b" })).collect();
    let server = serve(parents, true).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\nprimary_key = [\"/id\"]\n",
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(count(&project, "children"), 3);
    project.job(
        "children",
        &child_job(
            &server.base,
            "[records]\npath = \"/comments\"\nprimary_key = [\"/id\", \"{partition.id}\"]\n",
        ),
    );
    let out = project.run(&["run"]).await;
    let rows = pks(&project, "children");
    assert!(
        !out.status.success() && rows.len() == 3,
        "the key changed from [\"/id\"] to [\"/id\", \"{{partition.id}}\"] but the run went \
         through and every record is now stored twice: {rows:?}\n{}",
        describe(&out)
    );
}

/// `primary_key = ["{partition.id}", "/id"]` becomes
/// `["{partition.brand}", "/id"]`: the pointer parts are the same, the key
/// is not; every record is written again beside its old row.
#[tokio::test]
#[ignore = "open: the key check samples one stored row, which does not say which partition value its key part was; swapping {partition.id} for {partition.brand} is not seen (closing note)"]
async fn key_check_misses_one_partition_part_swapped_for_another() {
    let parents = (1..=3)
        .map(|i| json!({ "id": i, "brand": format!("b{i}") }))
        .collect();
    let server = serve(parents, false).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\nprimary_key = [\"{partition.id}\", \"/id\"]\n",
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(count(&project, "children"), 3);
    project.job(
        "children",
        &child_job(
            &server.base,
            "[records]\npath = \"/comments\"\nprimary_key = [\"{partition.brand}\", \"/id\"]\n",
        ),
    );
    let out = project.run(&["run"]).await;
    let rows = pks(&project, "children");
    assert!(
        !out.status.success() && rows.len() == 3,
        "the key changed from {{partition.id}} to {{partition.brand}} but the run went \
         through and every record is now stored twice: {rows:?}\n{}",
        describe(&out)
    );
}

/// Control: a pointer part appended is caught (the check works when no
/// partition part is involved), and moving the partition part is caught.
#[tokio::test]
async fn key_check_catches_a_moved_partition_part() {
    let parents = (1..=2).map(|i| json!({ "id": i, "brand": "b" })).collect();
    let server = serve(parents, false).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\nprimary_key = [\"{partition.id}\", \"/id\"]\n",
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    project.job(
        "children",
        &child_job(
            &server.base,
            "[records]\npath = \"/comments\"\nprimary_key = [\"/id\", \"{partition.id}\"]\n",
        ),
    );
    let out = project.run(&["run"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(count(&project, "children"), 2);
}

// ---------------------------------------------------------------------
// Values of every shape.
// ---------------------------------------------------------------------

fn raw(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Parent ids above i64 (20-digit ids exist: Twitter-like snowflakes in
/// unsigned form, some ERP keys) are read through a double on SQLite: two
/// distinct parents become one partition, asked for with an id neither has
/// (`1.2345678901234567e+19`), and the other parent's children are never
/// fetched. Expected: each id asked for as written.
#[tokio::test]
async fn big_integer_parent_ids_collapse_into_one_partition_on_sqlite() {
    let parents = vec![
        raw(r#"{ "id": 12345678901234567890, "brand": "b" }"#),
        raw(r#"{ "id": 12345678901234567891, "brand": "b" }"#),
    ];
    let server = serve(parents, true).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\n[output]\nmode = \"append\"\n",
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let mut ids: Vec<String> = server.asked().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["12345678901234567890", "12345678901234567891"],
        "two parents, {} partition(s) asked",
        ids.len()
    );
}

/// A boolean parent value is read as `1` on SQLite (json_extract gives an
/// integer): `{partition.brand}` of a `true` row goes out as `brand=1`, and
/// `true` and `1` are one partition (PostgreSQL sends `true` and makes two).
/// reach.md: "In request strings a value is its text".
#[tokio::test]
#[ignore = "open, as for v1's `field`: SQLite reads a JSON boolean as 1/0 (closing note)"]
async fn a_boolean_parent_value_goes_out_as_1_on_sqlite() {
    let parents = vec![json!({ "id": "t", "brand": true })];
    let server = serve(parents, true).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\n[output]\nmode = \"append\"\n",
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        server.asked(),
        [("t".to_string(), Some("true".to_string()))],
        "a `true` value must be sent as its text"
    );
}

/// On SQLite an array (or object) value keeps its JSON subtype through the
/// CAST inside json_array, so `[1,"x"]` and the string `"[1,\"x\"]"` are two
/// combinations (two partitions, two checkpoints) that ask the very same
/// URL and make the very same key parts: an append job writes the same
/// child twice. (With `field`, and on PostgreSQL, both are the one text.)
#[tokio::test]
async fn an_array_value_and_its_text_are_two_partitions_with_one_url() {
    let parents = vec![
        json!({ "id": "a", "brand": [1, "x"] }),
        json!({ "id": "a", "brand": "[1,\"x\"]" }),
    ];
    let server = serve(parents, false).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\n[output]\nmode = \"append\"\n",
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let asked = server.asked();
    assert_eq!(
        (asked.len(), count(&project, "children")),
        (1, 1),
        "one URL asked {} time(s): {asked:?}",
        asked.len()
    );
}

/// Values with quotes, backslashes, control characters, non-ASCII, URL
/// syntax and 5000 characters: each one partition, asked for intact, its
/// key parts and columns its text; a second run merges onto the same rows;
/// `preview --partition` and `reset --partition` take the key as the dry
/// run shows it.
#[tokio::test]
async fn odd_string_values_round_trip_through_url_key_preview_and_reset() {
    let long = "x".repeat(5000);
    let brands = [
        "a\"b".to_string(),
        "a\\b".to_string(),
        "ü🎉\u{1}\n".to_string(),
        long.clone(),
        "a&b=c#d?e/f g+h%2F".to_string(),
        "{\"brand\":\"z\"}".to_string(),
    ];
    let parents: Vec<Value> = brands
        .iter()
        .enumerate()
        .map(|(i, b)| json!({ "id": format!("p/{i}"), "brand": b }))
        .collect();
    let server = serve(parents, true).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\nprimary_key = [\"{partition.id}\", \"{partition.brand}\", \"/id\"]\n[output]\ncolumns = { b = \"{partition.brand}\", i = \"{partition.id}\" }\n",
    );
    for run in 1..=2 {
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "run {run}: {}", describe(&out));
        let rows: Vec<(String, String)> = project
            .open()
            .prepare("SELECT i, b FROM children ORDER BY i")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<(String, String)> = brands
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("p/{i}"), b.clone()))
            .collect();
        assert_eq!(rows, want, "run {run}");
    }
    let mut asked = server.asked();
    asked.sort();
    let mut want: Vec<(String, Option<String>)> = brands
        .iter()
        .enumerate()
        .flat_map(|(i, b)| vec![(format!("p/{i}"), Some(b.clone())); 2])
        .collect();
    want.sort();
    assert_eq!(asked, want);
    // preview and reset by key.
    for (i, brand) in brands.iter().enumerate() {
        let key =
            serde_json::to_string(&json!({ "brand": brand, "id": format!("p/{i}") })).unwrap();
        let before = server.asked().len();
        let out = project
            .run(&["preview", "children", "--partition", &key])
            .await;
        assert!(out.status.success(), "preview {key}: {}", describe(&out));
        assert_eq!(
            server.asked().get(before),
            Some(&(format!("p/{i}"), Some(brand.clone()))),
            "preview {key}"
        );
        let out = project
            .run(&["reset", "children", "--partition", &key])
            .await;
        assert!(out.status.success(), "reset {key}: {}", describe(&out));
    }
}

// ---------------------------------------------------------------------
// Many combinations, kills, both stores.
// ---------------------------------------------------------------------

/// 1100 combinations (each parent row twice, ids repeating across
/// brands, so keyset pages of 500 span three batches), an append child
/// killed with SIGKILL twice mid-pass and rerun: every combination asked and
/// written exactly once in the end.
async fn many_combinations_survive_kills(backend: Backend) {
    let mut parents = Vec::new();
    for i in 0..1100u32 {
        let row = json!({ "id": i % 550, "brand": format!("b\"{}", i / 550) });
        parents.push(row.clone());
        parents.push(row);
    }
    let server = serve(parents, true).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\n[output]\nmode = \"append\"\n",
    );
    let Some(db) = TestDatabase::new(backend, project.path()) else {
        return;
    };
    project.config(&format!("database = \"{}\"\n", db.setting()));
    let out = project.run(&["run", "parents"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    for kill_at in [300usize, 800] {
        let mut child = project
            .command(&["run", "children"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::select! {
            _ = server.wait_for(kill_at) => {}
            status = child.wait() => panic!("run ended before the kill: {status:?}"),
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    let out = project.run(&["run", "children"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows = db.rows("children");
    let mut seen = std::collections::BTreeMap::new();
    for row in &rows {
        *seen
            .entry(row["id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "doubled: {doubled:?}");
    assert_eq!(
        seen.len(),
        1100,
        "rows {} distinct {}",
        rows.len(),
        seen.len()
    );
    // The dry run lists every combination too.
    let out = project.run(&["run", "--dry-run", "children"]).await;
    assert!(text(&out).contains("1100 stream(s)"), "{}", describe(&out));
}

#[tokio::test]
async fn many_combinations_survive_kills_on_sqlite() {
    many_combinations_survive_kills(Backend::Sqlite).await;
}

#[tokio::test]
async fn many_combinations_survive_kills_on_postgres() {
    many_combinations_survive_kills(Backend::Postgres).await;
}

/// The same parent rows make the same partitions, with the same
/// `{partition.NAME}` texts, whichever store holds them.
#[tokio::test]
#[ignore = "open, as for v1's `field`: the two stores spell booleans and objects differently (closing note)"]
async fn sqlite_and_postgres_make_the_same_partitions_of_the_same_parents() {
    let parents = vec![
        raw(r#"{ "id": "real", "brand": 1.0 }"#),
        raw(r#"{ "id": "exp", "brand": 1e3 }"#),
        raw(r#"{ "id": "negz", "brand": -0 }"#),
        raw(r#"{ "id": "bool", "brand": true }"#),
        raw(r#"{ "id": "obj", "brand": { "a": 1, "b": [2] } }"#),
        raw(r#"{ "id": "arr", "brand": [1, "x"] }"#),
        raw(r#"{ "id": "str", "brand": "ü\"\\" }"#),
    ];
    let mut seen = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let server = serve(parents.clone(), true).await;
        let project = project_with(
            &server,
            "[records]\npath = \"/comments\"\n[output]\nmode = \"append\"\n",
        );
        let Some(db) = TestDatabase::new(backend, project.path()) else {
            return;
        };
        project.config(&format!("database = \"{}\"\n", db.setting()));
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "{backend:?}: {}", describe(&out));
        let mut asked = server.asked();
        asked.sort();
        seen.push(asked);
    }
    assert_eq!(
        seen[0], seen[1],
        "SQLite (left) and PostgreSQL (right) asked different things"
    );
}

/// Two shards of one invocation over 600 combinations: every combination
/// asked and written exactly once, whichever shard ran it.
#[tokio::test]
async fn two_shards_share_fields_partitions_exactly_once() {
    let parents: Vec<Value> = (0..600u32)
        .map(|i| json!({ "id": i % 300, "brand": format!("b{}", i / 300) }))
        .collect();
    let server = serve(parents, true).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\nprimary_key = [\"{partition.brand}\", \"{partition.id}\", \"/id\"]\n[output]\nmode = \"append\"\ncolumns = { b = \"{partition.brand}\" }\n",
    );
    let shards: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|s| {
            project
                .command(&["run", "--shard", s, "--invocation", "inv-1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for shard in shards {
        let out = shard.wait_with_output().await.unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    }
    let asked = server.asked();
    let distinct: std::collections::BTreeSet<_> = asked.iter().cloned().collect();
    assert_eq!((asked.len(), distinct.len()), (600, 600));
    assert_eq!(count(&project, "children"), 600);
}

/// Replace mode with partition values in its columns and key: a second
/// pass swaps in the same rows.
#[tokio::test]
async fn replace_mode_with_partition_columns_keeps_one_row_each() {
    let parents: Vec<Value> = (0..20u32)
        .map(|i| json!({ "id": i % 10, "brand": format!("b{}", i / 10) }))
        .collect();
    let server = serve(parents, false).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\nprimary_key = [\"{partition.brand}\", \"{partition.id}\", \"/id\"]\n[output]\nmode = \"replace\"\ncolumns = { b = \"{partition.brand}\", i = \"{partition.id}\" }\n",
    );
    for run in 1..=2 {
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "run {run}: {}", describe(&out));
        let distinct: i64 = project
            .open()
            .query_row(
                "SELECT COUNT(DISTINCT b || '/' || i) FROM children",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            (count(&project, "children"), distinct),
            (20, 20),
            "run {run}"
        );
    }
}

/// `reset --partition` with a `fields` key written as a person would write
/// it (names in the file's order, a space after the colon) names no stream:
/// it used to report "checkpoints forgotten". It now says nothing was saved
/// under that key, so nothing was forgotten, with the key's form in a hint
/// (a partition already synced looks the same, so it is not an error).
#[tokio::test]
async fn reset_takes_a_misspelt_fields_key_and_resets_nothing() {
    let parents = vec![json!({ "id": 42, "brand": 7 })];
    let server = serve(parents, false).await;
    let project = project_with(
        &server,
        "[records]\npath = \"/comments\"\n[output]\nmode = \"append\"\n",
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    // The stream as status names it is finished in this pass.
    let finished: Vec<String> = project
        .open()
        .prepare("SELECT partition FROM _apisync_finished_streams WHERE job = 'children'")
        .map(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        })
        .unwrap_or_default();
    eprintln!("finished: {finished:?}");
    let out = project
        .run(&[
            "reset",
            "children",
            "--partition",
            r#"{"id": "42", "brand": "7"}"#,
        ])
        .await;
    let said = describe(&out);
    assert!(
        said.contains("nothing was forgotten") && said.contains("nothing to forget"),
        "reset said it forgot a key that names nothing saved: {said}"
    );
    assert!(
        !said.contains("checkpoints and high-water marks forgotten"),
        "{said}"
    );
}

/// A pointer SQLite cannot query (a key with `"`) passes `validate` and
/// fails only at run.
#[tokio::test]
async fn a_fields_pointer_sqlite_cannot_read_passes_validate() {
    let server = serve(vec![json!({ "id": 1, "a\"b": 2 })], false).await;
    let project = Project::new();
    project.job("parents", &parent_job(&server.base));
    project.job(
        "children",
        &format!(
            r#"depends_on = ["parents"]
[request]
url = "{}/c/{{partition.id}}"
[partitions]
from_job = "parents"
fields = {{ id = "/id", q = "/a\"b" }}
[records]
path = "/comments"
"#,
            server.base
        ),
    );
    let validate = project.run(&["validate"]).await;
    let run = project.run(&["run"]).await;
    assert!(
        !validate.status.success() || run.status.success(),
        "validate passed but run failed:\n{}\n{}",
        describe(&validate),
        describe(&run)
    );
}
