//! A memory cgroup with a limit for one benchmark trial (v2 `memory.max` where the unified
//! hierarchy has the memory controller, else v1 `memory.limit_in_bytes`), removed on drop after
//! killing, by PID, only the processes the trial put into it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};

/// The trial's cgroup.
#[derive(Debug)]
pub struct BenchCgroup {
    /// Its directory.
    pub path: PathBuf,
    v2: bool,
    limit: u64,
    started: Vec<u32>,
}

fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|root| {
            fs::read_to_string(root.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        })
}

impl BenchCgroup {
    /// Creates `memtrace-bench-NAME-PID` limited to `limit` bytes.
    pub fn create(name: &str, limit: u64) -> anyhow::Result<Self> {
        let leaf = format!("memtrace-bench-{name}-{}", std::process::id());
        let (path, v2) = match v2_root() {
            Some(root) => {
                let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
                (root.join(leaf), true)
            }
            None => {
                let root = Path::new("/sys/fs/cgroup/memory");
                if !root.join("memory.limit_in_bytes").exists() {
                    bail!(
                        "no memory cgroup controller (neither v2 with memory nor v1 at {})",
                        root.display()
                    );
                }
                (root.join(leaf), false)
            }
        };
        let _ = fs::remove_dir(&path);
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let group = Self {
            path,
            v2,
            limit,
            started: Vec::new(),
        };
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        fs::write(group.path.join(file), limit.to_string())
            .with_context(|| format!("setting {file}"))?;
        if v2 {
            let _ = fs::write(group.path.join("memory.swap.max"), "0");
        }
        Ok(group)
    }

    /// A command that moves itself into the cgroup, then execs `program ARGS`.
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

    /// Remembers a pid to kill on drop.
    pub fn track(&mut self, pid: u32) {
        self.started.push(pid);
    }

    /// Usage minus inactive file cache, in percent of the limit (what the guard sees).
    pub fn used_percent(&self) -> f64 {
        let (usage_file, key) = if self.v2 {
            ("memory.current", "inactive_file ")
        } else {
            ("memory.usage_in_bytes", "total_inactive_file ")
        };
        let usage: u64 = fs::read_to_string(self.path.join(usage_file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let inactive: u64 = fs::read_to_string(self.path.join("memory.stat"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            })
            .unwrap_or(0);
        usage.saturating_sub(inactive) as f64 * 100.0 / self.limit as f64
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        for pid in &self.started {
            // SAFETY: kill has no memory-safety preconditions; only pids this trial started.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("xtask: could not remove {}", self.path.display());
    }
}
