//! The Grafana dashboard (deploy/grafana/apisync.json) queries only metrics
//! apisync writes: every `apisync_*` name in its PromQL is a family of
//! `apisync::metrics::metric_names()` (or the job label), so renaming a
//! family, or querying one that does not exist yet, fails here.

use std::collections::BTreeSet;
use std::path::Path;

use apisync::metrics::{JOB_LABEL, metric_names};
use serde_json::Value;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/apisync.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard file is readable");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL text in the dashboard: panel targets and template queries.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect(dashboard, &mut found);
    found
}

fn collect(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", Value::String(text)) => found.push(text.clone()),
                    ("query", Value::String(text)) if text.contains('(') => {
                        found.push(text.clone())
                    }
                    _ => collect(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

/// The identifiers of a PromQL text, outside quoted label values.
fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    let mut current = String::new();
    while let Some(c) = chars.next() {
        if c == '"' {
            // A label value or string: skip to its closing quote.
            while let Some(inner) = chars.next() {
                match inner {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The `apisync_*` names in `expr` that are neither a family apisync
/// writes nor its job label.
fn unknown_names(expr: &str) -> Vec<String> {
    let known: BTreeSet<&str> = metric_names().collect();
    identifiers(expr)
        .into_iter()
        .filter(|name| name.starts_with("apisync_"))
        .filter(|name| name != JOB_LABEL && !known.contains(name.as_str()))
        .collect()
}

#[test]
fn every_metric_the_dashboard_queries_is_one_apisync_writes() {
    let queries = queries(&dashboard());
    assert!(queries.len() >= 10, "too few queries found: {queries:?}");
    for expr in &queries {
        assert_eq!(unknown_names(expr), Vec::<String>::new(), "in {expr}");
    }
}

#[test]
fn the_checker_rejects_a_metric_apisync_does_not_write() {
    // Deferred jobs are a status value to come, not a metric family.
    let expr = r#"apisync_job_deferred{apisync_job=~"$job"} + apisync_job_records"#;
    assert_eq!(
        unknown_names(expr),
        vec!["apisync_job_deferred".to_string()]
    );
    // A name inside a label value is not a metric.
    assert!(unknown_names(r#"apisync_job_status{status="apisync_nothing"}"#).is_empty());
}

#[test]
fn every_panel_queries_a_metric_and_the_issue_s_figures_are_all_shown() {
    let dashboard = dashboard();
    let known: BTreeSet<&str> = metric_names().collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let names: BTreeSet<String> = queries(&panel["targets"])
            .iter()
            .flat_map(|expr| identifiers(expr))
            .filter(|name| known.contains(name.as_str()))
            .collect();
        assert!(
            !names.is_empty(),
            "panel {title:?} queries no apisync metric"
        );
        used.extend(names);
    }
    for wanted in [
        "apisync_job_records",
        "apisync_job_pages",
        "apisync_job_last_success_timestamp_seconds",
        "apisync_job_status",
        "apisync_job_retries",
        "apisync_job_requests",
        "apisync_job_duration_seconds",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}
