//! Memory cgroups, v1 and v2, in one place: which hierarchy a directory belongs to, the names of
//! its usage, limit, stat and OOM files, where the hierarchies are mounted, a process's own v2
//! cgroup, the pids below a cgroup, the limits that bind a cgroup (its own and its ancestors'),
//! and [`V2Dir`]: a v2 cgroup opened for freezing only when it really is one (below a cgroup2
//! mount, no symlink on the way, on a cgroup2 filesystem). Which cgroup memtrace itself runs in
//! is found by [`crate::own_cgroup`]. The scope, the freeze path and the test and benchmark
//! cgroups are all built on these.
use std::{
    collections::HashSet,
    fs, io,
    io::{Read as _, Write as _},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use rustix::fs::{Mode, OFlags, fstatfs, openat};

use crate::safe_path::{self, PathError};

/// Which cgroup hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Legacy memory controller.
    V1,
    /// Unified hierarchy.
    V2,
}

impl Version {
    /// The memory cgroup version of `dir`, or `None` when it is no memory cgroup.
    pub fn of(dir: &Path) -> Option<Self> {
        if dir.join("memory.current").exists() {
            Some(Self::V2)
        } else if dir.join("memory.usage_in_bytes").exists() {
            Some(Self::V1)
        } else {
            None
        }
    }

    /// The file holding the cgroup's usage in bytes (page cache included).
    pub fn usage_file(self) -> &'static str {
        match self {
            Self::V1 => "memory.usage_in_bytes",
            Self::V2 => "memory.current",
        }
    }

    /// The file holding the cgroup's hard limit (`max`, or a huge number on v1, for none).
    pub fn limit_file(self) -> &'static str {
        match self {
            Self::V1 => "memory.limit_in_bytes",
            Self::V2 => "memory.max",
        }
    }

    /// The `memory.stat` key of the inactive file cache, hierarchical on v1.
    pub fn inactive_file_key(self) -> &'static str {
        match self {
            Self::V1 => "total_inactive_file",
            Self::V2 => "inactive_file",
        }
    }

    /// The `memory.stat` key of the limit inherited from every ancestor (v1 only: on v2 each
    /// ancestor's `memory.max` is read, see [`limit_dirs`]).
    pub fn hierarchical_limit_key(self) -> Option<&'static str> {
        match self {
            Self::V1 => Some("hierarchical_memory_limit"),
            Self::V2 => None,
        }
    }

    /// The file that counts the cgroup's OOM kills, and the key of the count in it.
    pub fn oom_events(self) -> (&'static str, &'static str) {
        match self {
            Self::V1 => ("memory.oom_control", "oom_kill"),
            Self::V2 => ("memory.events", "oom_kill"),
        }
    }
}

/// A `key value` line of a `memory.stat` (or `memory.events`, `memory.oom_control`) file.
pub fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A limit file's content: `Some(bytes)`, or `None` for `max`. Errors on anything else.
pub fn parse_limit(text: &str) -> Result<Option<u64>, std::num::ParseIntError> {
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse().map(Some)
}

/// The directories whose limit files bind `dir`: `dir` itself and, on v2, every ancestor that
/// has a `memory.max` (the root cgroup has none, so the walk stops there, or at the root of
/// what a cgroup namespace shows). On v1 only `dir`: its `memory.stat` carries the inherited
/// limit ([`Version::hierarchical_limit_key`]).
pub fn limit_dirs(dir: &Path, version: Version) -> Vec<PathBuf> {
    let mut dirs = vec![dir.to_path_buf()];
    if version == Version::V2 {
        dirs.extend(
            dir.ancestors()
                .skip(1)
                .take_while(|d| d.join(version.limit_file()).is_file())
                .map(Path::to_path_buf),
        );
    }
    dirs
}

