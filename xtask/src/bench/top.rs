//! `cargo xtask bench top`: what the interactive `memtrace top` costs at a 1 s refresh with 500
//! idle processes added to the host's — its CPU against the plain table's, and the bytes it
//! writes to the terminal per refresh. Builds the release binary and runs the `top` bench of the
//! `tests/` crate in a tmux pane.
use crate::{build, tools};

/// Options of `bench top`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Idle processes to add.
    #[arg(long, default_value_t = 500)]
    pub processes: usize,
    /// Length of each measurement, seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

/// Builds and runs the bench; it prints its own table.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let binary = build::run(&build::Options { release: true })?;
    tools::ensure_apt(&["tmux"])?;
    tools::run_test_bench_with(
        "top",
        &[options.processes.to_string(), options.seconds.to_string()],
        "the top bench",
        &[("MEMTRACE_BIN", &binary)],
    )
}
