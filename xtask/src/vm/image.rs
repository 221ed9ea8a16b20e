//! Builds, once, the guest image cached under `target/vm/`:
//! - `qemu/`: Debian bookworm's qemu-system-x86 and the libraries it needs, unpacked from their
//!   .debs (`apt-get download` + `dpkg-deb -x`), never installed: bookworm's qemu-system-x86
//!   conflicts with the backported qemu-utils of our machines;
//! - `rootfs/`: `debootstrap --variant=minbase` of bookworm with systemd, udev, openssh-server,
//!   libpam-systemd (ssh sessions get their own scopes), earlyoom (disabled; a contender of
//!   `bench ssh`), python3-minimal, procps, iproute2 and Debian's kernel + initramfs, configured
//!   here (static networking for qemu's user net, the per-boot ssh key read from the kernel
//!   command line, `memtrace-guard.service` installed but not enabled);
//! - with `--kernel backports`, bookworm-backports' kernel installed next to 6.1 (to check
//!   memtrace on a newer kernel; the benchmark's default is Debian's own 6.1);
//! - `vmlinuz-*`, `initrd.img-*`: copied out of the rootfs for a direct kernel boot;
//! - `rootfs.img`: an ext4 image made from `rootfs/` with `mkfs.ext4 -d` (no loop mounts), with
//!   the memtrace built here in `/usr/local/bin`; remade when that binary is newer.
//!
//! Each step leaves a stamp or an atomically renamed result, so a second run reuses all of it.
use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{build, tools};

/// Which Debian kernel the guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernel {
    /// bookworm's own 6.1.
    Stable,
    /// bookworm-backports' (6.12 at the time of writing), installed next to 6.1 on demand.
    Backports,
}

/// Everything a boot needs.
#[derive(Debug, Clone)]
pub struct Image {
    /// The qemu-system-x86_64 binary.
    pub qemu: PathBuf,
    /// `LD_LIBRARY_PATH` for it.
    pub lib_path: OsString,
    /// Firmware directories (`-L`).
    pub firmware: Vec<PathBuf>,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The guest initramfs.
    pub initrd: PathBuf,
    /// The raw ext4 root filesystem (read-only base of each boot's overlay).
    pub rootfs: PathBuf,
}

/// The packages debootstrap adds to minbase.
const PACKAGES: &str = "systemd-sysv,udev,openssh-server,libpam-systemd,dbus,earlyoom,\
python3-minimal,procps,iproute2,kmod,initramfs-tools,linux-image-amd64";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Size of the root filesystem image.
const ROOTFS_SIZE: &str = "3G";

/// `target/vm`.
pub fn vm_dir() -> PathBuf {
    tools::workspace_root().join("target/vm")
}

/// Builds what is missing and returns the image.
pub fn build(kernel: Kernel) -> anyhow::Result<Image> {
    // qemu-img makes each boot's overlay; any version reads our raw image.
    tools::ensure_apt(&["debootstrap", "e2fsprogs", "openssh-client", "qemu-utils"])?;
    let dir = vm_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let qemu_root = ensure_qemu(&dir)?;
    let rootfs = ensure_rootfs(&dir)?;
    if kernel == Kernel::Backports {
        ensure_backports_kernel(&rootfs)?;
    }
    let (kernel, initrd) = copy_kernel(&dir, &rootfs, kernel)?;
    let memtrace = build::run(&build::Options { release: true })?;
    let image = ensure_rootfs_image(&dir, &rootfs, &memtrace)?;
    let lib = |p: &str| qemu_root.join(p).into_os_string();
    let mut lib_path = lib("usr/lib/x86_64-linux-gnu");
    lib_path.push(":");
    lib_path.push(lib("lib/x86_64-linux-gnu"));
    Ok(Image {
        qemu: qemu_root.join("usr/bin/qemu-system-x86_64"),
        lib_path,
        firmware: vec![
            qemu_root.join("usr/share/qemu"),
            qemu_root.join("usr/share/seabios"),
        ],
        kernel,
        initrd,
        rootfs: image,
    })
}

/// Downloads and unpacks qemu-system-x86 with the packages it depends on that a simulated
/// install would add, into `target/vm/qemu/root`.
fn ensure_qemu(dir: &Path) -> anyhow::Result<PathBuf> {
    let qemu = dir.join("qemu");
    let root = qemu.join("root");
    if root.join("usr/bin/qemu-system-x86_64").is_file() {
        return Ok(root);
    }
    eprintln!(
        "xtask: fetching and unpacking bookworm's qemu-system-x86 into target/vm/qemu (once)"
    );
    tools::run_checked(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    let sim = tools::output_of(
        Command::new("apt-get").args([
            "-s",
            "install",
            "--no-install-recommends",
            "qemu-system-x86",
        ]),
        "apt-get -s install qemu-system-x86",
    )?;
    let packages: Vec<&str> = sim
        .lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    if !packages.contains(&"qemu-system-x86") {
        bail!("apt-get would not install qemu-system-x86 (already installed?): {sim}");
    }
    let debs = qemu.join("debs");
    let _ = fs::remove_dir_all(&qemu);
    fs::create_dir_all(&debs).context("creating target/vm/qemu/debs")?;
    tools::run_checked(
        Command::new("apt-get")
            .arg("download")
            .args(&packages)
            .current_dir(&debs),
        "apt-get download (qemu)",
    )?;
    let partial = qemu.join("root.partial");
    for entry in fs::read_dir(&debs).context("listing the qemu .debs")? {
        let deb = entry.context("listing the qemu .debs")?.path();
        tools::run_checked(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial),
            "dpkg-deb -x",
        )?;
    }
    fs::rename(&partial, &root).context("renaming the unpacked qemu")?;
    Ok(root)
}

