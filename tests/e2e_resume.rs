//! The core promise, end to end: the built binary, a real local API that is
//! slow enough to be killed half way, SIGKILL several times, rerun, and the
//! tables equal the server's data exactly, with no duplicate in append mode.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use apisync::demo::{DemoConfig, DemoServer, customer, event, order};
use common::{BEARER, Project, TOKEN, describe};

async fn slow_server(customers: u64, orders: u64, events: u64) -> DemoServer {
    let config = DemoConfig {
        customers,
        orders,
        events,
        delay: Duration::from_millis(3),
        token: TOKEN.to_string(),
    };
    DemoServer::bind(0, config).await.expect("bind demo server")
}

fn customers_job(base: &str) -> String {
    common::demo_customers_job(base, "[output]\nmode = \"merge\"\n")
}

fn orders_job(base: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/v1/orders"
query = {{ per_page = "10" }}
[pagination]
type = "link_header"
[records]
path = ""
primary_key = ["/id"]
[output]
mode = "merge"
columns = {{ status = "/status" }}
"#
    )
}

fn events_append_job(base: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/v1/events"
[pagination]
type = "offset"
limit = 10
total_path = "/total"
[records]
path = "/events"
[output]
mode = "append"
"#
    )
}

/// Start `apisync run ARGS`, let the server see `requests` more requests,
/// then SIGKILL the process (if it has not finished by itself).
async fn run_and_kill(project: &Project, server: &DemoServer, args: &[&str], requests: u64) {
    let start = server.requests();
    let mut child = project.command(args).spawn().expect("spawn apisync");
    tokio::select! {
        _ = server.wait_for_requests(start + requests) => {
            child.kill().await.expect("kill");
        }
        status = child.wait() => {
            panic!("the sync finished before it could be killed: {status:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_merge_syncs_resume_to_exactly_the_server_data() {
    let server = slow_server(300, 400, 0).await;
    let project = Project::new();
    project
        .job("customers", &customers_job(&server.base_url()))
        .job("orders", &orders_job(&server.base_url()));
    for requests in [4, 9, 13, 6, 11] {
        run_and_kill(&project, &server, &["run"], requests).await;
    }
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));

    let customers = project.rows("customers");
    let mut by_id: Vec<_> = customers.clone();
    by_id.sort_by_key(|c| c["id"].as_u64());
    assert_eq!(by_id, (1..=300).map(customer).collect::<Vec<_>>());
    let orders = project.rows("orders");
    let ids: BTreeSet<_> = orders
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(orders.len(), 400, "one row per order");
    let expected: BTreeSet<_> = (1..=400)
        .map(|id| order(id)["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_append_sync_never_writes_a_page_twice() {
    let server = slow_server(0, 0, 700).await;
    let project = Project::new();
    project.job("events", &events_append_job(&server.base_url()));
    // 70 pages in all; the kills stop well before the stream could finish.
    for requests in [3, 5, 8, 4, 7] {
        run_and_kill(&project, &server, &["run", "events"], requests).await;
    }
    let output = project.run(&["run", "events"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let rows = project.rows("events");
    let ids: Vec<u64> = rows.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 700, "no duplicate and nothing missing");
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique, (1..=700).collect::<BTreeSet<_>>());
    assert_eq!(rows[0], event(1));
}
