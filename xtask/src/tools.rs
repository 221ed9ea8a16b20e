//! Installs, idempotently and cached under `target/tools`, what building the eBPF object
//! needs: nightly's `rust-src`, and a bpf-linker built against nightly's own libLLVM (its LLVM
//! major is read from `rustc +nightly -vV`, never hard-coded). Also Debian packages on demand.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// bpf-linker release built from crates.io.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The workspace root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `target/tools`, where installed tools live.
pub fn tools_dir() -> PathBuf {
    workspace_root().join("target/tools")
}

/// PATH with `target/tools/bin` first, so cargo's build script finds bpf-linker.
pub fn path_with_tools() -> OsString {
    let mut path = OsString::from(tools_dir().join("bin"));
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    path
}

/// A `cargo` command run from the workspace root with the tools on PATH.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root())
        .env("PATH", path_with_tools());
    cmd
}

/// Runs `cmd`, failing with its description when it fails.
/// Runs the `tests/` crate's bench `name` (release build) with `args`; it prints its own tables.
pub fn run_test_bench(name: &str, args: &[String], what: &str) -> anyhow::Result<()> {
    run_test_bench_with(name, args, what, &[])
}

/// [`run_test_bench`] with environment variables set for the bench.
pub fn run_test_bench_with(
    name: &str,
    args: &[String],
    what: &str,
    envs: &[(&str, &std::path::Path)],
) -> anyhow::Result<()> {
    ensure_ebpf_toolchain()?;
    let mut cmd = cargo();
    cmd.args([
        "bench",
        "--package",
        "memtrace-tests",
        "--bench",
        name,
        "--",
    ])
    .args(args);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    run_checked(&mut cmd, what)
}

pub fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd`; its stdout, or an error with its stderr.
pub fn output_of(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes sure everything the eBPF build needs is installed.
pub fn ensure_ebpf_toolchain() -> anyhow::Result<()> {
    ensure_nightly()?;
    ensure_bpf_linker()
}

fn ensure_nightly() -> anyhow::Result<()> {
    let toolchains = output_of(
        Command::new("rustup").args(["toolchain", "list"]),
        "rustup toolchain list",
    )
    .context("rustup is required (the eBPF crate builds with nightly)")?;
    if !toolchains.lines().any(|line| line.starts_with("nightly")) {
        eprintln!("xtask: installing the nightly toolchain");
        run_checked(
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]),
            "rustup toolchain install nightly",
        )?;
    }
    let sysroot = nightly_sysroot()?;
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        eprintln!("xtask: adding rust-src to nightly");
        run_checked(
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
            "rustup component add rust-src",
        )?;
    }
    Ok(())
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = output_of(
        Command::new("rustc").args(["+nightly", "--print", "sysroot"]),
        "rustc +nightly --print sysroot",
    )?;
    Ok(PathBuf::from(out.trim()))
}

/// LLVM major version of nightly rustc (`LLVM version: 22.1.4` → 22).
pub fn parse_llvm_major(version_verbose: &str) -> Option<u32> {
    version_verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next())
        .and_then(|major| major.parse().ok())
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let verbose = output_of(
        Command::new("rustc").args(["+nightly", "-vV"]),
        "rustc +nightly -vV",
    )?;
    let major = parse_llvm_major(&verbose)
        .context("could not read the LLVM version from `rustc +nightly -vV`")?;
    let sysroot = nightly_sysroot()?;
    let libllvm = std::fs::read_dir(sysroot.join("lib"))
        .context("listing nightly's lib directory")?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .with_context(|| {
            format!(
                "nightly ships no libLLVM.so.*-rust-* in {}",
                sysroot.join("lib").display()
            )
        })?;
    let tools = tools_dir();
    let stamp_path = tools.join("bpf-linker.stamp");
    let stamp = format!(
        "bpf-linker {BPF_LINKER_VERSION} llvm-{major} {}\n",
        libllvm.display()
    );
    let binary = tools.join("bin/bpf-linker");
    if binary.is_file() && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} (once)"
    );
    let prefix = tools.join("llvm");
    std::fs::create_dir_all(prefix.join("lib")).context("creating target/tools/llvm/lib")?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), libllvm.display()))?;
    run_checked(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .arg("--root")
            .arg(&tools)
            .env("LLVM_PREFIX", &prefix),
        "cargo install bpf-linker",
    )
    .context("bpf-linker must match nightly's LLVM; see DEVELOPERS.md")?;
    std::fs::write(&stamp_path, stamp).context("writing the bpf-linker stamp")?;
    Ok(())
}

/// Installs Debian packages that are missing (`apt-get update` first, once per call).
pub fn ensure_apt(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|pkg| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output()
                .is_ok_and(|out| {
                    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
                })
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run_checked(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

#[cfg(test)]
mod tests {
    //! Reading nightly's LLVM major.
    use super::*;

    #[test]
    fn llvm_major() {
        let text = "rustc 1.97.0-nightly\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(text), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0\n"), None);
    }
}
