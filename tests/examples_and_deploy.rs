//! The shipped example jobs and deployment files stay true: every example
//! plans with the library's loader, every YAML file parses and holds the
//! settings deploy/README.md promises, and every command line in them is one
//! the binary accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apisync::cli::{Cli, Command};
use apisync::plan::{
    AuthPlan, HttpMethod, Loaded, PaginationKind, ParamLocation, ProjectPlan, SecretSource,
    SettingsOverrides, StopWhen, load_project_with_env,
};
use clap::Parser as _;
use serde_yaml_ng::Value;

const EXAMPLES: &str = "jobs/examples";
const EXAMPLES_CONFIG: &str = "jobs/examples/config/apisync.toml";
const KUBERNETES: &str = "deploy/kubernetes";
const CRONTAB: &str = "deploy/crontab.example";

/// Every environment variable the examples read, with a fake value: the
/// loader only records the names, but a run would need them all.
const EXAMPLE_ENV: &[&str] = &[
    "GITHUB_TOKEN",
    "STRIPE_API_KEY",
    "SLACK_BOT_TOKEN",
    "HUBSPOT_ACCESS_TOKEN",
    "ZENDESK_USER",
    "ZENDESK_API_TOKEN",
    "SALESFORCE_CLIENT_ID",
    "SALESFORCE_CLIENT_SECRET",
    "NOTION_TOKEN",
    "SHOPIFY_ACCESS_TOKEN",
    "DD_API_KEY",
    "DD_APP_KEY",
    "GITLAB_TOKEN",
    "JIRA_TOKEN",
    "PAGERDUTY_AUTHORIZATION",
];

/// Environment variables the examples' request URLs read (`{env.NAME}`),
/// with a value of the kind they need.
const EXAMPLE_URL_ENV: &[(&str, &str)] = &[("DD_SITE", "datadoghq.eu")];

fn fake_env() -> Vec<(String, String)> {
    EXAMPLE_ENV
        .iter()
        .map(|name| (name.to_string(), format!("fake-{}", name.to_lowercase())))
        .chain(
            EXAMPLE_URL_ENV
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        )
        .collect()
}

fn load_examples() -> Loaded {
    load_project_with_env(
        Some(Path::new(EXAMPLES_CONFIG)),
        &SettingsOverrides::default(),
        &fake_env(),
        &[],
    )
    .unwrap_or_else(|d| panic!("the examples do not validate:\n{d}"))
}

fn secrets_of(auth: &AuthPlan) -> Vec<&SecretSource> {
    match auth {
        AuthPlan::Bearer { token } => vec![token],
        AuthPlan::ApiKey { key, .. } => vec![key],
        AuthPlan::Basic { username, password } => vec![username, password],
        AuthPlan::ClientCredentials(oauth) => std::iter::once(&oauth.client_id)
            .chain(&oauth.client_secret)
            .collect(),
        AuthPlan::RefreshToken {
            oauth,
            refresh_token,
        } => std::iter::once(&oauth.client_id)
            .chain(&oauth.client_secret)
            .chain([refresh_token])
            .collect(),
    }
}

#[test]
fn every_example_job_plans_with_its_auth_from_the_environment() {
    let Loaded { plan, warnings } = load_examples();
    assert!(
        warnings.is_empty(),
        "no plain secrets or strays: {warnings:?}"
    );
    let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "datadog_events",
            "datadog_monitors",
            "github_issues",
            "gitlab_issues",
            "hubspot_contacts",
            "jira_issues",
            "notion_database",
            "pagerduty_incidents",
            "salesforce_accounts",
            "shopify_orders",
            "slack_users",
            "stripe_balance",
            "stripe_charges",
            "zendesk_organizations",
            "zendesk_ticket_comments",
            "zendesk_tickets",
        ]
    );
    // Each example needs credentials, and reads every one from the environment.
    let mut read: BTreeSet<String> = BTreeSet::new();
    for job in &plan.jobs {
        let key = job
            .auth
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no auth", job.name));
        let auth = &plan.auths[key];
        for secret in secrets_of(auth) {
            match secret {
                SecretSource::Env(name) => {
                    read.insert(name.clone());
                }
                other => panic!("{}: a secret not from the environment: {other:?}", job.name),
            }
        }
    }
    // And the named secrets of [secrets].
    for source in plan.secrets.values() {
        match source {
            SecretSource::Env(name) => {
                read.insert(name.clone());
            }
            other => panic!("a named secret not from the environment: {other:?}"),
        }
    }
    let expected: BTreeSet<String> = EXAMPLE_ENV.iter().map(|s| s.to_string()).collect();
    assert_eq!(read, expected);
}

