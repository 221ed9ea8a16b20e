//! Which memory cgroup memtrace itself runs in, and whether a limit below the machine's RAM
//! binds it: inside a container (Docker, RunPod, vast.ai, a systemd unit with `MemoryMax`) the
//! kernel OOM-kills at that limit while `/proc/meminfo` still shows the host's RAM, so the limit
//! is what status, doctor, swap, run and the guard measure against by default ([`detect`]).
//!
//! The cgroup is found from `/proc/self/cgroup` (v2 `0::PATH`, v1 the `memory` line) and the
//! root of the cgroup mount in `/proc/self/mountinfo`: without a cgroup namespace the path is
//! relative to the hierarchy's root; in one, `/proc/self/cgroup` shows `/` and a container
//! runtime mounts the namespace's root, so the container's cgroup is the root of the visible
//! mount. A mount made outside the namespace shows a root of `/..`: then the cgroup whose
//! `cgroup.procs` lists memtrace's pid is looked up below the mount (a bounded walk).
//!
//! The limit is the lowest one from memtrace's cgroup up to the root of what is visible (v2
//! `memory.max` of each level, v1 `memory.limit_in_bytes` and the inherited
//! `hierarchical_memory_limit`), and the cgroup reported is the one that sets it: its usage is
//! what reaches the limit first.
use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::cgroup::{self, Version};

/// How many cgroup directories the pid lookup visits at most.
const MAX_WALK: usize = 4096;

/// A memory cgroup memtrace runs in (or below) whose limit is below the machine's RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// The cgroup whose limit binds (memtrace's own, or an ancestor of it).
    pub path: PathBuf,
    /// Its hierarchy.
    pub version: Version,
    /// The lowest limit on the way up, in bytes.
    pub limit_bytes: u64,
}

/// What [`detect`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A limit below the machine's RAM binds memtrace's cgroup.
    Limited(Limited),
    /// Nothing limits memtrace below the machine's RAM; why, in words.
    Unlimited(String),
}

/// Finds the memory cgroup memtrace runs in (`ROOT/self/cgroup`, `ROOT/self/mountinfo`) and
/// whether a limit below `machine_bytes` (MemTotal) binds it.
pub fn detect(proc_root: &Path, machine_bytes: u64) -> Detected {
    let Some((mount, version)) = cgroup::memory_hierarchy(proc_root) else {
        return Detected::Unlimited("no memory cgroup controller is mounted".to_owned());
    };
    let Some(own) = own_dir(proc_root, &mount, version) else {
        return Detected::Unlimited(format!(
            "memtrace's own cgroup was not found below {}",
            mount.display()
        ));
    };
    // memtrace's cgroup and its ancestors, up to the root of what is visible.
    let chain: Vec<PathBuf> = own
        .ancestors()
        .take_while(|dir| dir.starts_with(&mount))
        .map(Path::to_path_buf)
        .collect();
    let limits: Vec<Option<u64>> = chain
        .iter()
        .map(|dir| {
            fs::read_to_string(dir.join(version.limit_file()))
                .ok()
                .and_then(|text| cgroup::parse_limit(&text).ok().flatten())
        })
        .collect();
    let stat = fs::read_to_string(own.join("memory.stat")).ok();
    let lowest = cgroup::lowest_limit(limits.iter().copied(), stat.as_deref(), version);
    match lowest {
        Some(limit) if limit < machine_bytes => {
            // The highest level holding the lowest limit reaches it first (its usage includes
            // the levels below); an inherited v1 limit set above what is visible binds the
            // topmost visible level.
            let at = chain
                .iter()
                .zip(&limits)
                .filter(|(_, l)| **l == Some(limit))
                .map(|(dir, _)| dir)
                .next_back()
                .or(chain.last())
                .unwrap_or(&own);
            Detected::Limited(Limited {
                path: at.clone(),
                version,
                limit_bytes: limit,
            })
        }
        _ => Detected::Unlimited(format!(
            "no memory limit below the machine's RAM on {} or above",
            own.display()
        )),
    }
}

