//! `cargo xtask build`: installs the eBPF toolchain pieces, then builds the workspace (the
//! eBPF object is built and embedded by `memtrace/build.rs`).
use std::path::PathBuf;

use crate::tools;

/// Options of `cargo xtask build`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build optimised binaries.
    #[arg(long)]
    pub release: bool,
}

/// Builds everything and returns the path of the `memtrace` binary.
pub fn run(options: &Options) -> anyhow::Result<PathBuf> {
    tools::ensure_ebpf_toolchain()?;
    let mut cmd = tools::cargo();
    cmd.args(["build", "--package", "memtrace", "--bin", "memtrace"]);
    if options.release {
        cmd.arg("--release");
    }
    tools::run_checked(&mut cmd, "cargo build")?;
    let profile = if options.release { "release" } else { "debug" };
    Ok(tools::workspace_root()
        .join("target")
        .join(profile)
        .join("memtrace"))
}
