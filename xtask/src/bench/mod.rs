//! `cargo xtask bench …`: each benchmark measures memtrace against a baseline in the same
//! invocation and prints a table with ratios.

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Tracing overhead on a fault storm and a realistic pipeline: none vs memtrace vs bpftrace.
    Overhead,
}

/// Runs one benchmark.
pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Overhead => anyhow::bail!("bench overhead: not built yet"),
    }
}