/// The directory of memtrace's own memory cgroup below `mount` (the root of the visible
/// hierarchy), or `None` when it cannot be found.
pub fn own_dir(proc_root: &Path, mount: &Path, version: Version) -> Option<PathBuf> {
    let cgroup_text = fs::read_to_string(proc_root.join("self/cgroup")).ok()?;
    let relative = relative_path(&cgroup_text, version)?;
    let mountinfo = fs::read_to_string(proc_root.join("self/mountinfo")).unwrap_or_default();
    let root = mount_root(&mountinfo, mount, version).unwrap_or_else(|| "/".to_owned());
    let mapped = map_below(mount, &root, relative).filter(|dir| Version::of(dir) == Some(version));
    mapped.or_else(|| {
        // The mount shows a part of the hierarchy that does not hold memtrace's path as
        // written (a cgroup namespace's `/` under a mount made outside it): look for the pid.
        let pid = fs::read_link(proc_root.join("self"))
            .ok()
            .and_then(|link| link.to_str()?.parse().ok())
            .unwrap_or_else(std::process::id);
        find_pid(mount, pid)
    })
}

/// The path of the process's memory cgroup in a `/proc/PID/cgroup` text: the `0::` line on v2,
/// the line whose controllers include `memory` on v1.
pub fn relative_path(cgroup_text: &str, version: Version) -> Option<&str> {
    cgroup_text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let wanted = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        wanted.then_some(path)
    })
}

/// The root (within the hierarchy) of the cgroup filesystem mounted at `mount`, from a
/// `/proc/PID/mountinfo` text: the last such mount wins (it hides the earlier ones).
pub fn mount_root(mountinfo: &str, mount: &Path, version: Version) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut fields = before.split_ascii_whitespace();
            let root = fields.nth(3)?;
            let point = fields.next()?;
            let mut after = after.split_ascii_whitespace();
            let (fstype, options) = (after.next()?, after.nth(1).unwrap_or_default());
            let is_memory = match version {
                Version::V2 => fstype == "cgroup2",
                Version::V1 => fstype == "cgroup" && options.split(',').any(|o| o == "memory"),
            };
            (is_memory && Path::new(point) == mount).then(|| root.to_owned())
        })
        .next_back()
}

/// `relative` (a path within the hierarchy) below `mount`, whose root in the hierarchy is
/// `root`; `None` when the path lies outside what the mount shows.
fn map_below(mount: &Path, root: &str, relative: &str) -> Option<PathBuf> {
    if root.split('/').any(|part| part == "..") || relative.split('/').any(|part| part == "..") {
        return None;
    }
    let below = Path::new(relative).strip_prefix(root).ok()?;
    Some(if below.as_os_str().is_empty() {
        mount.to_path_buf()
    } else {
        mount.join(below)
    })
}

