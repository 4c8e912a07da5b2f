//! `records.single = true` (reach.md section 6): an object at the records
//! path is one record, as `GET /users/me` or `GET /tickets/{id}` answer;
//! without it an object there is an error whose hint names the setting.

mod common;

use axum::Json;
use axum::Router;
use axum::routing::get;
use common::{Project, describe, serve};
use serde_json::json;

async fn me() -> Json<serde_json::Value> {
    Json(json!({ "user": { "id": 7, "name": "Ada", "plan": { "tier": "pro" } } }))
}

async fn ticket(axum::extract::Path(id): axum::extract::Path<u64>) -> Json<serde_json::Value> {
    Json(json!({ "ticket": { "id": id, "subject": format!("ticket {id}") } }))
}

fn job(base: &str, path: &str, extra: &str) -> String {
    format!(
        "[request]\nurl = \"{base}{path}\"\n[records]\npath = \"/user\"\nprimary_key = [\"/id\"]\n{extra}"
    )
}

#[tokio::test]
async fn one_object_is_one_record_and_a_rerun_keeps_it_one_row() {
    let base = serve(Router::new().route("/users/me", get(me))).await;
    let project = Project::new();
    project.job(
        "me",
        &job(
            &base,
            "/users/me",
            "single = true\n[output]\ncolumns = { name = \"/name\", tier = \"/plan/tier\" }\n",
        ),
    );
    for _ in 0..2 {
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let rows = project.rows("me");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "Ada");
    let (name, tier): (String, String) = project
        .open()
        .query_row("SELECT name, tier FROM me", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((name.as_str(), tier.as_str()), ("Ada", "pro"));
}

#[tokio::test]
async fn each_parent_fetches_its_one_object() {
    let base = serve(
        Router::new()
            .route(
                "/tickets",
                get(|| async {
                    Json(json!({ "tickets": [{ "id": 1 }, { "id": 2 }, { "id": 3 }] }))
                }),
            )
            .route("/tickets/{id}", get(ticket)),
    )
    .await;
    let project = Project::new();
    project.job(
        "tickets",
        &format!("[request]\nurl = \"{base}/tickets\"\n[records]\npath = \"/tickets\"\nprimary_key = [\"/id\"]\n"),
    );
    project.job(
        "ticket_details",
        &format!(
            "depends_on = [\"tickets\"]\n[request]\nurl = \"{base}/tickets/{{partition}}\"\n\
             [partitions]\nfrom_job = \"tickets\"\nfield = \"/id\"\n\
             [records]\npath = \"/ticket\"\nprimary_key = [\"/id\"]\nsingle = true\n"
        ),
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let mut subjects: Vec<String> = project
        .rows("ticket_details")
        .iter()
        .map(|r| r["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["ticket 1", "ticket 2", "ticket 3"]);
}

#[tokio::test]
async fn an_object_without_single_fails_with_a_hint_and_single_refuses_an_array() {
    let base = serve(Router::new().route("/users/me", get(me)).route(
        "/users",
        get(|| async { Json(json!({ "user": [{ "id": 1 }] })) }),
    ))
    .await;
    let project = Project::new();
    project.job("me", &job(&base, "/users/me", ""));
    project.job("all", &job(&base, "/users", "single = true\n"));
    let out = project.run(&["run"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let text = describe(&out);
    assert!(
        text.contains("not an array (hint: check records.path, or set records.single = true"),
        "{text}"
    );
    assert!(
        text.contains("is an array, not an object, and records.single = true reads one object"),
        "{text}"
    );
    assert!(project.rows("me").is_empty());
}
