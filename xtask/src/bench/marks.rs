//! `cargo xtask bench marks`: what exact stdout marks cost — ns added per write(2) of the
//! traced tree, per write of an untraced process and per other syscall, the pipe-write programs
//! against the tracer without them, interleaved rounds in one invocation. Runs the `marks`
//! bench of the `tests/` crate (release build).
use crate::tools;

/// Options of `bench marks`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Writes (and getppid calls) per set-up and round.
    #[arg(long, default_value_t = 200_000)]
    pub writes: usize,
    /// Interleaved rounds (medians are over these).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// Builds and runs the bench; it prints its own table.
pub fn run(options: &Options) -> anyhow::Result<()> {
    tools::run_test_bench(
        "marks",
        &[options.writes.to_string(), options.rounds.to_string()],
        "the marks bench",
    )
}
