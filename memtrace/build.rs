//! Builds the eBPF object (memtrace-ebpf, BPF target, nightly + bpf-linker) into OUT_DIR so the
//! binary can embed it. `cargo xtask build` installs the toolchain pieces this needs, bpf-linker
//! under `target/tools/bin`, which is put on PATH here, so a plain `cargo build` or `cargo test`
//! works once they are installed.
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use aya_build::{Package, Toolchain};

/// Puts the workspace's `target/tools/bin` (where `cargo xtask build` installs bpf-linker) on
/// PATH when bpf-linker is not already there; fails with the fix when it is nowhere.
fn find_bpf_linker(workspace: &Path) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file()) {
        return Ok(());
    }
    let tools = workspace.join("target/tools/bin");
    if !tools.join("bpf-linker").is_file() {
        bail!(
            "bpf-linker is not installed: run `cargo xtask build` once (it installs nightly's rust-src and bpf-linker under target/tools)"
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        tools.join("bpf-linker").display()
    );
    let dirs = std::iter::once(tools).chain(std::env::split_paths(&path));
    let joined = std::env::join_paths(dirs).context("PATH with target/tools/bin")?;
    // SAFETY: build scripts run single-threaded; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var("PATH", joined) };
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|package| package.name.as_str() == "memtrace-ebpf")
        .ok_or_else(|| anyhow!("memtrace-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("memtrace-ebpf manifest has no parent directory"))?;
    find_bpf_linker(metadata.workspace_root.as_std_path())?;
    let package = Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
