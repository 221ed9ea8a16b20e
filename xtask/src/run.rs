//! `cargo xtask run [-- ARGS]`: builds, then runs `memtrace ARGS` as root (default `top`).
use std::os::unix::process::CommandExt as _;

use anyhow::Context as _;

use crate::{build, root};

/// Options of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build and run optimised binaries.
    #[arg(long)]
    pub release: bool,
    /// Arguments for memtrace (default: `top`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Builds and replaces this process with memtrace.
pub fn run(options: &Options) -> anyhow::Result<()> {
    root::require("cargo xtask run")?;
    let binary = build::run(&build::Options {
        release: options.release,
    })?;
    root::mount_tracefs()?;
    let args: Vec<String> = if options.args.is_empty() {
        vec!["top".to_owned()]
    } else {
        options.args.clone()
    };
    let err = std::process::Command::new(&binary).args(&args).exec();
    Err(err).with_context(|| format!("running {}", binary.display()))
}
