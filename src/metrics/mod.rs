//! Prometheus metrics of a run: the text exposition format rendered from the
//! run summary, written atomically for node_exporter's textfile collector
//! (`--metrics-file`) and pushed to a Pushgateway (`--pushgateway`), one
//! group per job so a run of a few jobs never erases the others' figures.

mod error;
mod file;
mod publish;
mod push;
mod render;

pub use error::MetricsError;
pub use file::write_atomically;
pub use publish::{MetricsTargets, last_success_times, publish};
pub use push::{PUSH_TIMEOUT, group_url, push};
pub use render::{JOB_LABEL, JobLabel, JobView, escape_label_value, metric_names, render};
