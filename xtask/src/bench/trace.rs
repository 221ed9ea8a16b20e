//! `cargo xtask bench trace`: the size and speed of one hour of trace (100 processes at 1 Hz):
//! write, read, report and exports, against the same data as JSON lines written and parsed
//! back, in one invocation. Runs the `trace` bench of the `tests/` crate (release build).
use crate::tools;

/// Options of `bench trace`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Rounds per trace (medians and spreads are over these).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// Builds and runs the bench; it prints its own tables.
pub fn run(options: &Options) -> anyhow::Result<()> {
    tools::run_test_bench("trace", &[options.rounds.to_string()], "the trace bench")
}
