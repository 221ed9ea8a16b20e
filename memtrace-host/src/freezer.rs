//! Freezing a cgroup, on either hierarchy: a v2 cgroup's `cgroup.freeze` ([`V2Dir`]) or a v1
//! freezer cgroup's `freezer.state` ([`V1Freezer`], opened only when it really is one: a
//! canonical path strictly below a mount of the v1 `freezer` controller, walked without
//! following symlinks, on a cgroup filesystem). [`Freezer`] is either; the guard freezes held
//! trees through it, and `memtrace run` places its pipeline in one ([`mkdir_below`]). A frozen
//! task is stopped by the kernel without a signal, so the shell that started it sees nothing:
//! no "Stopped", no change of the terminal's foreground job.
use std::{
    collections::HashSet,
    fs, io,
    io::{Read as _, Write as _},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use rustix::fs::{Mode, OFlags, fstatfs, openat};

use crate::{
    cgroup::{self, V2Dir, V2DirError},
    safe_path::{self, PathError},
};

/// `statfs` magic of the v1 cgroup filesystem (`CGROUP_SUPER_MAGIC` in linux/magic.h).
const CGROUP_SUPER_MAGIC: rustix::fs::FsWord = 0x0027_e0eb;

/// Where the v1 `freezer` controller is mounted, from `ROOT/mounts`.
pub fn v1_freezer_mount(proc_root: &Path) -> Option<PathBuf> {
    let mounts = fs::read_to_string(proc_root.join("mounts")).ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (_, target, kind, options) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        (kind == "cgroup" && options.split(',').any(|o| o == "freezer"))
            .then(|| PathBuf::from(target))
    })
}

/// Process `pid`'s v1 freezer cgroup directory, or `None` when it sits at the root of the
/// freezer hierarchy (or there is none).
pub fn v1_freezer_of(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    let relative = text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "freezer")
            .then_some(path)
    })?;
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|p| p == "..") {
        return None;
    }
    Some(v1_freezer_mount(proc_root)?.join(relative))
}

