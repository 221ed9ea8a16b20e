//! Active swap as the kernel lists it in /proc/swaps, and how a swap file path is spelled there
//! (absolute, canonical directory, `\040` for spaces).
use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::file::{SwapError, io_err};

/// One line of /proc/swaps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwapDevice {
    /// The file or device.
    pub path: String,
    /// `file` or `partition`.
    pub kind: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Used, in bytes.
    pub used_bytes: u64,
    /// Priority (higher is used first).
    pub priority: i64,
}

/// Parses /proc/swaps (header line, then `path type size_kib used_kib priority`; the kernel
/// writes spaces in paths as `\040`).
pub fn parse_swaps(text: &str) -> Vec<SwapDevice> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let path = unescape_octal(fields.next()?);
            let kind = fields.next()?.to_owned();
            let size: u64 = fields.next()?.parse().ok()?;
            let used: u64 = fields.next()?.parse().ok()?;
            let priority = fields.next()?.parse().ok()?;
            Some(SwapDevice {
                path,
                kind,
                size_bytes: size.saturating_mul(1024),
                used_bytes: used.saturating_mul(1024),
                priority,
            })
        })
        .collect()
}

/// Undoes the kernel's (and fstab's) `\NNN` octal escapes.
pub fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `PROC/swaps`.
pub fn read_swaps(proc_root: &Path) -> Result<Vec<SwapDevice>, SwapError> {
    let path = proc_root.join("swaps");
    let text = fs::read_to_string(&path).map_err(io_err(format!("reading {}", path.display())))?;
    Ok(parse_swaps(&text))
}

/// Makes `path` absolute with a canonical parent directory, the form /proc/swaps shows, so the
/// same file is recognised however it was spelled. The file itself need not exist.
pub fn resolve(path: &Path) -> Result<PathBuf, SwapError> {
    let name = path
        .file_name()
        .ok_or_else(|| SwapError::NotSwapFile(path.display().to_string()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = fs::canonicalize(&parent).map_err(io_err(format!(
        "directory {} for the swap file",
        parent.display()
    )))?;
    Ok(parent.join(name))
}

/// Whether `path` (resolved) is active swap.
pub fn is_active(devices: &[SwapDevice], path: &Path) -> bool {
    devices.iter().any(|d| Path::new(&d.path) == path)
}

#[cfg(test)]
mod tests {
    //! /proc/swaps parsing and escapes.
    use super::*;

    #[test]
    fn parses_proc_swaps() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /swapfile                               file\t\t16777212\t1024\t\t-2\n\
                    /var/my\\040swap                        file\t\t65532\t\t0\t\t5\n\
                    /dev/zram0                              partition\t8388604\t\t0\t\t100\n";
        let devices = parse_swaps(text);
        assert_eq!(devices.len(), 3);
        assert_eq!(devices[0].path, "/swapfile");
        assert_eq!(devices[0].size_bytes, 16_777_212 * 1024);
        assert_eq!(devices[0].used_bytes, 1024 * 1024);
        assert_eq!(devices[0].priority, -2);
        assert_eq!(devices[1].path, "/var/my swap");
        assert_eq!(devices[2].kind, "partition");
        assert!(is_active(&devices, Path::new("/var/my swap")));
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
        assert_eq!(unescape_octal("a\\134b\\04"), "a\\b\\04");
    }
}
