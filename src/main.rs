//! The `sirocco` binary: parse the command line, run the command, turn errors into a message
//! and an exit status.

// All unsafe code lives in the drivers crate (see its SAFETY notes).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sirocco::cli::Command;
use sirocco::commands;
use sirocco::config::{self, CliError};

fn main() -> ExitCode {
    // As `Cli::parse`, but `serve --config FILE` reads the file first (src/config.rs).
    let cli = match config::parse_cli_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(CliError::Clap(error)) => error.exit(),
        Err(error @ CliError::Config(_)) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(*args).map(|()| true),
        Command::Demo(args) => commands::demo::run(args),
        Command::Lab(args) => commands::lab::run(args).map(|()| true),
        Command::CheckConfig { file } => commands::check_config::run(&file),
        // Its own exit statuses: 2 means the interface does not exist.
        Command::Doctor(args) => return ExitCode::from(commands::doctor::run(&args)),
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
