//! `apisync completions SHELL`: a completion script on stdout, generated
//! from the same clap definition the binary parses, so it never drifts.
//! Install it where the shell looks, e.g.
//! `apisync completions bash > ~/.local/share/bash-completion/completions/apisync`.

use std::io::Write as _;

use clap::CommandFactory as _;

use super::Exit;
use super::args::{Cli, CompletionsArgs};

pub fn print(args: &CompletionsArgs) -> Exit {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "apisync", &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Ok(()) => Exit::Ok,
        Err(err) => {
            eprintln!("error: cannot write the completion script: {err}");
            Exit::Failed
        }
    }
}
