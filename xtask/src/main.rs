//! memtrace's task runner: `cargo xtask build | run | install | test | bench`. Every command
//! installs what it needs first (idempotently, cached under `target/`), so a fresh machine needs
//! nothing but rustup, cargo and root.
mod bench;
mod build;
mod gpu_check;
mod install;
mod root;
mod run;
mod test;
mod tools;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run, test and benchmark memtrace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the toolchain pieces (nightly rust-src, bpf-linker) and build everything.
    Build(build::Options),
    /// Build the release binary, then run `memtrace ARGS` as root (default: `memtrace guard
    /// --dry-run`).
    Run(run::Options),
    /// Install the release binary, the systemd unit, completions, man pages and the guard's
    /// config under a prefix (default /usr/local).
    Install(install::Options),
    /// Lints (fmt, clippy for host and BPF), unit tests, then the privileged integration tests.
    Test(test::Options),
    /// Benchmarks, printed as tables against a baseline measured in the same invocation.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// On a GPU machine: build, then check with a CUDA allocation that `memtrace top` and
    /// `status` show its GPU and pinned host memory (runs `scripts/gpu-check.sh`).
    GpuCheck(gpu_check::Options),
    /// A Debian bookworm guest (qemu, TCG) with sshd, earlyoom and this memtrace: build, boot.
    #[command(subcommand)]
    Vm(vm::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(options) => build::run(&options).map(|_| ()),
        Command::Run(options) => run::run(&options),
        Command::Install(options) => install::run(&options),
        Command::Test(options) => test::run(&options),
        Command::Bench(bench) => bench::run(bench),
        Command::GpuCheck(options) => gpu_check::run(&options),
        Command::Vm(command) => vm::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
