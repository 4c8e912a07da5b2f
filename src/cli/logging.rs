//! Logs go to stderr (stdout is for results). Levels follow the house
//! style: WARN is a retry, ERROR a failed job. HTTP library internals are
//! kept at WARN unless asked for, and even then headers are marked
//! sensitive where credentials travel.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use super::args::{GlobalArgs, LogFormat};

pub fn init(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let default = format!("{level},hyper=warn,hyper_util=warn,reqwest=warn,rustls=warn,h2=warn");
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let terminal = std::io::stderr().is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match global.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.with_ansi(colour).try_init(),
        LogFormat::Auto => builder.with_ansi(colour).compact().try_init(),
    };
    // A second init (tests calling main twice) keeps the first subscriber.
    let _ = installed;
}
