//! The temp-file walk behind `memtrace clean --temp`: deletes old files below a root without
//! ever following a symlink or leaving the root. The root is opened component by component from
//! `/` ([`open_root`]) and every directory below it relative to its parent's descriptor, all
//! with `O_NOFOLLOW | O_DIRECTORY`; entries are examined with `fstatat(…,
//! AT_SYMLINK_NOFOLLOW)` and removed with `unlinkat` on the parent's descriptor, so a directory
//! swapped for a symlink mid-walk is refused rather than followed. Other filesystems mounted
//! inside the root are not entered, sockets/FIFOs/devices are left alone, and files any process
//! has open or mapped are kept.
use std::{
    collections::HashSet,
    ffi::{CStr, CString},
    fs, io,
    os::{
        fd::{AsFd as _, BorrowedFd, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    },
    path::Path,
};

use rustix::{
    fs::{AtFlags, Dir, FileType, Mode, Stat},
    io::Errno,
};
use serde::Serialize;

use super::temp_root::{dir_flags, open_root};

/// Deeper directories are skipped (each level holds one open descriptor).
const MAX_DEPTH: usize = 64;
/// Error messages kept per root.
const MAX_ERRORS_KEPT: usize = 5;

/// (device, inode) pairs that some process has open, mapped, or as its cwd/root.
#[derive(Debug, Default)]
pub struct InUse {
    /// The pairs.
    pub files: HashSet<(u64, u64)>,
    /// False when some process could not be inspected (not root).
    pub complete: bool,
}

/// Scans `PROC/*/fd/*`, `PROC/*/{cwd,root}` and `PROC/*/maps`.
pub fn files_in_use(proc_root: &Path) -> InUse {
    let mut in_use = InUse {
        files: HashSet::new(),
        complete: true,
    };
    let pids = crate::procfs::list_pids(proc_root).unwrap_or_default();
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        // stat (not lstat) follows the magic links to the open file itself.
        let mut add = |path: &Path| {
            if let Ok(meta) = fs::metadata(path) {
                in_use.files.insert((meta.dev(), meta.ino()));
            }
        };
        add(&dir.join("cwd"));
        add(&dir.join("root"));
        match fs::read_dir(dir.join("fd")) {
            Ok(entries) => entries.filter_map(Result::ok).for_each(|e| add(&e.path())),
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => in_use.complete = false,
            // The process exited meanwhile.
            Err(_) => {}
        }
        if let Ok(maps) = fs::read_to_string(dir.join("maps")) {
            in_use.files.extend(maps.lines().filter_map(mapped_file));
        }
    }
    in_use
}

/// The (device, inode) of one `maps` line, if it maps a file.
fn mapped_file(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_ascii_whitespace().skip(3);
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    (inode != 0).then(|| (libc::makedev(major, minor), inode))
}

/// What one root's walk did (or would do, in a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RootReport {
    /// Regular files deleted.
    pub files_deleted: u64,
    /// Symlinks deleted (the links, never their targets).
    pub symlinks_deleted: u64,
    /// Directories removed because they were old and ended up empty.
    pub dirs_removed: u64,
    /// Space freed (allocated blocks of files with no other hard link).
    pub bytes_freed: u64,
    /// Entries kept because they are newer than the cutoff.
    pub kept_recent: u64,
    /// Files kept because a process has them open or mapped.
    pub kept_open: u64,
    /// Sockets, FIFOs and devices, never touched.
    pub skipped_special: u64,
    /// Directories on another filesystem (mount points), not entered.
    pub skipped_other_fs: u64,
    /// Entries the permissions did not allow to examine or remove (other users' files when not
    /// root); expected, so not errors.
    pub denied: u64,
    /// Entries that could not be examined or removed for any other reason.
    pub errors: u64,
    /// The first few error messages.
    pub error_messages: Vec<String>,
}

/// How a walk decides.
#[derive(Debug)]
pub struct WalkOptions<'a> {
    /// Entries last modified (or, for files, accessed) before this, in seconds since the epoch,
    /// are old.
    pub cutoff_secs: i64,
    /// Kept whatever their age.
    pub in_use: &'a InUse,
    /// Only count.
    pub dry_run: bool,
}

/// Cleans below `root`, a canonical path (see [`super::check_temp_root`]), opened through
/// [`open_root`]: no component of it may be a symlink. The root itself stays.
pub fn clean_root(root: &Path, options: &WalkOptions<'_>) -> io::Result<RootReport> {
    let dir = open_root(root)?;
    let st = rustix::fs::fstat(&dir)?;
    let mut walk = Walk {
        options,
        root_dev: st.st_dev,
        report: RootReport::default(),
    };
    walk.dir(dir.as_fd(), root, 0);
    Ok(walk.report)
}