#[test]
fn examples_use_the_pagination_their_api_documents() {
    let plan = load_examples().plan;
    let kind = |name: &str| -> &PaginationKind {
        &plan
            .jobs
            .iter()
            .find(|j| j.name == name)
            .unwrap_or_else(|| panic!("no example {name}"))
            .pagination
            .kind
    };
    assert!(matches!(kind("github_issues"), PaginationKind::LinkHeader));
    assert!(matches!(kind("shopify_orders"), PaginationKind::LinkHeader));
    assert!(matches!(
        kind("salesforce_accounts"),
        PaginationKind::NextUrl { .. }
    ));
    assert!(matches!(
        kind("zendesk_tickets"),
        PaginationKind::NextUrl { .. }
    ));
    // GitLab names the next page in a response header; Jira's search takes
    // its offset in the POST body; Zendesk's time-based export always has
    // a next_page and says its end in end_of_stream.
    assert!(
        matches!(
            kind("gitlab_issues"),
            PaginationKind::Cursor { cursor_header: Some(header), cursor_param, .. }
                if header == "X-Next-Page" && cursor_param == "page"
        ),
        "{:?}",
        kind("gitlab_issues")
    );
    assert!(
        matches!(
            kind("jira_issues"),
            PaginationKind::Offset { param_in: ParamLocation::Body, offset_param, limit_param, total_path: Some(total), .. }
                if offset_param == "/startAt" && limit_param == "/maxResults" && total == "/total"
        ),
        "{:?}",
        kind("jira_issues")
    );
    assert!(matches!(
        kind("zendesk_organizations"),
        PaginationKind::NextUrl { next_url_path } if next_url_path == "/next_page"
    ));
    let organizations = plan
        .jobs
        .iter()
        .find(|j| j.name == "zendesk_organizations")
        .expect("zendesk organizations example");
    assert_eq!(
        organizations.pagination.stop,
        Some(StopWhen {
            path: "/end_of_stream".to_string(),
            value: serde_json::Value::Bool(true),
        })
    );
    assert!(matches!(
        kind("zendesk_ticket_comments"),
        PaginationKind::NextUrl { .. }
    ));
    // One stream per ticket the tickets job wrote since the last pass.
    let comments = plan
        .jobs
        .iter()
        .find(|j| j.name == "zendesk_ticket_comments")
        .expect("zendesk comments example");
    assert_eq!(
        comments
            .partitions
            .as_ref()
            .and_then(|p| p.changed_only_parent()),
        Some("zendesk_tickets")
    );
    for cursor_job in [
        "stripe_charges",
        "slack_users",
        "hubspot_contacts",
        "notion_database",
    ] {
        assert!(
            matches!(kind(cursor_job), PaginationKind::Cursor { .. }),
            "{cursor_job}: {:?}",
            kind(cursor_job)
        );
    }
    for page_job in ["datadog_events", "datadog_monitors"] {
        assert!(
            matches!(kind(page_job), PaginationKind::Page { .. }),
            "{page_job}: {:?}",
            kind(page_job)
        );
    }
    // The site comes from the environment, into the host.
    let events = plan
        .jobs
        .iter()
        .find(|j| j.name == "datadog_events")
        .expect("datadog example");
    assert_eq!(
        events.request.env,
        [("DD_SITE".to_string(), "datadoghq.eu".to_string())]
    );
    let notion = plan
        .jobs
        .iter()
        .find(|j| j.name == "notion_database")
        .expect("notion example");
    assert_eq!(notion.request.method, HttpMethod::Post);
    let jira = plan
        .jobs
        .iter()
        .find(|j| j.name == "jira_issues")
        .expect("jira example");
    assert_eq!(jira.request.method, HttpMethod::Post);
}

