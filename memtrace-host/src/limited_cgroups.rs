//! v2 cgroups with a memory limit of their own: found below a directory (a pipeline run with
//! `memtrace run --memory-high`, a container started with `-m`, a unit with `MemoryHigh=`), and
//! how each one stands at a moment — its stall total, its usage, how often it hit its limits.
//! The guard uses them to tell a cgroup's stalls at its own limit from pressure on its scope
//! (`guard::limit_stalls`); `memtrace run` uses [`own_limit`] to keep a pipeline inside a
//! limit. cgroup v1 has no per-cgroup pressure file: nothing is found there.
use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{cgroup, procfs};

/// The most directories one search visits (a host with thousands of cgroups is searched in
/// part rather than stalling the guard's round).
const MAX_VISITED: usize = 4096;
/// The most limited cgroups one search returns.
const MAX_FOUND: usize = 256;

/// A cgroup whose own `memory.high` or `memory.max` is below its scope's limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Its directory.
    pub dir: PathBuf,
    /// The lower of its `memory.high` and `memory.max`, bytes.
    pub limit: u64,
}

/// How a limited cgroup stands at one reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Its `some` memory stall total (`memory.pressure`), µs.
    pub stall_us: u64,
    /// Its usage (`memory.current`), bytes.
    pub current: u64,
    /// How often it hit its limits so far (`memory.events` high + max + oom).
    pub hits: u64,
}

/// The lower of the limits `dir` sets itself (`memory.high`, `memory.max`), if any.
pub fn own_limit(dir: &Path) -> Option<u64> {
    ["memory.high", "memory.max"]
        .iter()
        .filter_map(|file| fs::read_to_string(dir.join(file)).ok())
        .filter_map(|text| cgroup::parse_limit(&text).ok().flatten())
        .min()
}

/// The cgroups below `root` (not `root` itself) whose own limit is below `below` bytes, in
/// depth-first order. A directory without `memory.max` has no memory controller, and neither
/// have its children: the search does not enter it (the root cgroup, which has no limit files,
/// is always entered).
pub fn find(root: &Path, below: u64) -> Vec<Limited> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > MAX_VISITED || found.len() >= MAX_FOUND {
            break;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Directories only; a symlink is never followed.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let child = entry.path();
            if !child.join("memory.max").is_file() {
                continue;
            }
            if let Some(limit) = own_limit(&child).filter(|&l| l < below) {
                found.push(Limited {
                    dir: child.clone(),
                    limit,
                });
            }
            stack.push(child);
        }
    }
    found
}

/// How `dir` stands now, or `None` when it is gone (or no v2 memory cgroup).
pub fn standing(dir: &Path) -> Option<Standing> {
    let current = fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stall_us = fs::read_to_string(dir.join("memory.pressure"))
        .ok()
        .and_then(|text| procfs::parse_psi(&text))
        .map_or(0, |psi| psi.some.total_us);
    let hits = fs::read_to_string(dir.join("memory.events")).map_or(0, |text| {
        ["high", "max", "oom"]
            .iter()
            .filter_map(|key| cgroup::stat_value(&text, key))
            .sum()
    });
    Some(Standing {
        stall_us,
        current,
        hits,
    })
}

#[cfg(test)]
mod tests {
    //! The search finds cgroups limited below the scope, not the others, and stops at
    //! directories without a memory controller; a standing reads the three files.
    use super::*;

    fn cgroup(dir: &Path, high: &str, max: &str) {
        fs::create_dir_all(dir).expect("dir");
        fs::write(dir.join("memory.high"), high).expect("high");
        fs::write(dir.join("memory.max"), max).expect("max");
    }

    #[test]
    fn finds_the_cgroups_limited_below_the_scope() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        cgroup(&r.join("user.slice"), "max\n", "max\n");
        cgroup(&r.join("user.slice/run.scope"), "max\n", "max\n");
        cgroup(
            &r.join("user.slice/run.scope/pipeline"),
            "50331648\n",
            "max\n",
        );
        cgroup(&r.join("docker"), "max\n", "max\n");
        cgroup(&r.join("docker/c1"), "max\n", "1073741824\n");
        cgroup(&r.join("docker/c1/inner"), "1000\n", "2000\n");
        // Limited, but not below the scope's 4 GiB.
        cgroup(&r.join("big"), "max\n", "8589934592\n");
        // No memory controller here: neither it nor its children are looked at.
        fs::create_dir_all(r.join("plain/child")).expect("dir");
        fs::write(r.join("plain/child/memory.max"), "1000\n").expect("max");
        let mut found = find(r, 4 << 30);
        found.sort_by(|a, b| a.dir.cmp(&b.dir));
        assert_eq!(
            found,
            vec![
                Limited {
                    dir: r.join("docker/c1"),
                    limit: 1 << 30
                },
                Limited {
                    dir: r.join("docker/c1/inner"),
                    limit: 1000
                },
                Limited {
                    dir: r.join("user.slice/run.scope/pipeline"),
                    limit: 48 << 20
                },
            ]
        );
    }

    #[test]
    fn a_standing_reads_stalls_usage_and_limit_hits() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path();
        assert_eq!(
            standing(dir),
            None,
            "no memory.current: no v2 memory cgroup"
        );
        fs::write(dir.join("memory.current"), "52428800\n").expect("current");
        fs::write(
            dir.join("memory.pressure"),
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=1234\n\
             full avg10=1.00 avg60=0.00 avg300=0.00 total=1000\n",
        )
        .expect("pressure");
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 40\nmax 2\noom 1\noom_kill 1\n",
        )
        .expect("events");
        assert_eq!(
            standing(dir),
            Some(Standing {
                stall_us: 1234,
                current: 50 << 20,
                hits: 43
            })
        );
    }
}
