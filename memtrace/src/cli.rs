//! Raw command-line arguments (clap). Each subcommand's raw args are turned into a validated
//! config by its own module before anything runs.
use clap::{Parser, Subcommand};

/// Low-overhead eBPF memory tracer and pressure responder for Linux GPU hosts.
#[derive(Debug, Parser)]
#[command(name = "memtrace", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Act on memory pressure: warn, reclaim, suspend/resume, kill the growing tree (root).
    Guard(crate::guard::GuardArgs),
    /// Live per-process memory table sorted by growth (needs root: loads eBPF).
    Top(crate::cmd::top::TopArgs),
    /// Memory status: RAM, swap, PSI and the top processes by RSS (no root needed).
    Status(crate::cmd::status::StatusArgs),
    /// Swap: status against the recommendation for this RAM, setup and removal of a swap file.
    Swap(crate::cmd::swap::SwapArgs),
    /// Host checks (swap, sysctls, THP, PSI, BTF, tracepoints, NVML, sshd, guard) with fixes.
    Doctor(crate::cmd::doctor::DoctorArgs),
    /// Free memory: drop the page cache, delete old temp files; reports what each step freed.
    Clean(crate::cmd::clean::CleanArgs),
    /// Run a pipeline under tracing: swap check, memory-friendly env, stage marks, `[Memory]`
    /// lines, a trace file, the child's exit code (needs root: loads eBPF).
    Run(crate::cmd::run::RunArgs),
    /// Record a trace of a command, a running process tree (--pid) or every process.
    Record(crate::cmd::run::RecordArgs),
    /// Mark a stage of the pipeline running under `memtrace run` (STAGE [--clip ID] or --end).
    Mark(crate::record::marks::MarkArgs),
    /// Which stage leaks, how much per clip, host or GPU: the report of a trace.
    Report(crate::analyze::report::ReportArgs),
    /// Export a trace for Perfetto (ui.perfetto.dev), as CSV or as JSON lines.
    Export(crate::analyze::export::ExportArgs),
    /// A synthetic multi-stage clip pipeline with one leaking stage, run and reported.
    Demo(crate::cmd::demo::DemoArgs),
    /// The pipeline `memtrace demo` runs.
    #[command(hide = true)]
    DemoPipeline(crate::cmd::demo_pipeline::DemoPipelineArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Shell completions for `shell`, generated from the command-line definition.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "memtrace", &mut out);
    out
}

#[cfg(test)]
mod tests {
    //! The completions shipped in dist/ match the command line.
    use super::*;

    #[test]
    fn shipped_completions_are_current() {
        for (shell, shipped) in [
            (
                clap_complete::Shell::Bash,
                include_str!("../../dist/completions/memtrace.bash"),
            ),
            (
                clap_complete::Shell::Zsh,
                include_str!("../../dist/completions/memtrace.zsh"),
            ),
            (
                clap_complete::Shell::Fish,
                include_str!("../../dist/completions/memtrace.fish"),
            ),
        ] {
            assert!(
                completions(shell) == shipped.as_bytes(),
                "dist/completions for {shell} are stale: run `memtrace completions {shell} > dist/completions/memtrace.{shell}`"
            );
        }
    }
}