/// The lowest of `limits` (limit files' contents, `None` for `max`) and of the inherited limit
/// in `stat` (v1), or `None` when nothing limits. v1 says "unlimited" with a huge number: the
/// caller compares with the machine's RAM.
pub fn lowest_limit(
    limits: impl IntoIterator<Item = Option<u64>>,
    stat: Option<&str>,
    version: Version,
) -> Option<u64> {
    let inherited = version
        .hierarchical_limit_key()
        .zip(stat)
        .and_then(|(key, stat)| stat_value(stat, key));
    limits.into_iter().flatten().chain(inherited).min()
}

/// How much swap a cgroup may use besides its memory limit `limit`: v2 `memory.swap.max`, v1
/// `memory.memsw.limit_in_bytes` (memory and swap together) minus `limit`. `None` when nothing
/// limits it or the kernel does not account swap per cgroup (no such file).
pub fn swap_allowance(dir: &Path, version: Version, limit: u64) -> Option<u64> {
    let read = |file: &str| {
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| parse_limit(&text).ok().flatten())
    };
    match version {
        Version::V2 => read("memory.swap.max"),
        // v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages).
        Version::V1 => read("memory.memsw.limit_in_bytes")
            .filter(|&both| both < V1_UNLIMITED)
            .map(|both| both.saturating_sub(limit)),
    }
}

/// v1 limits at or above this are "no limit" (the kernel writes PAGE_COUNTER_MAX pages, about
/// 2⁶³ bytes).
const V1_UNLIMITED: u64 = 1 << 62;

/// A cgroup's usage minus its inactive file cache, in bytes: what the guard and the kernel's
/// reclaim cannot simply drop. Reads the files once.
pub fn used_bytes(dir: &Path, version: Version) -> io::Result<u64> {
    let usage: u64 = fs::read_to_string(dir.join(version.usage_file()))?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "cgroup usage"))?;
    let stat = fs::read_to_string(dir.join("memory.stat"))?;
    let inactive = stat_value(&stat, version.inactive_file_key()).unwrap_or(0);
    Ok(usage.saturating_sub(inactive))
}

/// How many OOM kills a cgroup has seen (0 when the file is unreadable).
pub fn oom_kills(dir: &Path, version: Version) -> u64 {
    let (file, key) = version.oom_events();
    fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|text| stat_value(&text, key))
        .unwrap_or(0)
}

/// Every pid in `dir` and the cgroups below it.
pub fn pids_below(dir: &Path) -> io::Result<HashSet<u32>> {
    let mut pids = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        pids.extend(procs_of(&dir)?);
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    Ok(pids)
}

/// The pids directly in `dir` (its `cgroup.procs`).
pub fn procs_of(dir: &Path) -> io::Result<Vec<u32>> {
    Ok(fs::read_to_string(dir.join("cgroup.procs"))?
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect())
}

/// One line of `/proc/mounts`: where a filesystem of type `fstype` is mounted, and its options.
fn mounts_of<'a>(mounts: &'a str, fstype: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
    mounts.lines().filter_map(move |line| {
        let mut fields = line.split_ascii_whitespace();
        let (_, target, kind, options) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        (kind == fstype).then_some((target, options))
    })
}

/// Where the unified (v2) hierarchy is mounted, from `ROOT/mounts`.
pub fn v2_mount(proc_root: &Path) -> Option<PathBuf> {
    v2_mounts(proc_root).into_iter().next()
}

/// Every mount point of the unified (v2) hierarchy, from `ROOT/mounts`.
pub fn v2_mounts(proc_root: &Path) -> Vec<PathBuf> {
    let Ok(mounts) = fs::read_to_string(proc_root.join("mounts")) else {
        return Vec::new();
    };
    mounts_of(&mounts, "cgroup2")
        .map(|(target, _)| PathBuf::from(target))
        .collect()
}

/// `statfs` magic of the cgroup2 filesystem (`CGROUP2_SUPER_MAGIC` in linux/magic.h).
const CGROUP2_SUPER_MAGIC: rustix::fs::FsWord = 0x6367_7270;

