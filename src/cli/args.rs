//! The command line, as clap sees it. Names follow job-format.md.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::DatabaseArg;

/// Declarative batch sync of paginated JSON APIs into SQLite.
#[derive(Debug, Parser)]
#[command(name = "apisync", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The project file (default: ./apisync.toml if present).
    #[arg(long, global = true, value_name = "PATH", env = "APISYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// SQLite database file or postgres:// URL (overrides `database` and APISYNC_DATABASE).
    /// A password here shows in the process list: prefer APISYNC_DATABASE for URLs.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<DatabaseArg>,
    /// Most HTTP requests in flight at once, all jobs together.
    #[arg(long, global = true, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Load KEY=VALUE lines into the environment first (variables already set win).
    #[arg(long, global = true, value_name = "PATH", env = "APISYNC_ENV_FILE")]
    pub env_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "APISYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More logs (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Pretty on a terminal, plain text without colours otherwise.
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync the selected jobs (all when none is named).
    Run(RunArgs),
    /// Sync a date range of one job in slices, each checkpointed.
    Backfill(BackfillArgs),
    /// Check every file; print every error with file:line:col (exit 2 on any).
    Validate,
    /// Last run, records, resume point and high-water mark of each job.
    Status(StatusArgs),
    /// Forget a job's checkpoints and high-water marks.
    Reset(ResetArgs),
    /// Run the bundled example jobs against a built-in local API.
    Demo(DemoArgs),
    /// Fetch a first page and write jobs/NAME.toml with what was detected.
    Init(InitArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Fetch a job's first pages as `run` would and print the records; writes nothing.
    Preview(PreviewArgs),
    /// Print the JSON Schema of job files or apisync.toml (for editors).
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The job to preview.
    pub job: String,
    /// How many pages to fetch (at most; fewer when the stream ends).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pages: u64,
    /// The partition to fetch, its key as `apisync status` shows it (default: the first).
    #[arg(long, value_name = "KEY")]
    pub partition: Option<String>,
    /// Print the records as JSON lines (one record per line) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file the schema describes.
    #[arg(value_enum, default_value_t = SchemaFile::Job)]
    pub file: SchemaFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFile {
    /// apisync.toml.
    Project,
    /// A job file, jobs/NAME.toml.
    Job,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job names (default: every job).
    pub jobs: Vec<String>,
    /// Only jobs whose schedule says they are due.
    #[arg(long)]
    pub due: bool,
    /// Fail a stream that completes no page for this long (retries and slow
    /// bodies included); it keeps its checkpoint and other jobs go on.
    #[arg(long, default_value = "10m", value_name = "DURATION", env = "APISYNC_STALL_TIMEOUT", value_parser = humantime::parse_duration)]
    pub stall_timeout: std::time::Duration,
    /// Only jobs with this tag (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Ignore high-water marks for this run.
    #[arg(long)]
    pub full_refresh: bool,
    /// Print the plan and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait for jobs another process is running instead of skipping them.
    #[arg(long)]
    pub wait: bool,
    /// Run only this shard's streams, 0-based (default: JOB_COMPLETION_INDEX
    /// and APISYNC_SHARD_COUNT, as a Kubernetes Indexed Job sets them).
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard)]
    pub shard: Option<crate::run::ShardSpec>,
    /// The id every shard of one run shares, and reruns of it reuse
    /// (default: APISYNC_INVOCATION). Needed with more than one shard.
    #[arg(long, value_name = "ID")]
    pub invocation: Option<String>,
    /// Once this shard's streams are done, take other shards' streams that
    /// no live process holds (unstarted, or left by a dead shard).
    #[arg(long)]
    pub steal: bool,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

fn parse_shard(text: &str) -> Result<crate::run::ShardSpec, String> {
    text.parse()
}

/// Where the run's Prometheus metrics go (run and backfill).
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsArgs {
    /// Write Prometheus text metrics here at the end (atomically: for node_exporter's textfile collector).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Push the same metrics to this Prometheus Pushgateway (a failed push is a warning).
    #[arg(long, value_name = "URL", value_parser = url::Url::parse)]
    pub pushgateway: Option<url::Url>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    pub job: String,
    /// First day (YYYY-MM-DD) or RFC 3339 time.
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive), or "now".
    #[arg(long)]
    pub to: String,
    /// Slice length.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub step: std::time::Duration,
    /// Wait if another process is running the job instead of skipping it.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Job names (default: every job). Named jobs also get their recent runs.
    pub jobs: Vec<String>,
    /// How many recent runs to show for each named job.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub runs: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    pub job: String,
    /// Keep the high-water marks: forget only checkpoints and finished
    /// partitions, so the next run starts each stream over from its mark
    /// instead of from `initial` (not for replace jobs).
    #[arg(long)]
    pub keep_marks: bool,
    /// Reset only this partition's stream (its key as `apisync status`
    /// shows it); not for replace jobs.
    #[arg(long, value_name = "KEY")]
    pub partition: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the built-in API on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Only serve the API (for the README's tour), until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Milliseconds added to every response (to watch a kill and resume).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay_ms: u64,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The new job's name: jobs/NAME.toml (never overwritten).
    pub name: String,
    /// URL of the first page.
    #[arg(long, value_parser = url::Url::parse)]
    pub url: url::Url,
    /// A named auth of apisync.toml to fetch with.
    #[arg(long, value_name = "NAME")]
    pub auth: Option<String>,
}

/// Environment variables the command line reads, so the settings layer does
/// not warn about them as unknown.
pub const CLI_ENV: &[&str] = &[
    "APISYNC_CONFIG",
    "APISYNC_ENV_FILE",
    "APISYNC_LOG_FORMAT",
    "APISYNC_STALL_TIMEOUT",
    crate::run::COUNT_ENV,
    crate::run::INVOCATION_ENV,
    crate::run::STALE_ENV,
    NOW_ENV,
    // Knobs of apisync's own test suite (`cargo test`), which every binary
    // the tests start inherits: not settings, and not worth a warning.
    "APISYNC_TEST_POSTGRES",
    "APISYNC_KILL_LOOPS",
    "APISYNC_KILL_SEED",
];

/// For tests only: the current time (RFC 3339) that `run --due` and
/// `status` use instead of the system clock, so due times can be checked
/// without waiting for real time.
pub const NOW_ENV: &str = "APISYNC_NOW";

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsed command line's Debug never shows a `--db` password.
    #[test]
    fn debug_of_the_arguments_hides_a_database_password() {
        let url = "postgres://app:s3cr3t-pw@db:5432/sync";
        let cli = Cli::try_parse_from(["apisync", "--db", url, "status"]).unwrap();
        let debug = format!("{cli:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("postgres://app:***@db:5432/sync"), "{debug}");
    }
}