/// The root project must not pick the examples up: they need real
/// credentials and would break `apisync run` and the demo.
#[test]
fn the_root_project_does_not_load_the_examples() {
    let overrides = SettingsOverrides {
        jobs_dir: Some("jobs".into()),
        ..SettingsOverrides::default()
    };
    let plan = load_project_with_env(None, &overrides, &[], &[])
        .unwrap_or_else(|d| panic!("{d}"))
        .plan;
    assert!(!plan.jobs.is_empty());
    // Compared as canonical paths: the checkout's own path may well hold
    // the word "examples" (a worktree named so).
    let jobs = Path::new("jobs").canonicalize().unwrap();
    let examples = Path::new(EXAMPLES).canonicalize().unwrap();
    for job in &plan.jobs {
        let file = job.file.canonicalize().unwrap();
        assert!(
            !file.starts_with(&examples) && file.parent() == Some(jobs.as_path()),
            "{} comes from the examples",
            job.file.display()
        );
    }
}

// ---- deploy/ -------------------------------------------------------------

fn yaml_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(KUBERNETES)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read yaml");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .collect()
}

fn find(kind: &str, name: &str) -> Value {
    yaml_files()
        .iter()
        .flat_map(|p| documents(p))
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} under {KUBERNETES}"))
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// `command` + `args` of the first container, as argv.
fn argv(pod_spec: &Value) -> Vec<String> {
    let container = &pod_spec["containers"][0];
    container["command"]
        .as_sequence()
        .into_iter()
        .chain(container["args"].as_sequence())
        .flatten()
        .map(|v| text(v, "an argument").to_string())
        .collect()
}

fn parse_cli(argv: &[String]) -> Cli {
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?} does not parse:\n{e}"))
}

/// The project the ConfigMaps hold, written to a temp dir and planned.
fn configmap_project() -> ProjectPlan {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = find("ConfigMap", "apisync-config");
    let toml = text(&config["data"]["apisync.toml"], "apisync.toml");
    std::fs::write(dir.path().join("apisync.toml"), toml).expect("write config");
    let jobs_dir = dir.path().join("jobs");
    std::fs::create_dir(&jobs_dir).expect("jobs dir");
    let jobs = find("ConfigMap", "apisync-jobs");
    let data = jobs["data"].as_mapping().expect("apisync-jobs data");
    for (name, body) in data {
        let name = text(name, "a job key");
        std::fs::write(jobs_dir.join(name), text(body, name)).expect("write job");
    }
    // The real paths exist only in the pod; everything else is as deployed.
    let overrides = SettingsOverrides {
        jobs_dir: Some(jobs_dir),
        database: Some(apisync::plan::DatabaseArg::new(
            dir.path().join("apisync.db").to_string_lossy(),
        )),
        ..SettingsOverrides::default()
    };
    load_project_with_env(Some(&dir.path().join("apisync.toml")), &overrides, &[], &[])
        .unwrap_or_else(|d| panic!("the ConfigMap project does not validate:\n{d}"))
        .plan
}

#[test]
fn every_deploy_yaml_file_parses_with_a_kind() {
    let files = yaml_files();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        for doc in documents(&file) {
            assert!(doc["apiVersion"].is_string(), "{}", file.display());
            assert!(doc["kind"].is_string(), "{}", file.display());
        }
    }
}

#[test]
fn the_configmap_project_validates_and_reads_secrets_from_the_mounted_files() {
    let plan = configmap_project();
    assert_eq!(plan.jobs.len(), 2);
    let secret = find("Secret", "apisync-secrets");
    let keys: BTreeSet<&str> = secret["stringData"]
        .as_mapping()
        .expect("stringData")
        .keys()
        .map(|k| text(k, "a secret key"))
        .collect();
    let cron = find("CronJob", "apisync");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let mount = secret_mount(pod);
    let mut files = 0;
    for auth in plan.auths.values() {
        for source in secrets_of(auth) {
            let SecretSource::File(path) = source else {
                panic!("a deployed secret not read from a file: {source:?}");
            };
            let key = path
                .strip_prefix(&mount)
                .unwrap_or_else(|_| panic!("{} is outside {}", path.display(), mount.display()));
            assert!(
                keys.contains(key.to_string_lossy().as_ref()),
                "{} is not a key of the Secret",
                key.display()
            );
            files += 1;
        }
    }
    assert!(files >= 3);
}

