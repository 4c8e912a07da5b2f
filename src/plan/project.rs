//! The whole project -> `ProjectPlan`: named auth, hosts, every job, and the
//! checks across jobs (references, depends_on cycles).

use std::collections::{BTreeMap, BTreeSet};

use super::auth::{plan_auth, secret_source};
use super::checks;
use super::diagnostics::{Diagnostic, Sink};
use super::job::{Known, plan_job};
use crate::definition::{LoadedJob, ProjectDef, SourceFile};
use crate::plan::{AuthPlan, HostLimits, JobPlan, ProjectPlan, Settings};

/// Pure: definitions in, plan (or nothing, with every problem in `out`) out.
pub(crate) fn build(
    config: Option<(&SourceFile, &ProjectDef)>,
    settings: Settings,
    jobs: &[LoadedJob],
    unparsed_jobs: &[String],
    env: &[(String, String)],
    out: &mut Vec<Diagnostic>,
    warnings: &mut Vec<String>,
) -> Option<ProjectPlan> {
    let errors_before = out.len();
    let mut auths = BTreeMap::new();
    let mut hosts = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    if let Some((source, def)) = config {
        let mut sink = Sink {
            source,
            job: None,
            out,
            warnings,
        };
        plan_named_auths(def, &mut auths, &mut sink);
        plan_secrets(def, &mut secrets, &mut sink);
        for (name, host) in &def.hosts {
            let rate_limit = host.rate_limit.as_ref().and_then(|r| {
                checks::rate_limit(r.get_ref())
                    .map_err(|(m, h)| {
                        sink.at(r, &format!("hosts.{}.rate_limit", name.get_ref()), m, h)
                    })
                    .ok()
            });
            if let Some(c) = host.concurrency.as_ref().filter(|c| *c.get_ref() == 0) {
                sink.at(
                    c,
                    &format!("hosts.{}.concurrency", name.get_ref()),
                    "`concurrency` must be at least 1",
                    None,
                );
            }
            let limits = HostLimits {
                rate_limit,
                concurrency: host.concurrency.as_ref().map(|c| *c.get_ref()),
            };
            hosts.insert(name.get_ref().to_lowercase(), limits);
        }
    }
    let auth_names: BTreeSet<String> = config
        .map(|(_, def)| def.auth.keys().map(|k| k.get_ref().clone()).collect())
        .unwrap_or_default();
    // A job whose file did not parse still exists: referring to it is not
    // a second error.
    let job_names: BTreeSet<String> = jobs
        .iter()
        .map(|j| j.name.clone())
        .chain(unparsed_jobs.iter().cloned())
        .collect();
    let secret_names: BTreeSet<String> = config
        .map(|(_, def)| def.secrets.keys().map(|k| k.get_ref().clone()).collect())
        .unwrap_or_default();
    let known = Known {
        auths: &auth_names,
        jobs: &job_names,
        env,
        secrets: &secret_names,
    };
    let mut planned = Vec::new();
    for job in jobs {
        let mut sink = Sink {
            source: &job.source,
            job: Some(&job.name),
            out,
            warnings,
        };
        if let Some(plan) = plan_job(job, &known, &mut auths, &mut sink) {
            planned.push(plan);
        }
    }
    report_cycles(jobs, out, warnings);
    planned.sort_by(|a, b| a.name.cmp(&b.name));
    report_shared_tables(jobs, &planned, out, warnings);
    (out.len() == errors_before).then(|| ProjectPlan {
        config_file: config.map(|(s, _)| s.path.clone()),
        settings,
        auths,
        hosts,
        secrets,
        jobs: planned,
    })
}