/// Why a directory is not a v1 freezer cgroup memtrace will freeze or thaw.
#[derive(Debug, thiserror::Error)]
pub enum V1FreezerError {
    /// Not strictly below a mount of the v1 freezer controller.
    #[error("{0} is not below a v1 freezer mount")]
    Outside(String),
    /// A symlink on the way, `..`, or gone.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The directory reached is on another filesystem.
    #[error("{0} is not on a cgroup filesystem")]
    NotCgroup(String),
    /// Reading or writing its `freezer.state` failed.
    #[error("{path}/freezer.state: {source}")]
    State {
        /// The cgroup.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

/// A v1 freezer cgroup directory (see the module doc for what is checked).
#[derive(Debug)]
pub struct V1Freezer {
    fd: OwnedFd,
    /// The path it was opened by.
    pub path: PathBuf,
}

impl V1Freezer {
    /// Opens `path` (see the module doc).
    pub fn open(proc_root: &Path, path: &Path) -> Result<Self, V1FreezerError> {
        let shown = || path.display().to_string();
        let below = v1_freezer_mount(proc_root)
            .is_some_and(|mount| path.starts_with(&mount) && path != mount);
        if !below {
            return Err(V1FreezerError::Outside(shown()));
        }
        let fd = safe_path::open_dir(path)?;
        if !fstatfs(&fd).is_ok_and(|fs| fs.f_type == CGROUP_SUPER_MAGIC) {
            return Err(V1FreezerError::NotCgroup(shown()));
        }
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    fn state_file(&self, flags: OFlags) -> Result<fs::File, V1FreezerError> {
        openat(
            &self.fd,
            "freezer.state",
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(fs::File::from)
        .map_err(|errno| self.error(io::Error::from(errno)))
    }

    fn error(&self, source: io::Error) -> V1FreezerError {
        V1FreezerError::State {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Whether its `freezer.state` says `FROZEN` or `FREEZING`.
    pub fn frozen(&self) -> Result<bool, V1FreezerError> {
        let mut text = String::new();
        self.state_file(OFlags::RDONLY)?
            .take(32)
            .read_to_string(&mut text)
            .map_err(|err| self.error(err))?;
        Ok(matches!(text.trim(), "FROZEN" | "FREEZING"))
    }

    /// Freezes (`true`) or thaws (`false`) it.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), V1FreezerError> {
        self.state_file(OFlags::WRONLY)?
            .write_all(if frozen { b"FROZEN" } else { b"THAWED" })
            .map_err(|err| self.error(err))
    }

    /// Whether its `freezer.state` can be written (opened for writing, nothing written).
    pub fn freezable(&self) -> bool {
        self.state_file(OFlags::WRONLY).is_ok()
    }

    /// Whether process `pid`'s own v1 freezer cgroup is this one.
    pub fn holds(&self, proc_root: &Path, pid: u32) -> bool {
        v1_freezer_of(proc_root, pid).is_some_and(|dir| dir == self.path)
    }
}

/// Why a cgroup could not be frozen or thawed.
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    /// A v2 cgroup.
    #[error(transparent)]
    V2(#[from] V2DirError),
    /// A v1 freezer cgroup.
    #[error(transparent)]
    V1(#[from] V1FreezerError),
}

impl FreezerError {
    /// Whether the cgroup does not exist (any more).
    pub fn is_gone(&self) -> bool {
        match self {
            Self::V2(err) => err.is_gone(),
            Self::V1(V1FreezerError::Path(err)) => err.is_not_found(),
            Self::V1(V1FreezerError::State { source, .. }) => {
                source.kind() == io::ErrorKind::NotFound
            }
            Self::V1(_) => false,
        }
    }
}

/// Which kind of freezer a cgroup directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// v2 `cgroup.freeze`.
    V2,
    /// v1 `freezer.state`.
    V1,
}

/// A cgroup that can be frozen: v2 or v1.
#[derive(Debug)]
pub enum Freezer {
    /// A v2 cgroup.
    V2(V2Dir),
    /// A v1 freezer cgroup.
    V1(V1Freezer),
}

impl Freezer {
    /// Opens `path` as a freezer of `kind`.
    pub fn open(proc_root: &Path, path: &Path, kind: Kind) -> Result<Self, FreezerError> {
        Ok(match kind {
            Kind::V2 => Self::V2(V2Dir::open(proc_root, path)?),
            Kind::V1 => Self::V1(V1Freezer::open(proc_root, path)?),
        })
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        match self {
            Self::V2(dir) => &dir.path,
            Self::V1(dir) => &dir.path,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::V2(_) => Kind::V2,
            Self::V1(_) => Kind::V1,
        }
    }

    /// Whether it says frozen.
    pub fn frozen(&self) -> Result<bool, FreezerError> {
        Ok(match self {
            Self::V2(dir) => dir.frozen()?,
            Self::V1(dir) => dir.frozen()?,
        })
    }

    /// Freezes (`true`) or thaws (`false`) it.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), FreezerError> {
        match self {
            Self::V2(dir) => dir.set_frozen(frozen)?,
            Self::V1(dir) => dir.set_frozen(frozen)?,
        }
        Ok(())
    }

    /// Whether it can be frozen (its freeze file opens for writing).
    pub fn freezable(&self) -> bool {
        match self {
            Self::V2(dir) => dir.freezable(),
            Self::V1(dir) => dir.freezable(),
        }
    }

    /// Whether process `pid` lies directly in it.
    pub fn holds(&self, proc_root: &Path, pid: u32) -> bool {
        match self {
            Self::V2(dir) => dir.holds(proc_root, pid),
            Self::V1(dir) => dir.holds(proc_root, pid),
        }
    }

    /// Every pid in it and below it.
    pub fn pids(&self) -> io::Result<HashSet<u32>> {
        cgroup::pids_below(self.path())
    }
}

/// The freezer cgroup of its own that process `pid` sits in, if any: its v2 cgroup, else its
/// v1 freezer cgroup (neither at the root of its hierarchy), opened and writable. Whether it
/// holds nothing but the caller's tree is the caller's check.
pub fn own_freezer(proc_root: &Path, pid: u32) -> Vec<Freezer> {
    let mut found = Vec::new();
    if let Some(dir) = cgroup::v2_cgroup_of(proc_root, pid)
        && let Ok(opened) = V2Dir::open(proc_root, &dir)
        // A freeze file exists (kernel 5.2+) and can be written (not a read-only cgroupfs).
        && opened.frozen().is_ok()
        && opened.freezable()
    {
        found.push(Freezer::V2(opened));
    }
    if let Some(dir) = v1_freezer_of(proc_root, pid)
        && let Ok(opened) = V1Freezer::open(proc_root, &dir)
        && opened.freezable()
    {
        found.push(Freezer::V1(opened));
    }
    found
}

/// Creates the cgroup directory `parent/name` (and `parent` itself, mode 0755, when missing);
/// an existing directory is an error (a name memtrace picks is new, or a leftover to remove
/// first).
pub fn mkdir_below(parent: &Path, name: &str) -> io::Result<PathBuf> {
    match fs::create_dir(parent) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let dir = parent.join(name);
    fs::create_dir(&dir)?;
    Ok(dir)
}

/// The pid a cgroup named `PREFIX-PID` or `PREFIX-PID-MORE` was made for.
pub fn leftover_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?
        .strip_prefix('-')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Removes the empty cgroups below `parent` named for a pid ([`leftover_pid`]) that is no live
/// process: what a memtrace killed with SIGKILL left behind. A cgroup that still holds a
/// process cannot be removed (the kernel refuses), so nothing running is disturbed. Returns the
/// directories removed.
pub fn remove_leftovers(proc_root: &Path, parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| leftover_pid(n, prefix)) else {
            continue;
        };
        if proc_root.join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        if cgroup::procs_of(&path).is_ok_and(|p| p.is_empty()) && fs::remove_dir(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Moves process `pid` (all its threads) into the cgroup `dir` (writes its `cgroup.procs`).
pub fn move_into(dir: &Path, pid: u32) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))?
        .write_all(pid.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    //! Mount and `/proc/PID/cgroup` parsing; a freezer must really be one.
    use super::*;

    fn fake_proc(mounts: &str, cgroup: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("mounts"), mounts).expect("mounts");
        fs::create_dir(tmp.path().join("42")).expect("pid dir");
        fs::write(tmp.path().join("42/cgroup"), cgroup).expect("cgroup");
        tmp
    }

    #[test]
    fn the_v1_freezer_of_a_process_is_read_from_its_cgroup_file() {
        let mounts = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n\
                      cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0\n";
        let proc = fake_proc(mounts, "6:freezer:/memtrace/run-7\n4:memory:/x\n0::/\n");
        assert_eq!(
            v1_freezer_mount(proc.path()),
            Some(PathBuf::from("/sys/fs/cgroup/freezer"))
        );
        assert_eq!(
            v1_freezer_of(proc.path(), 42),
            Some(PathBuf::from("/sys/fs/cgroup/freezer/memtrace/run-7"))
        );
        let at_root = fake_proc(mounts, "6:freezer:/\n");
        assert_eq!(
            v1_freezer_of(at_root.path(), 42),
            None,
            "the root is no own"
        );
        let sneaky = fake_proc(mounts, "6:freezer:/../etc\n");
        assert_eq!(v1_freezer_of(sneaky.path(), 42), None);
    }

    #[test]
    fn a_v1_freezer_must_be_below_the_mount_and_on_a_cgroup_filesystem() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mount = tmp.path().join("freezer");
        fs::create_dir_all(mount.join("cg")).expect("dirs");
        fs::write(mount.join("cg/freezer.state"), "THAWED").expect("state");
        let mounts = format!("cgroup {} cgroup rw,freezer 0 0\n", mount.display());
        let proc = fake_proc(&mounts, "6:freezer:/cg\n");
        // Below the mount, but a tmpfs/ext4 directory, not a cgroup.
        assert!(matches!(
            V1Freezer::open(proc.path(), &mount.join("cg")),
            Err(V1FreezerError::NotCgroup(_))
        ));
        assert!(matches!(
            V1Freezer::open(proc.path(), &mount),
            Err(V1FreezerError::Outside(_))
        ));
        assert!(matches!(
            V1Freezer::open(proc.path(), Path::new("/etc")),
            Err(V1FreezerError::Outside(_))
        ));
        assert_eq!(
            fs::read_to_string(mount.join("cg/freezer.state")).expect("read"),
            "THAWED",
            "untouched"
        );
    }

    #[test]
    fn leftovers_are_named_for_the_pid_that_made_them() {
        assert_eq!(leftover_pid("run-100", "run"), Some(100));
        assert_eq!(leftover_pid("held-200-5", "held"), Some(200));
        assert_eq!(leftover_pid("held-200-5", "run"), None);
        assert_eq!(leftover_pid("runner-1", "run"), None);
        assert_eq!(leftover_pid("run-", "run"), None);
        assert_eq!(leftover_pid("other", "run"), None);
    }
}
