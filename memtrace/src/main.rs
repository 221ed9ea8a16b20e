//! The `memtrace` binary: parses the command line and runs one subcommand. Errors end as one
//! line on stderr and a non-zero exit status; a reader that closed stdout (`memtrace … | head`)
//! ends it quietly with [`BROKEN_PIPE_STATUS`].
#![deny(clippy::print_stdout)]

use std::{io::Write as _, process::ExitCode};

use clap::Parser as _;
use memtrace::{
    cli::{Cli, Command},
    output::{self, BROKEN_PIPE_STATUS, StdoutError},
};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Top(args) => memtrace::cmd::top::run(args),
        Command::Completions { shell } => output::print_bytes(&memtrace::cli::completions(shell))
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Command::ManPages { dir } => memtrace::cli::write_man_pages(&dir)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|err| anyhow::anyhow!("writing man pages into {}: {err}", dir.display())),
        Command::Guard(args) => memtrace::guard::run(args),
        Command::Status(args) => memtrace::cmd::status::run(args),
        Command::Swap(args) => memtrace::cmd::swap::run(args),
        Command::Doctor(args) => memtrace::cmd::doctor::run(args),
        Command::Clean(args) => memtrace::cmd::clean::run(args),
        Command::Run(args) => {
            // First of all: executes itself again in a transient systemd scope where it can.
            let outside = memtrace::record::run_scope::enter(args.no_scope);
            memtrace::guard::run_hook::config_from_run_file(args.config.as_deref()).and_then(
                |config| {
                    let scope = args.scope.select(std::path::Path::new("/proc"))?;
                    let guard =
                        memtrace::guard::run_hook::GuardHook::new(config, scope.scope.clone())?;
                    memtrace::cmd::run::run_with_hooks(args, &scope, vec![Box::new(guard)], outside)
                },
            )
        }
        Command::Record(args) => memtrace::cmd::run::record(args),
        Command::Mark(args) => memtrace::record::marks::run(args),
        Command::Report(args) => memtrace::analyze::report::run(args),
        Command::Export(args) => memtrace::analyze::export::run(args),
        Command::Demo(args) => memtrace::cmd::demo::run(args),
        Command::DemoPipeline(args) => memtrace::cmd::demo_pipeline::run(args),
        Command::LoadTracer(args) => {
            memtrace::collect::tracer::helper::serve(&args).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err)
            if err
                .chain()
                .find_map(|e| e.downcast_ref::<StdoutError>())
                .is_some_and(StdoutError::is_broken_pipe) =>
        {
            ExitCode::from(BROKEN_PIPE_STATUS)
        }
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
            // Not eprintln!: a full or closed stderr must not turn the error into a panic.
            let _ = writeln!(
                std::io::stderr(),
                "memtrace: error: {}",
                line.replace('\n', " ")
            );
            ExitCode::FAILURE
        }
    }
}
