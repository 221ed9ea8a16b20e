//! Configures the debootstrapped guest rootfs: fstab, static networking for qemu's user net
//! (guest 10.0.2.15), a oneshot unit that installs the per-boot ssh key passed on the kernel
//! command line (`memtrace.key=BASE64`), sshd accepting root with a key, earlyoom disabled (it is
//! a contender, started on demand), `memtrace-guard.service` installed but not enabled, `hog`
//! and `bystander` names for python3 (so logs name them), and no timers that would wake up
//! during a measurement.
use std::{fs, path::Path, process::Command};

use anyhow::Context as _;

use crate::tools;

const FILES: &[(&str, &str)] = &[
    ("etc/hostname", "memtrace-vm\n"),
    ("etc/hosts", "127.0.0.1 localhost\n127.0.1.1 memtrace-vm\n"),
    ("etc/fstab", "/dev/vda / ext4 rw,relatime 0 1\n"),
    (
        "etc/systemd/network/10-qemu.network",
        "[Match]\nName=en* eth*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n",
    ),
    (
        "usr/local/sbin/memtrace-vm-key",
        "#!/bin/sh\n# Installs the per-boot public key given as memtrace.key=BASE64 on the kernel command line.\nset -e\nmkdir -p -m 700 /root/.ssh\nfor word in $(cat /proc/cmdline); do\n  case \"$word\" in\n    memtrace.key=*) echo \"ssh-ed25519 ${word#memtrace.key=} xtask\" > /root/.ssh/authorized_keys ;;\n  esac\ndone\nchmod 600 /root/.ssh/authorized_keys\n",
    ),
    (
        "etc/systemd/system/memtrace-vm-key.service",
        "[Unit]\nDescription=Install the per-boot ssh key from the kernel command line\nBefore=ssh.service\n\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/memtrace-vm-key\n\n[Install]\nWantedBy=multi-user.target\n",
    ),
    (
        "etc/ssh/sshd_config.d/memtrace-vm.conf",
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n# bench ssh starts a probe every 2 s whatever the earlier ones do.\nMaxStartups 200\n",
    ),
    (
        "etc/systemd/system/memtrace-guard.service",
        "[Unit]\nDescription=memtrace guard (defaults, whole machine)\nAfter=local-fs.target\n\n[Service]\nType=simple\nExecStart=/usr/local/bin/memtrace guard\nRestart=always\nRestartSec=1\nOOMScoreAdjust=-1000\nMemoryMin=32M\nNice=-10\nRuntimeDirectory=memtrace\nRuntimeDirectoryPreserve=yes\nUser=root\n",
    ),
    (
        "etc/systemd/journald.conf.d/memtrace-vm.conf",
        "[Journal]\nStorage=volatile\nRateLimitBurst=0\n",
    ),
];

/// Units masked so nothing periodic runs during a measurement.
const MASKED: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-tmpfiles-clean.timer",
    "systemd-networkd-wait-online.service",
];

fn chroot(rootfs: &Path, args: &[&str], what: &str) -> anyhow::Result<()> {
    tools::run_checked(Command::new("chroot").arg(rootfs).args(args), what)
}

/// Writes the configuration into `rootfs` (idempotent).
pub fn configure(rootfs: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: configuring the guest rootfs");
    for (path, text) in FILES {
        let dest = rootfs.join(path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
    }
    chroot(
        rootfs,
        &["chmod", "755", "/usr/local/sbin/memtrace-vm-key"],
        "chmod",
    )?;
    for name in ["hog", "bystander", "load"] {
        let link = rootfs.join("usr/local/bin").join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/usr/bin/python3", &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    chroot(
        rootfs,
        &[
            "systemctl",
            "enable",
            "systemd-networkd",
            "memtrace-vm-key",
            "ssh",
        ],
        "systemctl enable (guest)",
    )?;
    chroot(
        rootfs,
        &["systemctl", "disable", "earlyoom"],
        "systemctl disable earlyoom",
    )?;
    let mut mask = vec!["systemctl", "mask"];
    mask.extend_from_slice(MASKED);
    chroot(rootfs, &mask, "systemctl mask (guest)")?;
    // An empty machine-id is filled at first boot of each overlay.
    fs::write(rootfs.join("etc/machine-id"), "").context("clearing /etc/machine-id")?;
    Ok(())
}