/// The cgroup below `mount` whose `cgroup.procs` lists `pid` (breadth first, at most
/// [`MAX_WALK`] directories, symlinks not followed).
pub fn find_pid(mount: &Path, pid: u32) -> Option<PathBuf> {
    let mut queue = std::collections::VecDeque::from([mount.to_path_buf()]);
    let mut visited = 0;
    while let Some(dir) = queue.pop_front() {
        visited += 1;
        if visited > MAX_WALK {
            return None;
        }
        if cgroup::procs_of(&dir).is_ok_and(|pids| pids.contains(&pid)) {
            return Some(dir);
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            queue.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! Detection on fake cgroup trees: v1, v2, a limit on an ancestor, a cgroup namespace's
    //! root, a namespace under a mount made outside it, and no limit (the machine).
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    /// What v1 says for "no limit".
    const V1_UNLIMITED: &str = "9223372036854771712\n";

    /// A fake /proc (`proc/`) and cgroup mount (`cg/`) in a temp dir.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn proc(&self) -> PathBuf {
            self.dir.path().join("proc")
        }

        fn mount(&self) -> PathBuf {
            self.dir.path().join("cg")
        }

        fn write(&self, relative: &str, text: &str) {
            let path = self.dir.path().join(relative);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("write");
        }

        /// /proc/mounts and /proc/self/mountinfo for a mount of `version` whose hierarchy root
        /// is `root`; `/proc/self/cgroup` says `path`; `/proc/self` is pid 4242.
        fn proc_for(&self, version: Version, root: &str, path: &str) {
            let mount = self.mount();
            let m = mount.display();
            let (mounts, info, cgroup) = match version {
                Version::V2 => (
                    format!("cgroup2 {m} cgroup2 rw,nosuid 0 0\n"),
                    format!("30 23 0:26 {root} {m} rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"),
                    format!("0::{path}\n"),
                ),
                Version::V1 => (
                    format!("cgroup {m} cgroup rw,nosuid,memory 0 0\n"),
                    format!("52 48 0:32 {root} {m} rw,relatime - cgroup cgroup rw,memory\n"),
                    format!("5:cpu,cpuacct:/\n4:memory:{path}\n0::/\n"),
                ),
            };
            self.write("proc/mounts", &mounts);
            self.write("proc/4242/mountinfo", &info);
            self.write("proc/4242/cgroup", &cgroup);
            let link = self.proc().join("self");
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink("4242", link).expect("symlink");
            }
            if version == Version::V2 {
                self.write("cg/cgroup.controllers", "cpu memory pids\n");
            }
        }

        /// A v2 cgroup at `relative` below the mount with `memory.max` = `max`.
        fn v2(&self, relative: &str, max: &str) -> PathBuf {
            let dir = self.mount().join(relative);
            for (file, text) in [
                ("memory.current", "1000\n"),
                ("memory.max", max),
                ("cgroup.procs", ""),
            ] {
                fs::create_dir_all(&dir).expect("mkdir");
                fs::write(dir.join(file), text).expect("write");
            }
            dir
        }

        /// A v1 cgroup at `relative` with its own and its inherited limit.
        fn v1(&self, relative: &str, own: &str, inherited: u64) -> PathBuf {
            let dir = self.mount().join(relative);
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join("memory.usage_in_bytes"), "1000\n").expect("write");
            fs::write(dir.join("memory.limit_in_bytes"), own).expect("write");
            fs::write(
                dir.join("memory.stat"),
                format!("cache 0\nhierarchical_memory_limit {inherited}\n"),
            )
            .expect("write");
            fs::write(dir.join("cgroup.procs"), "").expect("write");
            dir
        }

        fn detect(&self) -> Detected {
            detect(&self.proc(), 24 * GIB)
        }
    }

    fn limited(path: &Path, version: Version, limit_bytes: u64) -> Detected {
        Detected::Limited(Limited {
            path: path.to_owned(),
            version,
            limit_bytes,
        })
    }

    #[test]
    fn v2_limit_of_memtraces_own_cgroup() {
        let t = Tree::new();
        t.proc_for(Version::V2, "/", "/system.slice/docker-abc.scope");
        t.v2("system.slice", "max\n");
        let own = t.v2("system.slice/docker-abc.scope", &format!("{}\n", 640 * MIB));
        assert_eq!(t.detect(), limited(&own, Version::V2, 640 * MIB));
    }

    #[test]
    fn v2_lowest_limit_up_the_tree_binds_at_the_ancestor() {
        let t = Tree::new();
        t.proc_for(Version::V2, "/", "/kubepods/pod1/ctr");
        t.v2("kubepods", &format!("{}\n", 20 * GIB));
        let pod = t.v2("kubepods/pod1", &format!("{}\n", 2 * GIB));
        t.v2("kubepods/pod1/ctr", &format!("{}\n", 4 * GIB));
        assert_eq!(t.detect(), limited(&pod, Version::V2, 2 * GIB));
        // Equal limits: the ancestor (its usage includes the child's) reaches it first.
        t.v2("kubepods/pod1/ctr", &format!("{}\n", 2 * GIB));
        assert_eq!(t.detect(), limited(&pod, Version::V2, 2 * GIB));
    }

    #[test]
    fn v2_cgroup_namespace_root_is_the_mount() {
        let t = Tree::new();
        // docker with a cgroup namespace: /proc/self/cgroup says `/`, the mount is the
        // container's cgroup (its memory.max is visible at the top).
        t.proc_for(Version::V2, "/", "/");
        let top = t.v2("", &format!("{}\n", 640 * MIB));
        assert_eq!(t.detect(), limited(&top, Version::V2, 640 * MIB));
    }

    #[test]
    fn namespace_below_a_mount_made_outside_it_is_found_by_pid() {
        let t = Tree::new();
        // `unshare --cgroup` without a new mount: the mount's root shows as `/..`.
        t.proc_for(Version::V1, "/..", "/");
        t.v1("", V1_UNLIMITED, 9_223_372_036_854_771_712);
        t.v1("other", V1_UNLIMITED, 9_223_372_036_854_771_712);
        fs::write(t.mount().join("other/cgroup.procs"), "0\n17\n").expect("write");
        let test = t.v1("test", &format!("{}\n", 256 * MIB), 256 * MIB);
        fs::write(test.join("cgroup.procs"), "0\n4242\n0\n").expect("write");
        assert_eq!(t.detect(), limited(&test, Version::V1, 256 * MIB));
        assert_eq!(find_pid(&t.mount(), 17), Some(t.mount().join("other")));
        assert_eq!(find_pid(&t.mount(), 99), None);
    }

    #[test]
    fn v1_inherited_limit_binds_the_topmost_visible_cgroup() {
        let t = Tree::new();
        // docker on v1 without a cgroup namespace: the mount shows the container's cgroup.
        t.proc_for(Version::V1, "/docker/abc", "/docker/abc/job");
        let top = t.v1("", V1_UNLIMITED, 512 * MIB);
        t.v1("job", V1_UNLIMITED, 512 * MIB);
        assert_eq!(t.detect(), limited(&top, Version::V1, 512 * MIB));
        // An own limit lower than the inherited one binds the own cgroup.
        let job = t.v1("job", &format!("{}\n", 128 * MIB), 128 * MIB);
        assert_eq!(t.detect(), limited(&job, Version::V1, 128 * MIB));
    }

    #[test]
    fn no_limit_below_ram_is_the_machine() {
        let t = Tree::new();
        t.proc_for(Version::V2, "/", "/user.slice");
        t.v2("user.slice", "max\n");
        assert!(matches!(t.detect(), Detected::Unlimited(why) if why.contains("no memory limit")));
        // A limit above the machine's RAM changes nothing.
        t.v2("user.slice", &format!("{}\n", 64 * GIB));
        assert!(matches!(t.detect(), Detected::Unlimited(_)));
        let v1 = Tree::new();
        v1.proc_for(Version::V1, "/", "/");
        v1.v1("", V1_UNLIMITED, 9_223_372_036_854_771_712);
        assert!(matches!(v1.detect(), Detected::Unlimited(_)));
        // No memory controller at all.
        let none = Tree::new();
        none.write("proc/mounts", "proc /proc proc rw 0 0\n");
        assert_eq!(
            none.detect(),
            Detected::Unlimited("no memory cgroup controller is mounted".to_owned())
        );
    }

    #[test]
    fn parses_cgroup_and_mountinfo_lines() {
        let text = "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/init.scope\n";
        assert_eq!(relative_path(text, Version::V1), Some("/docker/abc"));
        assert_eq!(relative_path(text, Version::V2), Some("/init.scope"));
        assert_eq!(
            relative_path("4:cpu,memory:/a\n", Version::V1),
            Some("/a"),
            "co-mounted controllers"
        );
        let info = "52 48 0:32 /.. /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    53 48 0:33 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                    67 66 0:32 / /sys/fs/cgroup/memory rw - cgroup memory rw,memory\n";
        let mount = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            mount_root(info, mount, Version::V1).as_deref(),
            Some("/"),
            "the mount on top wins"
        );
        assert_eq!(mount_root(info, mount, Version::V2), None);
        assert_eq!(map_below(mount, "/..", "/"), None);
        assert_eq!(
            map_below(mount, "/docker/abc", "/docker/abc/x"),
            Some(mount.join("x"))
        );
        assert_eq!(map_below(mount, "/docker/abc", "/other"), None);
    }
}