/// `[secrets]`: each name must be one a placeholder can spell.
fn plan_secrets(
    def: &ProjectDef,
    secrets: &mut BTreeMap<String, crate::plan::SecretSource>,
    sink: &mut Sink<'_>,
) {
    for (name, value) in &def.secrets {
        let key = format!("secrets.{}", name.get_ref());
        if let Err((m, h)) = checks::placeholder_name("secret name", name.get_ref()) {
            sink.at(name, &key, m, h);
            continue;
        }
        let source = secret_source(value, &key, sink);
        secrets.insert(name.get_ref().clone(), source);
    }
}

fn plan_named_auths(def: &ProjectDef, auths: &mut BTreeMap<String, AuthPlan>, sink: &mut Sink<'_>) {
    for (name, auth) in &def.auth {
        let prefix = format!("auth.{}", name.get_ref());
        if let Some(plan) = plan_auth(auth, &prefix, sink) {
            auths.insert(name.get_ref().clone(), plan);
        }
    }
}

/// Two jobs that write one table (SQLite compares table names without
/// case): each keeps its own checkpoints and marks, so a replace job's swap
/// would drop the other's rows while its marks say they are synced, and
/// two keys or modes would mix in one table. Reported at the later job.
fn report_shared_tables(
    jobs: &[LoadedJob],
    planned: &[JobPlan],
    out: &mut Vec<Diagnostic>,
    warnings: &mut Vec<String>,
) {
    let mut owners: BTreeMap<String, &str> = BTreeMap::new();
    for plan in planned {
        let key = plan.output.table.to_lowercase();
        let Some(first) = owners.get(&key).copied() else {
            owners.insert(key, &plan.name);
            continue;
        };
        let Some(job) = jobs.iter().find(|j| j.name == plan.name) else {
            continue;
        };
        let mut sink = Sink {
            source: &job.source,
            job: Some(&job.name),
            out,
            warnings,
        };
        let message = format!(
            "job \"{}\" writes table \"{}\", which job \"{first}\" writes too (table names compare without case)",
            plan.name, plan.output.table
        );
        let hint =
            Some("give each job a table of its own with [output] table = \"...\"".to_string());
        match job.def.output.as_ref().and_then(|o| o.table.as_ref()) {
            Some(table) => sink.at(table, "output.table", message, hint),
            None => sink.file("output.table", message, hint),
        }
    }
}

/// Every depends_on cycle, reported once at the first job of it (by name).
fn report_cycles(jobs: &[LoadedJob], out: &mut Vec<Diagnostic>, warnings: &mut Vec<String>) {
    let by_name: BTreeMap<&str, &LoadedJob> = jobs.iter().map(|j| (j.name.as_str(), j)).collect();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    for job in jobs {
        let Some(cycle) = find_cycle(&job.name, &by_name) else {
            continue;
        };
        let mut key = cycle.clone();
        key.sort();
        if !reported.insert(key) || cycle.first() != Some(&job.name) {
            continue;
        }
        let Some(dep) = job
            .def
            .depends_on
            .iter()
            .find(|d| Some(d.get_ref()) == cycle.get(1))
        else {
            continue;
        };
        let mut sink = Sink {
            source: &job.source,
            job: Some(&job.name),
            out,
            warnings,
        };
        let path = cycle
            .iter()
            .chain(cycle.first())
            .cloned()
            .collect::<Vec<_>>()
            .join(" -> ");
        sink.at(
            dep,
            "depends_on",
            format!("depends_on cycle: {path}"),
            Some("remove one of these dependencies".into()),
        );
    }
}

/// A path start -> ... -> (back to start), if `start` is on a cycle.
fn find_cycle(start: &str, jobs: &BTreeMap<&str, &LoadedJob>) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        start: &str,
        jobs: &BTreeMap<&str, &LoadedJob>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let Some(job) = jobs.get(at) else {
            return false;
        };
        for dep in &job.def.depends_on {
            let dep = dep.get_ref();
            if dep == start {
                return true;
            }
            if dep != at && seen.insert(dep.clone()) {
                path.push(dep.clone());
                if walk(dep, start, jobs, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(start, start, jobs, &mut path, &mut seen).then_some(path)
}
