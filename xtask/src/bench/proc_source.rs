//! `cargo xtask bench proc-source`: what memtrace costs without eBPF — the /proc source
//! sampling idle processes at a short interval, its CPU time against a loop sampling nothing, in
//! one invocation. Runs the `proc_source` bench of the `tests/` crate (release build).
use crate::tools;

/// Options of `bench proc-source`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Idle processes to follow.
    #[arg(long, default_value_t = 200)]
    pub processes: usize,
    /// Sampling interval, ms.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Length of each run, seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Interleaved rounds (medians are over these).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// Builds and runs the bench; it prints its own table.
pub fn run(options: &Options) -> anyhow::Result<()> {
    tools::run_test_bench(
        "proc_source",
        &[
            options.processes.to_string(),
            options.interval_ms.to_string(),
            options.seconds.to_string(),
            options.rounds.to_string(),
        ],
        "the proc-source bench",
    )
}
