//! `cargo xtask run [-- ARGS]`: builds the release binary (the guard is a long-running service:
//! it runs optimised, as installed), then runs `memtrace ARGS` as root. The default is the main
//! job, `memtrace guard`, in dry-run mode: it shows what it would do without signalling anything
//! (`cargo xtask run -- guard` arms it). `--debug` runs the unoptimised build instead.
use std::os::unix::process::CommandExt as _;

use anyhow::Context as _;

use crate::{build, root};

/// Options of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build and run the unoptimised debug binary instead of the release one.
    #[arg(long)]
    pub debug: bool,
    /// Arguments for memtrace (default: `guard --dry-run`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Builds and replaces this process with memtrace.
pub fn run(options: &Options) -> anyhow::Result<()> {
    root::require("cargo xtask run")?;
    let binary = build::run(&build::Options {
        release: !options.debug,
    })?;
    root::mount_tracefs()?;
    let args: Vec<String> = if options.args.is_empty() {
        eprintln!(
            "xtask: running `memtrace guard --dry-run` (nothing is signalled); `cargo xtask run -- guard` arms it"
        );
        vec!["guard".to_owned(), "--dry-run".to_owned()]
    } else {
        options.args.clone()
    };
    let err = std::process::Command::new(&binary).args(&args).exec();
    Err(err).with_context(|| format!("running {}", binary.display()))
}
