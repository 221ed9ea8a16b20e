//! A memory cgroup with a limit for one test or benchmark trial, on whichever hierarchy holds
//! the memory controller (v2 `memory.max`, else v1 `memory.limit_in_bytes`; see
//! [`memtrace_host::cgroup::memory_hierarchy`]). Removed on drop, after killing (by PID) only
//! the processes the caller started in it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use memtrace_host::cgroup::{self, Version};

/// A limited memory cgroup, removed on drop.
#[derive(Debug)]
pub struct TestCgroup {
    /// Its directory.
    pub path: PathBuf,
    /// Its hierarchy.
    pub version: Version,
    limit: u64,
    started: Vec<u32>,
}

impl TestCgroup {
    /// Creates `memtrace-NAME-PID` (e.g. `memtrace-test-guard-1234`) limited to `limit` bytes,
    /// without swap where the hierarchy can say so.
    pub fn create(name: &str, limit: u64) -> anyhow::Result<Self> {
        let Some((root, version)) = cgroup::memory_hierarchy(Path::new("/proc")) else {
            bail!("no memory cgroup controller (neither v2 with memory nor v1) is mounted");
        };
        if version == Version::V2 {
            // Enable the memory controller for children; harmless if already on.
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
        }
        let path = root.join(format!("memtrace-{name}-{}", std::process::id()));
        let _ = fs::remove_dir(&path);
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let group = Self {
            path,
            version,
            limit,
            started: Vec::new(),
        };
        let file = version.limit_file();
        fs::write(group.path.join(file), limit.to_string())
            .with_context(|| format!("setting {file} on {}", group.path.display()))?;
        if version == Version::V2 {
            // No swap on our machines, but never let a hog push into one.
            let _ = fs::write(group.path.join("memory.swap.max"), "0");
        }
        Ok(group)
    }

    /// A command that first moves itself into this cgroup, then execs `program ARGS`.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "echo $$ > '{}' && exec \"$0\" \"$@\"",
                self.path.join("cgroup.procs").display()
            ))
            .arg(program)
            .args(args);
        cmd
    }

    /// Remembers a pid the caller started, to kill on drop.
    pub fn track(&mut self, pid: u32) {
        self.started.push(pid);
    }

    /// Usage minus inactive file cache, in percent of the limit (what the guard sees).
    pub fn used_percent(&self) -> f64 {
        let used = cgroup::used_bytes(&self.path, self.version).unwrap_or(0);
        used as f64 * 100.0 / self.limit as f64
    }

    /// Whether this cgroup's events show an OOM kill.
    pub fn saw_oom_kill(&self) -> bool {
        cgroup::oom_kills(&self.path, self.version) > 0
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for &pid in &self.started {
            crate::child::kill_pid(pid);
        }
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}
