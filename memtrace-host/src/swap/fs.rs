//! Can this directory hold a swap file? The filesystem (statfs `f_type`: not tmpfs, overlayfs,
//! network or read-only filesystems) and the free space (size plus a margin, statvfs).
use std::{io, path::Path};

use super::file::{SwapError, c_path, io_err};
use crate::units::human_bytes;

/// Free space a swap file must leave on its filesystem: the larger of this and
/// [`MARGIN_PERCENT`] of the filesystem.
pub const MARGIN_MIN_BYTES: u64 = 512 << 20;
/// See [`MARGIN_MIN_BYTES`].
pub const MARGIN_PERCENT: u64 = 5;

/// A filesystem as statfs names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsKind {
    /// statfs `f_type`.
    pub magic: u32,
    /// Its usual name, or `unknown`.
    pub name: &'static str,
}

/// Magic numbers (statfs `f_type`) → name, and for filesystems swap files cannot live on, why.
const FILESYSTEMS: &[(u32, &str, Option<&str>)] = &[
    (0xEF53, "ext4", None),
    (0x5846_5342, "xfs", None),
    (0x9123_683E, "btrfs", None),
    (0xF2F5_2010, "f2fs", None),
    (0x0102_1994, "tmpfs", Some("it lives in RAM itself")),
    (0x8584_58F6, "ramfs", Some("it lives in RAM itself")),
    (
        0x794C_7630,
        "overlayfs",
        Some("the kernel cannot map its blocks"),
    ),
    (0x7371_7368, "squashfs", Some("it is read-only")),
    (0x2FC1_2FC1, "zfs", Some("ZFS does not support swap files")),
    (0x6969, "nfs", Some("network filesystem")),
    (0xFF53_4D42, "cifs", Some("network filesystem")),
    (
        0x6573_5546,
        "fuse",
        Some("the kernel cannot map its blocks"),
    ),
    (0x9FA0, "proc", Some("not a disk filesystem")),
    (0x6265_6572, "sysfs", Some("not a disk filesystem")),
];

/// Identifies the filesystem holding `dir`.
pub fn filesystem_of(dir: &Path) -> Result<FsKind, SwapError> {
    let c_path = c_path(dir)?;
    let buf = rustix::fs::statfs(c_path.as_c_str())
        .map_err(|errno| io_err(format!("statfs {}", dir.display()))(io::Error::from(errno)))?;
    // f_type's width differs between architectures; the magic numbers are 32-bit.
    let magic = buf.f_type as u32;
    let name = FILESYSTEMS
        .iter()
        .find(|(m, _, _)| *m == magic)
        .map_or("unknown", |(_, name, _)| name);
    Ok(FsKind { magic, name })
}

/// Refuses filesystems swap files cannot live on; unknown ones are let through (swapon has the
/// last word and a failed setup cleans up after itself).
pub fn check_filesystem(dir: &Path, kind: FsKind) -> Result<(), SwapError> {
    match FILESYSTEMS.iter().find(|(m, _, _)| *m == kind.magic) {
        Some((_, fs, Some(why))) => Err(SwapError::UnsupportedFs {
            path: dir.display().to_string(),
            fs,
            why,
        }),
        _ => Ok(()),
    }
}

/// The free space a swap file must leave on a filesystem of `total_bytes`.
pub fn margin_for(total_bytes: u64) -> u64 {
    (total_bytes / 100 * MARGIN_PERCENT).max(MARGIN_MIN_BYTES)
}

/// Checks that `dir` has room for `size` bytes plus the margin; returns the bytes available.
pub fn check_space(dir: &Path, size: u64) -> Result<u64, SwapError> {
    let c_path = c_path(dir)?;
    let buf = rustix::fs::statvfs(c_path.as_c_str())
        .map_err(|errno| io_err(format!("statvfs {}", dir.display()))(io::Error::from(errno)))?;
    let block = buf.f_frsize;
    let available = buf.f_bavail.saturating_mul(block);
    let margin = margin_for(buf.f_blocks.saturating_mul(block));
    if available < size.saturating_add(margin) {
        return Err(SwapError::NotEnoughDisk {
            path: dir.display().to_string(),
            available: human_bytes(available),
            needed: human_bytes(size),
            margin: human_bytes(margin),
        });
    }
    Ok(available)
}

#[cfg(test)]
mod tests {
    //! Filesystem refusals and margins.
    use super::*;

    #[test]
    fn refuses_ram_and_overlay_filesystems() {
        let tmpfs = FsKind {
            magic: 0x0102_1994,
            name: "tmpfs",
        };
        let err = check_filesystem(Path::new("/x"), tmpfs)
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("tmpfs"));
        assert!(
            check_filesystem(
                Path::new("/x"),
                FsKind {
                    magic: 0x794C_7630,
                    name: ""
                }
            )
            .is_err()
        );
        assert!(
            check_filesystem(
                Path::new("/x"),
                FsKind {
                    magic: 0xEF53,
                    name: "ext4"
                }
            )
            .is_ok()
        );
        assert!(
            check_filesystem(
                Path::new("/x"),
                FsKind {
                    magic: 1,
                    name: "unknown"
                }
            )
            .is_ok()
        );
        assert_eq!(margin_for(0), MARGIN_MIN_BYTES);
        assert_eq!(margin_for(100 << 30), 5 << 30);
    }
}
