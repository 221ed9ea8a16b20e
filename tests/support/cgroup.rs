//! A memory cgroup with a limit for one test: cgroup v2 (`memory.max`) where the memory
//! controller is on the unified hierarchy, else v1 (`memory.limit_in_bytes`). Removed on drop,
//! after killing (by PID) only the processes the test put into it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// Which hierarchy a cgroup lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Legacy memory controller.
    V1,
    /// Unified hierarchy.
    V2,
}

/// A test cgroup.
pub struct TestCgroup {
    /// Its directory.
    pub path: PathBuf,
    /// Its hierarchy.
    pub version: Version,
    started: Vec<u32>,
}

fn v2_root_with_memory() -> Option<PathBuf> {
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let controllers = fs::read_to_string(Path::new(root).join("cgroup.controllers")).ok()?;
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Some(PathBuf::from(root));
        }
    }
    None
}

impl TestCgroup {
    /// Creates `memtrace-test-NAME-PID` limited to `limit` bytes.
    pub fn create(name: &str, limit: u64) -> Self {
        let leaf = format!("memtrace-test-{name}-{}", std::process::id());
        let (path, version) = if let Some(root) = v2_root_with_memory() {
            // Enable the memory controller for children; harmless if already on.
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
            (root.join(leaf), Version::V2)
        } else {
            let root = Path::new("/sys/fs/cgroup/memory");
            assert!(
                root.join("memory.limit_in_bytes").exists(),
                "no memory cgroup controller found (neither v2 with memory nor v1 at {})",
                root.display()
            );
            (root.join(leaf), Version::V1)
        };
        let _ = fs::remove_dir(&path);
        fs::create_dir(&path).unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        let group = Self {
            path,
            version,
            started: Vec::new(),
        };
        let (file, value) = match version {
            Version::V1 => ("memory.limit_in_bytes", limit.to_string()),
            Version::V2 => ("memory.max", limit.to_string()),
        };
        fs::write(group.path.join(file), value)
            .unwrap_or_else(|err| panic!("setting {file} on {}: {err}", group.path.display()));
        if version == Version::V2 {
            // No swap on our machines, but never let a test hog push into one.
            let _ = fs::write(group.path.join("memory.swap.max"), "0");
        }
        group
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

    /// Remembers a pid this test started, to kill on drop.
    pub fn track(&mut self, pid: u32) {
        self.started.push(pid);
    }

    /// Whether this cgroup's events show an OOM kill.
    pub fn saw_oom_kill(&self) -> bool {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill "),
            Version::V2 => ("memory.events", "oom_kill "),
        };
        fs::read_to_string(self.path.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.strip_prefix(key))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for pid in &self.started {
            // SAFETY: kill has no memory-safety preconditions; we only signal pids we started.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
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
