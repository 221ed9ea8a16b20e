//! `cargo xtask bench top`: what the interactive `memtrace top` costs at a 1 s refresh with 500
//! idle processes added to the host's — its CPU against the plain table's and `--json`'s, and the
//! bytes it writes to the terminal per refresh; with `--base`, another build measured in the same
//! invocation, interleaved. Builds the release binary and runs the `top` bench of the `tests/`
//! crate in a tmux pane.
use std::path::PathBuf;

use anyhow::Context as _;

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
    /// Rounds; each measures every variant of every binary once.
    #[arg(long, default_value_t = 1)]
    pub rounds: u64,
    /// Another `memtrace` binary (e.g. main's release build) to measure beside this one.
    #[arg(long)]
    pub base: Option<PathBuf>,
}

/// Builds and runs the bench; it prints its own table.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let binary = build::run(&build::Options { release: true })?;
    tools::ensure_apt(&["tmux"])?;
    let base = options
        .base
        .as_ref()
        .map(|path| {
            path.canonicalize()
                .with_context(|| format!("--base {}", path.display()))
        })
        .transpose()?;
    let mut envs = vec![("MEMTRACE_BIN", binary.as_path())];
    if let Some(base) = &base {
        envs.push(("MEMTRACE_BASE_BIN", base.as_path()));
    }
    tools::run_test_bench_with(
        "top",
        &[
            options.processes.to_string(),
            options.seconds.to_string(),
            options.rounds.to_string(),
        ],
        "the top bench",
        &envs,
    )
}
