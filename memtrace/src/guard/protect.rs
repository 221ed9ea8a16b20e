//! Protecting the way into the box and the guard itself: the listening sshd gets a low
//! `oom_score_adj`; the guard locks its memory (mlockall) and makes itself unkillable by the
//! kernel OOM killer, so it keeps working under the pressure it exists for. Before locking, it
//! lets go of the code pages its start-up mapped (argument parsing, configuration, the loader's
//! set-up), so that what stays resident, and locked, is mostly the code its loop runs.
use std::{fs, os::unix::fs::MetadataExt as _, path::Path};

use rustix::mm::{Advice, MlockAllFlags, madvise, mlockall};

use crate::host::sshd::sshd_listeners;

/// Sets `oom_score_adj` of every sshd listener; returns log lines (`old → new`).
pub fn protect_sshd(proc_root: &Path, value: i32, dry_run: bool) -> Vec<String> {
    if value == 0 {
        return Vec::new();
    }
    let mut log = Vec::new();
    for pid in sshd_listeners(proc_root) {
        let path = proc_root.join(pid.to_string()).join("oom_score_adj");
        let old = fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        if old == value.to_string() {
            continue;
        }
        if dry_run {
            log.push(format!(
                "dry run: would set sshd {pid} oom_score_adj {old} → {value}"
            ));
        } else {
            match fs::write(&path, value.to_string()) {
                Ok(()) => log.push(format!("sshd {pid} oom_score_adj {old} → {value}")),
                Err(err) => log.push(format!("sshd {pid} oom_score_adj: {err}")),
            }
        }
    }
    log
}

/// Locks the guard's memory and exempts it from the OOM killer; returns log lines.
pub fn protect_self(dry_run: bool) -> Vec<String> {
    let mut log = Vec::new();
    match trim_code_pages() {
        Ok(bytes) => log.push(format!(
            "code pages: {} KiB of code mapping let go (the loop faults back what it runs)",
            bytes >> 10
        )),
        Err(err) => log.push(format!("code pages: {err}")),
    }
    if dry_run {
        return log;
    }
    match fs::write("/proc/self/oom_score_adj", "-1000") {
        Ok(()) => log.push("guard oom_score_adj → -1000".to_owned()),
        Err(err) => log.push(format!("guard oom_score_adj: {err}")),
    }
    // Lock only what is or becomes resident (MCL_ONFAULT): the whole binary is not faulted in
    // just to be locked.
    match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT) {
        Ok(()) => log.push("guard memory locked (mlockall, on fault)".to_owned()),
        Err(errno) => log.push(format!("mlockall: {}", std::io::Error::from(errno))),
    }
    log
}

/// An executable, never-written mapping of the guard's own binary, as `/proc/self/maps` lists
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CodeMapping {
    start: usize,
    end: usize,
}

/// A file as `/proc/PID/maps` names it: its device (major, minor) and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    major: u32,
    minor: u32,
    inode: u64,
}

impl FileId {
    /// The file `path` leads to (following links, as `/proc/self/exe`).
    fn of(path: &str) -> std::io::Result<Self> {
        let meta = fs::metadata(path)?;
        Ok(Self {
            major: rustix::fs::major(meta.dev()),
            minor: rustix::fs::minor(meta.dev()),
            inode: meta.ino(),
        })
    }

    /// From a maps line's device (`fd:01`, hexadecimal) and inode fields.
    fn parse(dev: &str, inode: &str) -> Option<Self> {
        let (major, minor) = dev.split_once(':')?;
        Some(Self {
            major: u32::from_str_radix(major, 16).ok()?,
            minor: u32::from_str_radix(minor, 16).ok()?,
            inode: inode.parse().ok()?,
        })
    }
}

/// The `r-xp` mappings of `file` in a `/proc/PID/maps` text. Writable mappings (data, relocated
/// read-only data) hold private copies and are never listed.
fn code_mappings(maps: &str, file: FileId) -> Vec<CodeMapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let _offset = fields.next()?;
            let mapped = FileId::parse(fields.next()?, fields.next()?)?;
            if perms != "r-xp" || mapped != file {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(CodeMapping {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
            })
        })
        .filter(|m| m.end > m.start)
        .collect()
}

/// Lets go of the resident pages of the guard's code: they fault back in from the page cache as
/// the loop runs. Returns the bytes of code mapped.
fn trim_code_pages() -> std::io::Result<usize> {
    let exe = FileId::of("/proc/self/exe")?;
    let maps = fs::read_to_string("/proc/self/maps")?;
    let mut bytes = 0;
    for mapping in code_mappings(&maps, exe) {
        let len = mapping.end - mapping.start;
        let addr = mapping.start as *mut std::ffi::c_void;
        // SAFETY: [addr, addr + len) is a whole mapping of our own executable that
        // /proc/self/maps lists as read-only, private and executable: its pages are never written,
        // so they equal the file's and dropping them (LinuxDontNeed on a private file mapping)
        // only makes the next access fault them back from the page cache. Nothing is unmapped
        // and no writable data is touched.
        unsafe { madvise(addr, len, Advice::LinuxDontNeed)? };
        bytes += len;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    //! Which mappings count as code.
    use super::*;

    #[test]
    fn only_the_binarys_read_only_executable_mappings_are_code() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 4242 /usr/local/bin/memtrace
55d0a0100000-55d0a0600000 r-xp 00100000 fd:01 4242 /usr/local/bin/memtrace
55d0a0600000-55d0a0700000 r--p 00600000 fd:01 4242 /usr/local/bin/memtrace
55d0a0700000-55d0a0710000 rw-p 00700000 fd:01 4242 /usr/local/bin/memtrace
7f0000000000-7f0000100000 r-xp 00028000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r-xp 00028000 08:02 4242 /mnt/other/same-inode.so
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
garbage line
";
        let ours = FileId {
            major: 0xfd,
            minor: 1,
            inode: 4242,
        };
        assert_eq!(
            code_mappings(maps, ours),
            vec![CodeMapping {
                start: 0x55d0_a010_0000,
                end: 0x55d0_a060_0000,
            }],
            "the same inode on another device is another file"
        );
        assert!(code_mappings(maps, FileId { inode: 1, ..ours }).is_empty());
    }

    #[test]
    fn trimming_our_own_code_unmaps_nothing_and_leaves_it_running() {
        let exe = FileId::of("/proc/self/exe").expect("our executable");
        let maps = || fs::read_to_string("/proc/self/maps").expect("maps");
        let before = code_mappings(&maps(), exe);
        assert!(!before.is_empty(), "our code is mapped");
        let bytes = trim_code_pages().expect("trim");
        let after = code_mappings(&maps(), exe);
        // Still running here (the code faulted back in), and every mapping is still there.
        assert_eq!(after, before);
        assert_eq!(bytes, before.iter().map(|m| m.end - m.start).sum::<usize>());
    }
}