struct Walk<'a> {
    options: &'a WalkOptions<'a>,
    root_dev: u64,
    report: RootReport,
}

impl Walk<'_> {
    /// Cleans inside `dir`; returns whether everything in it was (or would be) removed.
    fn dir(&mut self, dir: BorrowedFd<'_>, shown: &Path, depth: usize) -> bool {
        let names = match entries(dir) {
            Ok(names) => names,
            Err(err) => return self.error(shown, &err),
        };
        let mut emptied = true;
        for name in names {
            let path = shown.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
            emptied &= self.entry(dir, &name, &path, depth);
        }
        emptied
    }

    /// Handles one entry; returns whether it was (or would be) removed.
    fn entry(&mut self, dir: BorrowedFd<'_>, name: &CStr, path: &Path, depth: usize) -> bool {
        let st = match lstat_at(dir, name) {
            Ok(st) => st,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return true,
            Err(err) => return self.error(path, &err),
        };
        let r = &mut self.report;
        let cutoff = self.options.cutoff_secs;
        let in_use = self.options.in_use.files.contains(&(st.st_dev, st.st_ino));
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if st.st_dev != self.root_dev {
                    r.skipped_other_fs += 1;
                    return false;
                }
                if depth >= MAX_DEPTH {
                    let err = io::Error::other(format!("deeper than {MAX_DEPTH} levels, skipped"));
                    return self.error(path, &err);
                }
                // The flags refuse to follow a symlink that replaced the directory since
                // fstatat.
                let opened = rustix::fs::openat(dir, name, dir_flags(), Mode::empty())
                    .and_then(|c| rustix::fs::fstat(&c).map(|s| (c, s)))
                    .map_err(io::Error::from);
                let child = match opened {
                    Ok((child, now)) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => child,
                    Ok(_) => {
                        return self.error(path, &io::Error::other("replaced during the walk"));
                    }
                    Err(err) => return self.error(path, &err),
                };
                let emptied = self.dir(child.as_fd(), path, depth + 1);
                drop(child);
                // A directory's own age is its mtime from before the walk (reading it bumps
                // its atime).
                if !emptied || st.st_mtime >= cutoff || in_use {
                    return false;
                }
                if self.options.dry_run {
                    self.report.dirs_removed += 1;
                    return true;
                }
                match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                    Ok(()) => {
                        self.report.dirs_removed += 1;
                        true
                    }
                    // Something appeared meanwhile: keep it.
                    Err(Errno::NOTEMPTY) => false,
                    Err(errno) => self.error(path, &io::Error::from(errno)),
                }
            }
            kind @ (FileType::RegularFile | FileType::Symlink) => {
                if st.st_mtime.max(st.st_atime) >= cutoff {
                    r.kept_recent += 1;
                    return false;
                }
                if in_use {
                    r.kept_open += 1;
                    return false;
                }
                if !self.options.dry_run
                    && let Err(errno) = rustix::fs::unlinkat(dir, name, AtFlags::empty())
                {
                    return self.error(path, &io::Error::from(errno));
                }
                let r = &mut self.report;
                if kind == FileType::Symlink {
                    r.symlinks_deleted += 1;
                } else {
                    r.files_deleted += 1;
                }
                if st.st_nlink <= 1 {
                    r.bytes_freed += u64::try_from(st.st_blocks).unwrap_or(0) * 512;
                }
                true
            }
            _ => {
                r.skipped_special += 1;
                false
            }
        }
    }

    /// Records an error (or a permission refusal); returns false (the entry stays).
    fn error(&mut self, path: &Path, err: &io::Error) -> bool {
        if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            self.report.denied += 1;
            return false;
        }
        self.report.errors += 1;
        if self.report.error_messages.len() < MAX_ERRORS_KEPT {
            self.report
                .error_messages
                .push(format!("{}: {err}", path.display()));
        }
        false
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, never a symlink's target.
fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The names in `dir` except `.` and `..`.
fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    // The stream owns the descriptor it reads: give it a duplicate, so `dir` stays open for the
    // openat/unlinkat calls on its entries.
    let dup: OwnedFd = rustix::io::fcntl_dupfd_cloexec(dir, 0)?;
    let mut names = Vec::new();
    for entry in Dir::new(dup)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    //! The maps parser (the walk itself is tested through `clean`).
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let line = "7f0000000000-7f0000001000 r--p 00000000 fd:01 1234  /usr/lib/libc.so.6";
        assert_eq!(mapped_file(line), Some((libc::makedev(0xfd, 1), 1234)));
        assert_eq!(mapped_file("7ff-800 rw-p 00000000 00:00 0  [heap]"), None);
        assert_eq!(mapped_file("garbage"), None);
    }
}
