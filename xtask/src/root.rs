//! Root checks and the tracefs mount the privileged commands need.
use std::path::Path;

use anyhow::{Context as _, bail};

/// Fails with one clear line unless running as root.
pub fn require(what: &str) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "{what} must run as root (it loads eBPF programs): try `sudo -E env PATH=$PATH cargo xtask ...`"
        );
    }
    Ok(())
}

/// Mounts tracefs at /sys/kernel/tracing if it is not there (it is not at boot on our
/// machines; bpftrace needs it).
pub fn mount_tracefs() -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if mounts.lines().any(|line| {
        line.split_ascii_whitespace().nth(1) == Some("/sys/kernel/tracing")
            && line.contains("tracefs")
    }) {
        return Ok(());
    }
    if !Path::new("/sys/kernel/tracing").is_dir() {
        bail!("/sys/kernel/tracing does not exist: this kernel has no tracefs");
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status()
        .context("running mount")?;
    if !status.success() {
        bail!("mounting tracefs at /sys/kernel/tracing failed ({status})");
    }
    eprintln!("xtask: mounted tracefs at /sys/kernel/tracing");
    Ok(())
}