/// Where the container mounts the `apisync-secrets` Secret, read-only.
fn secret_mount(pod: &Value) -> PathBuf {
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"].as_str() == Some("apisync-secrets"))
        .expect("a volume of the apisync-secrets Secret");
    let name = &volume["name"];
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| &m["name"] == name)
        .expect("the secret volume is mounted");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    PathBuf::from(text(&mount["mountPath"], "mountPath"))
}

/// Where the container mounts the database volume, which must be a claim.
fn database_mount(pod: &Value) -> PathBuf {
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"].as_str() == Some("apisync-data"))
        .expect("a volume of the apisync-data claim");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the data volume is mounted");
    PathBuf::from(text(&mount["mountPath"], "mountPath"))
}

#[test]
fn the_cronjob_forbids_overlap_outlasts_shutdown_and_runs_due_jobs_with_json_logs() {
    let cron = find("CronJob", "apisync");
    let spec = &cron["spec"];
    assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Forbid"));
    let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));

    // SIGTERM: no new requests, commit, exit. The slowest request of any
    // deployed job bounds that, so the grace period must be longer.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let plan = configmap_project();
    let slowest = plan
        .jobs
        .iter()
        .map(|j| j.request.timeout)
        .max()
        .expect("jobs");
    assert!(
        Duration::from_secs(grace) > slowest + Duration::from_secs(10),
        "grace {grace}s vs request timeout {slowest:?}"
    );

    // The database is on the claim, where the ConfigMap says it is.
    let data = database_mount(pod);
    assert!(
        data_in_config(&data),
        "database not under {}",
        data.display()
    );
    secret_mount(pod);

    let cli = parse_cli(&argv(pod));
    assert_eq!(cli.global.log_format, apisync::cli::LogFormat::Json);
    match cli.command {
        Command::Run(args) => assert!(args.due, "the CronJob runs `run --due`"),
        other => panic!("the CronJob runs {other:?}"),
    }
}

/// The ConfigMap's `database` (which the planned project overrides) lies on `data`.
fn data_in_config(data: &Path) -> bool {
    let config = find("ConfigMap", "apisync-config");
    let toml = text(&config["data"]["apisync.toml"], "apisync.toml");
    let parsed: toml::Table = toml.parse().expect("apisync.toml parses");
    parsed["database"]
        .as_str()
        .is_some_and(|db| Path::new(db).starts_with(data))
}

#[test]
fn the_backfill_job_runs_a_backfill_of_a_deployed_job() {
    let job = find("Job", "apisync-backfill");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    assert!(pod["terminationGracePeriodSeconds"].as_u64() >= Some(30));
    assert!(data_in_config(&database_mount(pod)));
    secret_mount(pod);
    let plan = configmap_project();
    match parse_cli(&argv(pod)).command {
        Command::Backfill(args) => assert!(
            plan.jobs.iter().any(|j| j.name == args.job),
            "backfill of unknown job {}",
            args.job
        ),
        other => panic!("the backfill Job runs {other:?}"),
    }
}