/// Why a directory is not a v2 cgroup memtrace will freeze or thaw.
#[derive(Debug, thiserror::Error)]
pub enum V2DirError {
    /// Not strictly below any cgroup2 mount point.
    #[error("{0} is not below a cgroup2 mount")]
    OutsideCgroup2(String),
    /// A symlink on the way, `..`, or gone.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The directory reached is on another filesystem.
    #[error("{0} is not on a cgroup2 filesystem")]
    NotCgroup2(String),
    /// Reading or writing its `cgroup.freeze` failed.
    #[error("{path}/cgroup.freeze: {source}")]
    Freeze {
        /// The cgroup.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

impl V2DirError {
    /// Whether the cgroup does not exist (any more).
    pub fn is_gone(&self) -> bool {
        match self {
            Self::Path(err) => err.is_not_found(),
            Self::Freeze { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// A v2 cgroup directory, opened only after checking that `path` is canonical (absolute, no
/// `..`, no symlink in any component: it is walked with O_NOFOLLOW), lies strictly below a
/// cgroup2 mount point of `ROOT/mounts`, and that the directory reached is on a cgroup2
/// filesystem. Its `cgroup.freeze` is then opened relative to it, again with O_NOFOLLOW.
#[derive(Debug)]
pub struct V2Dir {
    fd: OwnedFd,
    /// The path it was opened by.
    pub path: PathBuf,
}

impl V2Dir {
    /// Opens `path` (see the type's doc).
    pub fn open(proc_root: &Path, path: &Path) -> Result<Self, V2DirError> {
        let shown = || path.display().to_string();
        if !v2_mounts(proc_root)
            .iter()
            .any(|mount| path.starts_with(mount) && path != mount)
        {
            return Err(V2DirError::OutsideCgroup2(shown()));
        }
        let fd = safe_path::open_dir(path)?;
        let on_cgroup2 = fstatfs(&fd).is_ok_and(|fs| fs.f_type == CGROUP2_SUPER_MAGIC);
        if !on_cgroup2 {
            return Err(V2DirError::NotCgroup2(shown()));
        }
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    fn freeze_file(&self, flags: OFlags) -> Result<fs::File, V2DirError> {
        openat(
            &self.fd,
            "cgroup.freeze",
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(fs::File::from)
        .map_err(|errno| V2DirError::Freeze {
            path: self.path.display().to_string(),
            source: io::Error::from(errno),
        })
    }

    /// Whether its `cgroup.freeze` says frozen (`1`).
    pub fn frozen(&self) -> Result<bool, V2DirError> {
        let mut text = String::new();
        self.freeze_file(OFlags::RDONLY)?
            .take(16)
            .read_to_string(&mut text)
            .map_err(|source| V2DirError::Freeze {
                path: self.path.display().to_string(),
                source,
            })?;
        Ok(text.trim() == "1")
    }

    /// Freezes (`true`) or thaws (`false`) it.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), V2DirError> {
        self.freeze_file(OFlags::WRONLY)?
            .write_all(if frozen { b"1" } else { b"0" })
            .map_err(|source| V2DirError::Freeze {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// Whether its `cgroup.freeze` can be written (opened for writing, nothing written): false
    /// on a read-only cgroupfs, as containers often mount it, or without the permission.
    pub fn freezable(&self) -> bool {
        self.freeze_file(OFlags::WRONLY).is_ok()
    }

    /// Whether process `pid`'s own v2 cgroup is this one.
    pub fn holds(&self, proc_root: &Path, pid: u32) -> bool {
        v2_cgroup_of(proc_root, pid).is_some_and(|dir| dir == self.path)
    }
}

/// Where the v1 memory controller is mounted, from `ROOT/mounts`.
pub fn v1_memory_mount(proc_root: &Path) -> Option<PathBuf> {
    let mounts = fs::read_to_string(proc_root.join("mounts")).ok()?;
    mounts_of(&mounts, "cgroup")
        .find(|(_, options)| options.split(',').any(|o| o == "memory"))
        .map(|(target, _)| PathBuf::from(target))
}

/// The hierarchy that holds the memory controller, and its root: v2 where the unified
/// hierarchy has it (pure v2 and most hybrids), else v1. `None` without a memory controller.
pub fn memory_hierarchy(proc_root: &Path) -> Option<(PathBuf, Version)> {
    let v2 = v2_mount(proc_root).filter(|root| {
        fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
    });
    match v2 {
        Some(root) => Some((root, Version::V2)),
        None => v1_memory_mount(proc_root).map(|root| (root, Version::V1)),
    }
}

/// Process `pid`'s v2 cgroup directory, the root of the hierarchy included; `None` without a
/// cgroup2 mount, or when the path leads outside this cgroup namespace (`..`).
pub fn v2_dir_of(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    let relative = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let relative = relative.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        return None;
    }
    let mount = v2_mount(proc_root)?;
    Some(if relative.is_empty() {
        mount
    } else {
        mount.join(relative)
    })
}

/// Process `pid`'s own v2 cgroup directory, or `None` when it sits at the root of the
/// hierarchy (or there is no v2 mount, see [`v2_dir_of`]).
pub fn v2_cgroup_of(proc_root: &Path, pid: u32) -> Option<PathBuf> {
    let dir = v2_dir_of(proc_root, pid)?;
    (Some(&dir) != v2_mount(proc_root).as_ref()).then_some(dir)
}

#[cfg(test)]
mod tests {
    //! stat parsing, limits, mounts and the version check.
    use super::*;

    #[test]
    fn stat_lines() {
        let stat = "cache 10\ninactive_file 4096\ntotal_inactive_file 8192\n";
        assert_eq!(stat_value(stat, "inactive_file"), Some(4096));
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(8192));
        assert_eq!(stat_value(stat, "missing"), None);
        assert_eq!(stat_value("oom 0\noom_kill 3\n", "oom_kill"), Some(3));
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(parse_limit("536870912\n"), Ok(Some(512 << 20)));
        assert!(parse_limit("lots").is_err());
    }

    #[test]
    fn mounts_are_found_by_type_and_option() {
        let mounts = "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu,cpuacct 0 0\n\
                      cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,memory 0 0\n";
        assert_eq!(
            mounts_of(mounts, "cgroup2").next(),
            Some(("/sys/fs/cgroup/unified", "rw,nosuid"))
        );
        let v1: Vec<_> = mounts_of(mounts, "cgroup")
            .filter(|(_, o)| o.split(',').any(|o| o == "memory"))
            .collect();
        assert_eq!(v1, vec![("/sys/fs/cgroup/memory", "rw,nosuid,memory")]);
    }

    #[test]
    fn a_process_v2_directory_is_read_from_its_cgroup_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path();
        fs::write(
            base.join("mounts"),
            "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
        )
        .expect("mounts");
        let at = |line: &str| {
            fs::create_dir_all(base.join("42")).expect("pid dir");
            fs::write(base.join("42/cgroup"), line).expect("cgroup");
            (v2_dir_of(base, 42), v2_cgroup_of(base, 42))
        };
        let scope = PathBuf::from("/sys/fs/cgroup/user.slice/session-3.scope");
        assert_eq!(
            at("0::/user.slice/session-3.scope\n"),
            (Some(scope.clone()), Some(scope))
        );
        let root = PathBuf::from("/sys/fs/cgroup");
        assert_eq!(at("0::/\n"), (Some(root), None), "the root is no own");
        assert_eq!(
            at("0::/../../outside\n"),
            (None, None),
            "outside the namespace"
        );
        assert_eq!(at("4:memory:/x\n"), (None, None), "no v2 line");
    }

    #[test]
    fn freeze_dir_must_be_a_real_cgroup2_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path();
        let cg = base.join("cg");
        fs::create_dir_all(cg.join("job")).expect("mkdir");
        fs::create_dir_all(base.join("elsewhere")).expect("mkdir");
        fs::write(base.join("elsewhere/cgroup.freeze"), "1").expect("write");
        std::os::unix::fs::symlink(base.join("elsewhere"), cg.join("link")).expect("symlink");
        fs::write(
            base.join("mounts"),
            format!("cgroup2 {} cgroup2 rw 0 0\n", cg.display()),
        )
        .expect("mounts");
        let open = |path: &Path| V2Dir::open(base, path);
        assert!(matches!(
            open(&base.join("elsewhere")),
            Err(V2DirError::OutsideCgroup2(_))
        ));
        assert!(matches!(open(&cg), Err(V2DirError::OutsideCgroup2(_))));
        assert!(matches!(
            open(&cg.join("link")),
            Err(V2DirError::Path(PathError::NotDirectory(_)))
        ));
        assert!(matches!(
            open(&cg.join("job/../../elsewhere")),
            Err(V2DirError::Path(PathError::NotCanonical(_)))
        ));
        // A real directory below the mount point, but no cgroup2 filesystem.
        assert!(matches!(
            open(&cg.join("job")),
            Err(V2DirError::NotCgroup2(_))
        ));
        assert!(open(&cg.join("gone")).is_err_and(|e| e.is_gone()));
        assert_eq!(
            fs::read_to_string(base.join("elsewhere/cgroup.freeze")).expect("read"),
            "1",
            "nothing written through the symlink"
        );
    }

    #[test]
    fn limits_bind_from_every_level() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let top = tmp.path().join("top");
        let leaf = top.join("mid/leaf");
        fs::create_dir_all(&leaf).expect("mkdir");
        // The temp dir itself has no memory.max: the walk stops below it, as at a v2 root.
        for (dir, limit) in [
            (&top, "max\n"),
            (&top.join("mid"), "1048576\n"),
            (&leaf, "max\n"),
        ] {
            fs::write(dir.join("memory.max"), limit).expect("write");
        }
        let dirs = limit_dirs(&leaf, Version::V2);
        assert_eq!(dirs, vec![leaf.clone(), top.join("mid"), top.clone()]);
        assert_eq!(limit_dirs(&leaf, Version::V1), vec![leaf.clone()]);
        let limits = dirs.iter().map(|d| {
            parse_limit(&fs::read_to_string(d.join("memory.max")).expect("read")).expect("valid")
        });
        assert_eq!(lowest_limit(limits, None, Version::V2), Some(1 << 20));
        assert_eq!(lowest_limit([None, None], None, Version::V2), None);
        // v1: the inherited limit in memory.stat counts, even where the own one is "unlimited".
        let stat = "cache 0\nhierarchical_memory_limit 671088640\n";
        assert_eq!(
            lowest_limit([Some(9_223_372_036_854_771_712)], Some(stat), Version::V1),
            Some(640 << 20)
        );
        assert_eq!(
            lowest_limit([Some(1 << 20)], Some(stat), Version::V2),
            Some(1 << 20),
            "v2 has no inherited key"
        );
        // Swap besides the memory limit.
        assert_eq!(swap_allowance(&leaf, Version::V2, 1 << 20), None, "no file");
        fs::write(leaf.join("memory.swap.max"), "0\n").expect("write");
        assert_eq!(swap_allowance(&leaf, Version::V2, 1 << 20), Some(0));
        fs::write(leaf.join("memory.swap.max"), "max\n").expect("write");
        assert_eq!(swap_allowance(&leaf, Version::V2, 1 << 20), None);
        fs::write(leaf.join("memory.memsw.limit_in_bytes"), "3145728\n").expect("write");
        assert_eq!(swap_allowance(&leaf, Version::V1, 1 << 20), Some(2 << 20));
        fs::write(
            leaf.join("memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .expect("write");
        assert_eq!(
            swap_allowance(&leaf, Version::V1, 1 << 20),
            None,
            "unlimited"
        );
    }

    #[test]
    fn non_cgroup_has_no_version() {
        assert_eq!(Version::of(Path::new("/proc")), None);
        assert_eq!(Version::V2.limit_file(), "memory.max");
        assert_eq!(Version::V1.inactive_file_key(), "total_inactive_file");
    }
}
