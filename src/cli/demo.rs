//! `apisync demo`: serve the demo API and sync the demo jobs into
//! apisync-demo.db, or only serve it (`--serve`) for the README's tour.

use std::path::Path;
use std::time::Duration;

use super::Exit;
use super::args::{DemoArgs, GlobalArgs};
use crate::demo::{DEMO_JOBS, DEMO_PORT, DEMO_TOKEN, DEMO_TOKEN_ENV, DemoConfig, DemoServer};
use crate::plan::DatabaseArg;
use crate::plan::{AuthPlan, ProjectPlan, SecretSource, SettingsOverrides, load_project};
use crate::secret::Secret;

/// The database the demo writes, in the current folder.
const DEMO_DB: &str = "apisync-demo.db";

pub async fn demo(global: &GlobalArgs, args: &DemoArgs) -> Exit {
    let config = DemoConfig {
        delay: Duration::from_millis(args.delay_ms),
        ..DemoConfig::default()
    };
    let server = match DemoServer::bind(args.port, config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!(
                "error: cannot listen on 127.0.0.1:{}: {err} (hint: pick another with --port)",
                args.port
            );
            return Exit::Failed;
        }
    };
    if args.serve {
        println!(
            "demo API on {} (token: {DEMO_TOKEN}); Ctrl-C stops it",
            server.base_url()
        );
        println!("try: export {DEMO_TOKEN_ENV}={DEMO_TOKEN}; apisync run --db {DEMO_DB}");
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown().await;
        return Exit::Ok;
    }
    let exit = sync_demo(global, server.addr.port()).await;
    server.shutdown().await;
    exit
}

async fn sync_demo(global: &GlobalArgs, port: u16) -> Exit {
    let folder = match tempfile::tempdir() {
        Ok(folder) => folder,
        Err(err) => {
            eprintln!("error: cannot create a temporary folder for the demo jobs: {err}");
            return Exit::Failed;
        }
    };
    let database = global
        .db
        .clone()
        .unwrap_or_else(|| DatabaseArg::new(DEMO_DB));
    let plan = match demo_plan(folder.path(), port, &database) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Failed;
        }
    };
    // `database` shows itself with any password hidden.
    println!(
        "syncing {} demo jobs from http://127.0.0.1:{port} into {database}",
        plan.jobs.len(),
    );
    let jobs = plan.jobs.clone();
    let exit = super::execute::execute(
        global,
        &plan,
        jobs,
        crate::run::JobMode::default(),
        &super::args::MetricsArgs::default(),
    )
    .await;
    if exit == Exit::Ok {
        let query =
            "SELECT status, count(*), round(sum(total), 2) FROM demo_orders GROUP BY status";
        if database.is_url() {
            println!("\ntry, in psql: {query}");
        } else {
            println!("\ntry: sqlite3 {database} \"{query}\"");
        }
    }
    exit
}

/// Write the embedded job files into `folder` (with the chosen port) and plan them.
fn demo_plan(folder: &Path, port: u16, database: &DatabaseArg) -> Result<ProjectPlan, String> {
    let jobs = folder.join("jobs");
    std::fs::create_dir_all(&jobs).map_err(|e| format!("cannot write the demo jobs: {e}"))?;
    for (name, text) in DEMO_JOBS {
        let text = text.replace(
            &format!("127.0.0.1:{DEMO_PORT}"),
            &format!("127.0.0.1:{port}"),
        );
        std::fs::write(jobs.join(name), text)
            .map_err(|e| format!("cannot write the demo jobs: {e}"))?;
    }
    let config = folder.join("apisync.toml");
    std::fs::write(&config, "").map_err(|e| format!("cannot write the demo config: {e}"))?;
    // The plan is read from a temporary folder: a SQLite path is made
    // absolute first, so it stays relative to where the demo was started.
    let database = match database.is_url() {
        true => database.clone(),
        false => std::path::absolute(database.expose())
            .map(|path| DatabaseArg::new(path.to_string_lossy()))
            .map_err(|e| format!("bad database path: {e}"))?,
    };
    let overrides = SettingsOverrides {
        database: Some(database),
        ..SettingsOverrides::default()
    };
    let mut plan = load_project(Some(&config), &overrides, super::CLI_ENV)
        .map_err(|d| format!("the bundled demo jobs do not validate (a bug):\n{d}"))?
        .plan;
    use_demo_token(&mut plan);
    Ok(plan)
}

/// The demo jobs read DEMO_API_TOKEN; when it is unset, use the demo token.
fn use_demo_token(plan: &mut ProjectPlan) {
    if std::env::var_os(DEMO_TOKEN_ENV).is_some() {
        return;
    }
    for auth in plan.auths.values_mut() {
        if let AuthPlan::Bearer { token } = auth
            && *token == SecretSource::Env(DEMO_TOKEN_ENV.into())
        {
            *token = SecretSource::Plain(Secret::new(DEMO_TOKEN));
        }
    }
}
