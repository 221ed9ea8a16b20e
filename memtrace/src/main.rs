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
        Command::Top(args) => memtrace::cmd::top::run(args),
        Command::Completions { shell } => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&memtrace::cli::completions(shell))
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Command::Guard(args) => memtrace::guard::run(args),
        Command::Status(args) => memtrace::cmd::status::run(args),
        Command::Swap(args) => memtrace::cmd::swap::run(args),
        Command::Doctor(args) => memtrace::cmd::doctor::run(args),
        Command::Clean(args) => memtrace::cmd::clean::run(args),
        Command::Run(args) => memtrace::guard::run_hook::config_from_run_file(
            args.config.as_deref(),
        )
        .and_then(|config| {
            let guard = memtrace::guard::run_hook::GuardHook::new(config)?;
            memtrace::cmd::run::run_with_hooks(args, vec![Box::new(guard)])
        }),
        Command::Record(args) => memtrace::cmd::run::record(args),
        Command::Mark(args) => memtrace::record::marks::run(args),
        Command::Report(args) => memtrace::analyze::report::run(args),
        Command::Export(args) => memtrace::analyze::export::run(args),
        Command::Demo(args) => memtrace::cmd::demo::run(args),
        Command::DemoPipeline(args) => memtrace::cmd::demo_pipeline::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes, skipping causes already spelled out.
            let mut line = err.to_string();
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
            }
            eprintln!("memtrace: error: {}", line.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