/// The env var `name` of the first container.
fn env_var<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"][0]["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn the_indexed_job_shards_one_invocation_over_its_completions() {
    let job = find("Job", "apisync-sharded");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_u64().expect("completions");
    assert!(completions > 1);
    assert!(spec["parallelism"].as_u64().expect("parallelism") >= 1);
    assert!(
        spec["backoffLimitPerIndex"]
            .as_u64()
            .expect("backoffLimitPerIndex")
            >= 1
    );
    let pod = &spec["template"]["spec"];
    // backoffLimitPerIndex requires it, and a retry is a fresh pod.
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));

    // The shard count is the completion count; the invocation is the Job's
    // uid, the same for every pod and every retry of an index.
    let count = env_var(pod, apisync::run::COUNT_ENV);
    assert_eq!(
        count["value"].as_str(),
        Some(completions.to_string().as_str())
    );
    let invocation = env_var(pod, apisync::run::INVOCATION_ENV);
    assert_eq!(
        invocation["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['batch.kubernetes.io/controller-uid']")
    );
    // The database URL comes from a Secret, never a literal.
    let database = env_var(pod, "APISYNC_DATABASE");
    assert!(database["value"].is_null(), "a literal database URL");
    assert!(database["valueFrom"]["secretKeyRef"]["name"].is_string());
    assert!(database["valueFrom"]["secretKeyRef"]["key"].is_string());

    // SIGTERM: no new requests, commit, give the streams back, exit.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let slowest = configmap_project()
        .jobs
        .iter()
        .map(|j| j.request.timeout)
        .max()
        .expect("jobs");
    assert!(Duration::from_secs(grace) > slowest + Duration::from_secs(10));
    let resources = &pod["containers"][0]["resources"];
    assert!(resources["requests"]["cpu"].is_string());
    assert!(resources["limits"]["memory"].is_string());
    secret_mount(pod);

    // `run --steal`, sharded by the Indexed Job's variables.
    let cli = parse_cli(&argv(pod));
    assert_eq!(cli.global.log_format, apisync::cli::LogFormat::Json);
    let Command::Run(args) = cli.command else {
        panic!("the Indexed Job does not run `run`");
    };
    assert!(args.steal);
    assert!(
        args.shard.is_none(),
        "the shard comes from JOB_COMPLETION_INDEX"
    );
    let env = |name: &str| match name {
        "JOB_COMPLETION_INDEX" => Some("1".to_string()),
        "APISYNC_SHARD_COUNT" => Some(completions.to_string()),
        "APISYNC_INVOCATION" => Some("3f1c-uid".to_string()),
        _ => None,
    };
    let sharding = apisync::run::resolve_sharding(args.shard, args.invocation, args.steal, env)
        .expect("the pod's variables make a sharded run")
        .expect("sharded");
    assert_eq!(sharding.spec.index, 1);
    assert_eq!(u64::from(sharding.spec.count), completions);
    assert!(sharding.steal);
}

/// The apisync command of each crontab line, without redirections.
fn crontab_commands() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(CRONTAB).expect("crontab.example");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            // Variable assignments (MAILTO=...) are not schedule lines.
            l.split_whitespace()
                .next()
                .is_some_and(|first| !first.contains('='))
        })
        .map(|line| {
            let command: Vec<&str> = line.split_whitespace().skip(5).collect();
            let start = command
                .iter()
                .position(|w| *w == "apisync")
                .unwrap_or_else(|| panic!("no apisync in {line:?}"));
            command[start..]
                .iter()
                .take_while(|w| !w.starts_with('>') && !w.starts_with("2>"))
                .map(|w| w.to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_crontab_lines_parse_and_run_due_jobs_without_flock() {
    let text = std::fs::read_to_string(CRONTAB).expect("crontab.example");
    let commands = crontab_commands();
    assert!(!commands.is_empty());
    let mut runs = 0;
    for argv in &commands {
        let cli = parse_cli(argv);
        if let Command::Run(args) = cli.command {
            assert!(args.due);
            assert_eq!(cli.global.log_format, apisync::cli::LogFormat::Json);
            runs += 1;
        }
    }
    assert_eq!(runs, 1, "{commands:?}");
    let schedule_lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(
        schedule_lines.iter().all(|l| !l.contains("flock")),
        "the job lease makes flock unnecessary"
    );
}

#[test]
fn the_deploy_readme_links_every_file() {
    let readme = std::fs::read_to_string("deploy/README.md").expect("deploy/README.md");
    for file in yaml_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("kubernetes/{name}")),
            "README does not link {name}"
        );
    }
    assert!(readme.contains("crontab.example"));
}
