//! The Prometheus text exposition format (version 0.0.4) of a run's
//! figures. Every figure is a gauge: it describes the last run of a job, not
//! a count that grows over the life of a process, which is what a textfile
//! or a Pushgateway group holds for a batch job.
//!
//! The job's name goes in the `apisync_job` label, not `job`: `job` is the
//! label Prometheus gives every scraped target, and the Pushgateway's
//! grouping key, so a `job` label of ours would be renamed to `exported_job`
//! or refused.

use std::fmt::Write as _;

use crate::run::{JobStatus, JobSummary};

/// The label that carries the job's name.
pub const JOB_LABEL: &str = "apisync_job";

/// One job's figures as the renderer sees them.
#[derive(Debug, Clone, Copy)]
pub struct JobView<'a> {
    pub summary: &'a JobSummary,
    /// Unix seconds when the last successful run of the job started; None
    /// when it never succeeded (the sample is then left out).
    pub last_success: Option<f64>,
}

/// Whether samples carry the job label: a file holds every job, so yes; a
/// Pushgateway group per job gets it from the grouping key, so no (pushed
/// metrics must not repeat a grouping label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobLabel {
    Include,
    Omit,
}

/// One sample of a job: an optional extra label (name, value) and the value.
type Sample = (Option<(&'static str, String)>, f64);

/// One metric family: name, HELP text and the samples of one job.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: fn(&JobView<'_>) -> Vec<Sample>,
}

fn one(value: impl Into<f64>) -> Vec<Sample> {
    vec![(None, value.into())]
}

/// u64 counts as f64: exact below 2^53, far beyond any run's figures.
fn count(value: u64) -> Vec<Sample> {
    one(value as f64)
}

/// Every per-job figure; to add one, add a line here. (Token refreshes are
/// counted per credential and attributed to the jobs that ran meanwhile.)
const FAMILIES: &[Family] = &[
    Family {
        name: "apisync_job_records",
        help: "Records received and committed by the job in the last run.",
        samples: |j| count(j.summary.records),
    },
    Family {
        name: "apisync_job_pages",
        help: "Pages received and committed by the job in the last run.",
        samples: |j| count(j.summary.pages),
    },
    Family {
        name: "apisync_job_requests",
        help: "HTTP requests the job sent in the last run (every attempt), by outcome: 2xx, 3xx, 4xx, 5xx or transport_error.",
        samples: requests_by_class,
    },
    Family {
        name: "apisync_job_retries",
        help: "Requests of the last run that repeated a failed attempt after a backoff.",
        samples: |j| count(j.summary.http.retries),
    },
    Family {
        name: "apisync_job_token_requests",
        help: "Token requests (OAuth2 grants and refreshes) of the job's credential while the job ran; jobs sharing a credential at the same time count the same ones.",
        samples: |j| count(j.summary.token_requests),
    },
    Family {
        name: "apisync_job_response_bytes",
        help: "Page body bytes the job read in the last run (after decompression).",
        samples: |j| count(j.summary.http.bytes),
    },
    Family {
        name: "apisync_job_duration_seconds",
        help: "Wall-clock duration of the job in the last run.",
        samples: |j| one(j.summary.seconds),
    },
    Family {
        name: "apisync_job_last_success_timestamp_seconds",
        help: "Unix time when the last successful run of the job started (its data is at least that fresh).",
        samples: |j| j.last_success.map(one).unwrap_or_default(),
    },
    Family {
        name: "apisync_job_status",
        help: "Outcome of the job's last run: 1 for its status, 0 for the others.",
        samples: status_set,
    },
];

/// The name of every metric family apisync writes, in the order written:
/// the one list that dashboards and alerts are checked against
/// (`tests/dashboard.rs`), so a renamed family fails a test there.
pub fn metric_names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|family| family.name)
}

/// One sample per outcome class, zeros included, so a rate of errors is a
/// plain division in PromQL.
fn requests_by_class(j: &JobView<'_>) -> Vec<Sample> {
    let http = &j.summary.http;
    [
        ("2xx", http.status_2xx),
        ("3xx", http.status_3xx),
        ("4xx", http.status_4xx),
        ("5xx", http.status_5xx),
        ("transport_error", http.transport_errors),
    ]
    .into_iter()
    .map(|(class, n)| (Some(("class", class.to_string())), n as f64))
    .collect()
}

/// The status as a state set: one sample per possible status, so an alert
/// is `apisync_job_status{status="failed"} == 1` and a missing job is
/// visible as absent, not as a magic number.
fn status_set(j: &JobView<'_>) -> Vec<Sample> {
    [
        (JobStatus::Succeeded, "succeeded"),
        (JobStatus::Failed, "failed"),
        (JobStatus::Skipped, "skipped"),
        (JobStatus::Interrupted, "interrupted"),
        (JobStatus::Held, "held"),
    ]
    .into_iter()
    .map(|(status, name)| {
        let value = if j.summary.status == status { 1.0 } else { 0.0 };
        (Some(("status", name.to_string())), value)
    })
    .collect()
}

/// The exposition text of `jobs`: HELP and TYPE once per family, then its
/// samples for every job (a family's samples must be contiguous).
pub fn render(jobs: &[JobView<'_>], label: JobLabel) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        let samples: Vec<(&JobView<'_>, Sample)> = jobs
            .iter()
            .flat_map(|job| (family.samples)(job).into_iter().map(move |s| (job, s)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
        let _ = writeln!(out, "# TYPE {} gauge", family.name);
        for (job, (extra, value)) in samples {
            let mut labels = Vec::new();
            if label == JobLabel::Include {
                labels.push((JOB_LABEL, job.summary.job.clone()));
            }
            labels.extend(extra);
            let _ = writeln!(
                out,
                "{}{} {}",
                family.name,
                label_set(&labels),
                number(value)
            );
        }
    }
    out
}

fn label_set(labels: &[(&str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Label values escape backslash, double quote and line feed, as the text
/// format requires (a job name is a file stem: it can hold any of them).
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes only backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's float syntax as Prometheus reads it: integers without a fraction,
/// and the special values spelled its way.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests;
