//! The `memtrace` binary: parses the command line and runs one subcommand. Errors end as one
//! line on stderr and a non-zero exit status.
use std::process::ExitCode;

use clap::Parser as _;
use memtrace::cli::{Cli, Command};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Top(args) => memtrace::top::run(args),
        Command::Status(args) => memtrace::status::run(args),
        Command::Swap(args) => memtrace::basics::swap::run(args),
        Command::Doctor(args) => memtrace::basics::doctor::run(args),
        Command::Clean(args) => memtrace::basics::clean::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("memtrace: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
