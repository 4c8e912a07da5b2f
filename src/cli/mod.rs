//! The binary's edge: clap commands, composition of the stages, and the
//! mapping of outcomes to the documented exit codes. `anyhow` lives here
//! and nowhere else.

mod args;
mod commands;
mod completions;
mod demo;
mod env_file;
mod execute;
mod exit;
mod history;
mod init;
mod logging;
mod metrics;
mod preview;
mod progress;
mod project;
mod signals;
mod status;

pub use args::{CLI_ENV, Cli, Command, LogFormat};
pub use exit::Exit;

use clap::Parser as _;

/// Parse the command line, run, and return the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before any thread exists: setting environment variables is only sound then.
    if let Some(path) = &cli.global.env_file
        && let Err(err) = env_file::load(path)
    {
        eprintln!("error: {err:#}");
        return Exit::Usage.into();
    }
    logging::init(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return Exit::Failed.into();
        }
    };
    let exit = runtime.block_on(commands::dispatch(cli));
    // Do not wait for stray blocking tasks (a hung secret command) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    exit.into()
}
