//! Builds the eBPF object (memtrace-ebpf, BPF target, nightly + bpf-linker) into OUT_DIR so the
//! binary can embed it. `cargo xtask build` installs the toolchain pieces this needs.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

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
    let package = Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
