//! The `sirocco` binary: parse the command line, run the command, turn errors into a message
//! and an exit status.

use std::process::ExitCode;

use clap::Parser;
use sirocco::cli::{Cli, Command};
use sirocco::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(*args).map(|()| true),
        Command::Demo(args) => commands::demo::run(args),
        Command::Lab(args) => commands::lab::run(args).map(|()| true),
        Command::Completions { shell } => {
            commands::docs::print(&commands::docs::completions(shell))
        }
        Command::Man { command } => {
            commands::docs::man(&command).and_then(|page| commands::docs::print(&page))
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
