//! `cargo xtask test`: formatting and clippy (host and BPF passes), unit tests (what a plain
//! `cargo test` runs, no root needed), the privileged integration tests of the `tests/` crate
//! against the built binary (serially: they load eBPF and create memory cgroups), an
//! installation staged under `target/` with its systemd unit verified, then the guest run in
//! the Debian guest of `cargo xtask vm` (pure cgroup v2, a real sshd): one memtrace guard run
//! against a runaway hog (sshd must survive), then a foreground job of an ssh login shell held
//! and let go, and `memtrace run` on cgroup v2 (in its transient scope with `--memory-max` and
//! `--memory-high`, with `--no-scope`, and inside a scope with `MemoryMax=`; about 9 minutes
//! with a cold image cache, 5 with a warm one).
use std::process::Command;

use crate::{build, root, tools};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    pub no_lint: bool,
    /// Skip the guest run at the end (`cargo xtask bench ssh` in small).
    #[arg(long)]
    pub no_vm: bool,
    /// Run the guest run alone (no lint, unit or integration tests).
    #[arg(long, conflicts_with_all = ["no_vm", "filter"])]
    pub vm_only: bool,
    /// Only run tests whose name contains this filter (the guest run is skipped).
    pub filter: Option<String>,
}

/// Runs the whole suite.
pub fn run(options: &Options) -> anyhow::Result<()> {
    root::require("cargo xtask test")?;
    tools::ensure_ebpf_toolchain()?;
    root::mount_tracefs()?;
    if options.vm_only {
        return guest_run();
    }
    if !options.no_lint {
        lint()?;
    }
    let filter: Vec<String> = options.filter.iter().cloned().collect();
    tools::run_checked(
        tools::cargo()
            .args([
                "test",
                "--workspace",
                "--exclude",
                "memtrace-ebpf",
                "--exclude",
                "memtrace-tests",
                "--lib",
                "--bins",
            ])
            .arg("--")
            .args(&filter),
        "unit tests",
    )?;
    let binary = build::run(&build::Options { release: false })?;
    // The fleet tests scrape the guard with a real Prometheus and open the HTML report in a
    // real browser; the interactive `top` is driven in tmux.
    tools::ensure_apt(&["prometheus", "chromium", "fonts-liberation", "tmux"])?;
    tools::run_checked(
        tools::cargo()
            .args(["test", "--package", "memtrace-tests"])
            .args(["--", "--test-threads=1"])
            .args(&filter)
            .env("MEMTRACE_BIN", &binary),
        "privileged integration tests",
    )?;
    if options.filter.is_none() {
        crate::install::check()?;
    }
    if options.no_vm || options.filter.is_some() {
        eprintln!(
            "xtask: the guest run (sshd under a runaway hog) was skipped: --no-vm or a filter"
        );
        return Ok(());
    }
    guest_run()
}

fn guest_run() -> anyhow::Result<()> {
    eprintln!(
        "xtask: guest run: memtrace guard vs a runaway hog in the Debian guest (sshd must survive), then a foreground job of an ssh login shell"
    );
    crate::bench::guest_check()
}

fn lint() -> anyhow::Result<()> {
    tools::run_checked(
        tools::cargo().args(["fmt", "--all", "--check"]),
        "cargo fmt --check",
    )?;
    tools::run_checked(
        // The eBPF crate only builds for the BPF target: it gets its own pass below.
        tools::cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "memtrace-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "clippy (host)",
    )?;
    // The BPF pass: the eBPF crate for its real target, with nightly.
    tools::run_checked(
        Command::new("cargo")
            .current_dir(tools::workspace_root().join("memtrace-ebpf"))
            .env("PATH", tools::path_with_tools())
            .args([
                "+nightly",
                "clippy",
                "--release",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(["-Z", "build-std=core", "--", "-D", "warnings"])
            .env(
                "CARGO_TARGET_DIR",
                tools::workspace_root().join("target/bpf-clippy"),
            ),
        "clippy (BPF)",
    )
}
