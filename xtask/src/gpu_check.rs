//! `cargo xtask gpu-check`: builds memtrace, then runs `scripts/gpu-check.sh` on it. The script
//! needs only the binary, bash and python3 with CUDA PyTorch (no network, no cargo), so on a bare
//! GPU machine it runs alone: `sudo bash scripts/gpu-check.sh path/to/memtrace`.
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::{build, root, tools};

/// Options of `cargo xtask gpu-check`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build and check the optimised binary.
    #[arg(long)]
    pub release: bool,
    /// Check this memtrace binary instead of building one.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// GiB the python3 child allocates on the GPU.
    #[arg(long, default_value_t = 2)]
    pub gpu_gib: u32,
    /// GiB of pinned host memory the python3 child allocates.
    #[arg(long, default_value_t = 1)]
    pub pinned_gib: u32,
}

/// Builds (unless `--binary`) and runs the script; fails when a check fails or the machine cannot
/// run it (no GPU, no CUDA PyTorch).
pub fn run(options: &Options) -> anyhow::Result<()> {
    root::require("cargo xtask gpu-check")?;
    let binary = match &options.binary {
        Some(path) => path.clone(),
        None => built_binary(options.release)?,
    };
    let script = tools::workspace_root().join("scripts/gpu-check.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(&binary)
        .env("GPU_GIB", options.gpu_gib.to_string())
        .env("PINNED_GIB", options.pinned_gib.to_string())
        .status()
        .with_context(|| format!("starting bash {}", script.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(2) => bail!("this machine cannot run the GPU check (see above)"),
        _ => bail!("GPU check failed ({status})"),
    }
}

/// Builds memtrace and finds the binary, also under `CARGO_TARGET_DIR` when that is set.
fn built_binary(release: bool) -> anyhow::Result<PathBuf> {
    let default = build::run(&build::Options { release })?;
    if default.is_file() && std::env::var_os("CARGO_TARGET_DIR").is_none() {
        return Ok(default);
    }
    let profile = if release { "release" } else { "debug" };
    let from_env = std::env::var_os("CARGO_TARGET_DIR").map(|dir| {
        tools::workspace_root()
            .join(dir)
            .join(profile)
            .join("memtrace")
    });
    match from_env {
        Some(path) if path.is_file() => Ok(path),
        _ if default.is_file() => Ok(default),
        _ => bail!("built memtrace not found at {}", default.display()),
    }
}
