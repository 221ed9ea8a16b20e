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
    /// Live per-process memory table sorted by growth (needs root: loads eBPF).
    Top(crate::top::TopArgs),
    /// Memory status: RAM, swap, PSI and the top processes by RSS (no root needed).
    Status(crate::status::StatusArgs),
    /// Swap: status against the recommendation for this RAM, setup and removal of a swap file.
    Swap(crate::basics::swap::SwapArgs),
    /// Host checks (swap, sysctls, THP, PSI, BTF, tracepoints, NVML, sshd, guard) with fixes.
    Doctor(crate::basics::doctor::DoctorArgs),
    /// Free memory: drop the page cache, delete old temp files; reports what each step freed.
    Clean(crate::basics::clean::CleanArgs),
}
