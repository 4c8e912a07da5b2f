//! The run summary: one line per job, printed at the end and returned to
//! the CLI, which turns it into the exit code.

use serde::Serialize;

use super::error::RunError;
use crate::fetch::StatsSnapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Succeeded,
    Failed,
    /// Not run because a dependency failed (counts as failed).
    Skipped,
    /// Stopped by SIGINT/SIGTERM after committing what was complete.
    Interrupted,
    /// Not run because another live process holds its lease (or one of its
    /// dependencies). Not a failure: that process does the work.
    Held,
}

/// Serialised as [`JobLine`]: the request counts come from `http`, so
/// they cannot disagree with the metrics.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "JobLine")]
pub struct JobSummary {
    pub job: String,
    pub status: JobStatus,
    pub pages: u64,
    pub records: u64,
    pub seconds: f64,
    /// The first error, secrets already redacted.
    pub error: Option<String>,
    pub interrupted: bool,
    /// Token requests of the job's OAuth2 credential while the job ran.
    pub token_requests: u64,
    /// Every counter of the job's requests, all partitions: `requests` is
    /// every attempt and redirect hop, `retries` the attempts after a
    /// backoff; by status class and bytes for the metrics.
    pub http: StatsSnapshot,
    /// Sharded runs only: the streams this process ran.
    pub streams: Option<StreamCounts>,
}

/// The streams of a job one shard ran (sharded runs only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamCounts {
    /// Every stream this process ran (to its end, or until it failed).
    pub run: u64,
    /// Of those, streams of other shards taken with `--steal`.
    pub stolen: u64,
}

/// One job in the JSON summary.
#[derive(Serialize)]
struct JobLine {
    job: String,
    status: JobStatus,
    pages: u64,
    records: u64,
    requests: u64,
    retries: u64,
    seconds: f64,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streams: Option<StreamCounts>,
}

impl From<JobSummary> for JobLine {
    fn from(job: JobSummary) -> Self {
        JobLine {
            requests: job.http.requests,
            retries: job.http.retries,
            job: job.job,
            status: job.status,
            pages: job.pages,
            records: job.records,
            seconds: job.seconds,
            error: job.error,
            streams: job.streams,
        }
    }
}

impl JobSummary {
    pub(crate) fn new(job: &str) -> Self {
        JobSummary {
            job: job.to_string(),
            status: JobStatus::Succeeded,
            pages: 0,
            records: 0,
            seconds: 0.0,
            error: None,
            interrupted: false,
            token_requests: 0,
            http: StatsSnapshot::default(),
            streams: None,
        }
    }

    /// Add what the job's `RequestStats` counted.
    pub(crate) fn add_requests(&mut self, stats: &StatsSnapshot) {
        self.http += stats;
    }

    pub(crate) fn failed(mut self, err: RunError, started: std::time::Instant) -> Self {
        self.status = JobStatus::Failed;
        self.error = Some(error_text(&err));
        self.seconds = started.elapsed().as_secs_f64();
        self
    }

    /// Skipped because another process runs it; `message` says which.
    pub(crate) fn held(job: &str, message: String) -> Self {
        JobSummary {
            status: JobStatus::Held,
            error: Some(message),
            ..JobSummary::new(job)
        }
    }

    /// Add what a later pass over the same job did (a `--steal` shard
    /// coming back to a job another shard left): counts add up, a failure
    /// or an interruption wins over success.
    pub(crate) fn absorb(&mut self, later: JobSummary) {
        self.pages += later.pages;
        self.records += later.records;
        self.seconds += later.seconds;
        self.token_requests += later.token_requests;
        self.http += &later.http;
        self.interrupted |= later.interrupted;
        if let Some(more) = later.streams {
            let streams = self.streams.get_or_insert_default();
            streams.run += more.run;
            streams.stolen += more.stolen;
        }
        if matches!(later.status, JobStatus::Failed | JobStatus::Interrupted) {
            self.status = later.status;
            self.error = self.error.take().or(later.error);
        }
    }

    pub(crate) fn skipped(job: &str, err: RunError) -> Self {
        JobSummary {
            status: JobStatus::Skipped,
            error: Some(error_text(&err)),
            ..JobSummary::new(job)
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub jobs: Vec<JobSummary>,
    /// Which shard of which invocation this process was (sharded runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardReport>,
}

/// The shard line of a sharded run's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardReport {
    pub index: u32,
    pub count: u32,
    pub invocation: String,
    pub steal: bool,
}

impl RunSummary {
    pub fn any_failed(&self) -> bool {
        self.jobs
            .iter()
            .any(|j| matches!(j.status, JobStatus::Failed | JobStatus::Skipped))
    }

    pub fn any_interrupted(&self) -> bool {
        self.jobs.iter().any(|j| j.status == JobStatus::Interrupted)
    }

    /// A plain table for terminals and logs.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(shard) = &self.shard {
            out.push_str(&format!(
                "shard {}/{} of invocation {}{}\n",
                shard.index,
                shard.count,
                shard.invocation,
                if shard.steal { " (stealing)" } else { "" }
            ));
        }
        out.push_str(&format!(
            "{:<24} {:<12} {:>8} {:>10} {:>9} {:>8} {:>9}\n",
            "job", "status", "pages", "records", "requests", "retries", "seconds"
        ));
        for job in &self.jobs {
            let status = format!("{:?}", job.status).to_lowercase();
            out.push_str(&format!(
                "{:<24} {:<12} {:>8} {:>10} {:>9} {:>8} {:>9.2}\n",
                job.job,
                status,
                job.pages,
                job.records,
                job.http.requests,
                job.http.retries,
                job.seconds
            ));
        }
        for job in self.jobs.iter().filter(|j| j.error.is_some()) {
            out.push_str(&format!(
                "\nerror: {}",
                job.error.as_deref().unwrap_or_default()
            ));
        }
        out
    }
}

/// A job's error as shown, stored in the runs table and read by `status`:
/// scrubbed of every credential in use, whatever layer built it.
pub(crate) fn error_text(err: &RunError) -> String {
    crate::secret::scrub(&err.to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunSummary {
        let mut orders = JobSummary::new("orders");
        orders.pages = 12;
        orders.records = 1_200;
        orders.add_requests(&StatsSnapshot {
            requests: 15,
            retries: 3,
            ..StatsSnapshot::default()
        });
        orders.seconds = 4.5;
        let mut refunds = JobSummary::new("refunds");
        refunds.status = JobStatus::Failed;
        refunds.http.requests = 6;
        refunds.http.retries = 5;
        refunds.error = Some(
            "job \"refunds\": GET https://api.example.com/refunds returned 503 after 6 attempts"
                .into(),
        );
        RunSummary {
            jobs: vec![orders, refunds],
            shard: None,
        }
    }

    #[test]
    fn the_table_shows_requests_and_retries() {
        insta::assert_snapshot!(sample().render());
    }

    #[test]
    fn the_json_summary_has_requests_and_retries() {
        let json = serde_json::to_value(sample()).expect("a summary serializes");
        assert_eq!(json["jobs"][0]["requests"], 15);
        assert_eq!(json["jobs"][0]["retries"], 3);
        assert_eq!(json["jobs"][1]["retries"], 5);
        insta::assert_json_snapshot!(json);
    }
}