/// Debootstraps and configures `target/vm/rootfs` (stamp: `rootfs/.memtrace-configured`).
fn ensure_rootfs(dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let stamp = rootfs.join(".memtrace-configured");
    if stamp.is_file() {
        return Ok(rootfs);
    }
    let partial = dir.join("rootfs.partial");
    // debootstrap removes its `debootstrap/` work directory only when it succeeded.
    if !partial.join("usr/sbin/sshd").exists() || partial.join("debootstrap").exists() {
        eprintln!("xtask: debootstrapping the bookworm guest into target/vm (once, ~3 min)");
        let _ = fs::remove_dir_all(&partial);
        tools::run_checked(
            Command::new("debootstrap")
                .args(["--variant=minbase", &format!("--include={PACKAGES}")])
                .args(["bookworm"])
                .arg(&partial)
                .arg(MIRROR),
            "debootstrap",
        )?;
    }
    super::image_config::configure(&partial)?;
    let _ = fs::remove_dir_all(&rootfs);
    fs::rename(&partial, &rootfs).context("renaming the configured rootfs")?;
    fs::write(&stamp, "configured\n").context("writing the rootfs stamp")?;
    Ok(rootfs)
}

/// Installs bookworm-backports' kernel into the rootfs (stamp: `rootfs/.memtrace-backports`).
fn ensure_backports_kernel(rootfs: &Path) -> anyhow::Result<()> {
    let stamp = rootfs.join(".memtrace-backports");
    if stamp.is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing bookworm-backports' kernel into the guest rootfs (once)");
    fs::write(
        rootfs.join("etc/apt/sources.list.d/backports.list"),
        format!("deb {MIRROR} bookworm-backports main\n"),
    )
    .context("writing the guest's backports source")?;
    let chroot = |args: &[&str], what: &str| {
        tools::run_checked(
            Command::new("chroot")
                .arg(rootfs)
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            what,
        )
    };
    chroot(&["apt-get", "update", "-qq"], "apt-get update (guest)")?;
    chroot(
        &[
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
            "linux-image-amd64",
        ],
        "apt-get install linux-image-amd64/bookworm-backports (guest)",
    )?;
    chroot(&["apt-get", "clean"], "apt-get clean (guest)")?;
    fs::write(&stamp, "installed\n").context("writing the backports stamp")?;
    // The image must be remade with the new kernel's modules.
    fs::write(rootfs.join(".memtrace-configured"), "configured\n")
        .context("touching the rootfs stamp")
}

/// Copies the chosen kernel (6.1 for stable, the newest other for backports) and its
/// initramfs out of the rootfs.
fn copy_kernel(dir: &Path, rootfs: &Path, which: Kernel) -> anyhow::Result<(PathBuf, PathBuf)> {
    let boot = rootfs.join("boot");
    let mut kernels: Vec<String> = fs::read_dir(&boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("vmlinuz-"))
        .filter(|n| n.starts_with("vmlinuz-6.1.0-") == (which == Kernel::Stable))
        .collect();
    kernels.sort();
    let name = kernels
        .last()
        .context("the guest rootfs has no /boot/vmlinuz-*")?;
    let version = name.trim_start_matches("vmlinuz-");
    let suffix = if which == Kernel::Stable {
        "stable"
    } else {
        "backports"
    };
    let kernel = dir.join(format!("vmlinuz-{suffix}"));
    let initrd = dir.join(format!("initrd.img-{suffix}"));
    fs::copy(boot.join(name), &kernel).context("copying the guest kernel")?;
    fs::copy(boot.join(format!("initrd.img-{version}")), &initrd)
        .context("copying the guest initramfs")?;
    Ok((kernel, initrd))
}

fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Makes `rootfs.img` with memtrace inside unless it is newer than both.
fn ensure_rootfs_image(dir: &Path, rootfs: &Path, memtrace: &Path) -> anyhow::Result<PathBuf> {
    let image = dir.join("rootfs.img");
    let stamp = rootfs.join(".memtrace-configured");
    if let (Some(img), Some(bin), Some(conf)) = (mtime(&image), mtime(memtrace), mtime(&stamp))
        && img > bin
        && img > conf
    {
        return Ok(image);
    }
    eprintln!(
        "xtask: writing target/vm/rootfs.img with {}",
        memtrace.display()
    );
    let dest = rootfs.join("usr/local/bin/memtrace");
    fs::copy(memtrace, &dest).context("copying memtrace into the guest rootfs")?;
    let partial = dir.join("rootfs.img.partial");
    let _ = fs::remove_file(&partial);
    tools::run_checked(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "memtrace-vm", "-d"])
            .arg(rootfs)
            .arg(&partial)
            .arg(ROOTFS_SIZE),
        "mkfs.ext4 -d",
    )?;
    fs::rename(&partial, &image).context("renaming rootfs.img")?;
    Ok(image)
}
