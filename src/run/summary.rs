//! The run summary: one line per job, printed at the end and returned to
//! the CLI, which turns it into the exit code.

use serde::Serialize;

use super::RunError;

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

#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub job: String,
    pub status: JobStatus,
    pub pages: u64,
    pub records: u64,
    pub seconds: f64,
    /// The first error, secrets already redacted.
    pub error: Option<String>,
    #[serde(skip)]
    pub interrupted: bool,
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
        }
    }

    pub(crate) fn failed(mut self, err: RunError, started: std::time::Instant) -> Self {
        self.status = JobStatus::Failed;
        self.error = Some(err.to_string());
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

    pub(crate) fn skipped(job: &str, err: RunError) -> Self {
        JobSummary {
            status: JobStatus::Skipped,
            error: Some(err.to_string()),
            ..JobSummary::new(job)
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub jobs: Vec<JobSummary>,
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
        let mut out = format!(
            "{:<24} {:<12} {:>8} {:>10} {:>9}\n",
            "job", "status", "pages", "records", "seconds"
        );
        for job in &self.jobs {
            let status = format!("{:?}", job.status).to_lowercase();
            out.push_str(&format!(
                "{:<24} {:<12} {:>8} {:>10} {:>9.2}\n",
                job.job, status, job.pages, job.records, job.seconds
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
