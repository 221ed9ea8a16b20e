//! One pass over /proc: every user process with its identity and resident memory by kind.
//! Used by `status` (no eBPF) and to seed the tracer with processes that existed before it.
use std::path::Path;

use crate::procfs::{self, PidMemory, PidStat, ProcError};

/// A process found in /proc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScannedProc {
    /// From `PID/stat`.
    pub stat: PidStat,
    /// From `PID/status`.
    pub memory: PidMemory,
    /// From `PID/cmdline`.
    pub cmdline: String,
}

/// Reads `stat` and `status` of one pid; `None` if it vanished or is a kernel thread.
pub fn scan_pid(proc_root: &Path, pid: u32) -> Option<ScannedProc> {
    let dir = proc_root.join(pid.to_string());
    let stat = procfs::parse_pid_stat(&procfs::read(&dir.join("stat")).ok()?)?;
    let memory = procfs::parse_pid_status(&procfs::read(&dir.join("status")).ok()?)?;
    let cmdline = std::fs::read(dir.join("cmdline"))
        .map(|raw| procfs::parse_cmdline(&raw))
        .unwrap_or_default();
    Some(ScannedProc {
        stat,
        memory,
        cmdline,
    })
}

/// Every user process under `proc_root` (processes that vanish mid-scan are skipped).
pub fn scan_all(proc_root: &Path) -> Result<Vec<ScannedProc>, ProcError> {
    Ok(procfs::list_pids(proc_root)?
        .into_iter()
        .filter_map(|pid| scan_pid(proc_root, pid))
        .collect())
}

/// The `n` largest processes by resident set, largest first.
pub fn top_by_rss(mut procs: Vec<ScannedProc>, n: usize) -> Vec<ScannedProc> {
    procs.sort_by(|a, b| {
        b.memory
            .rss()
            .cmp(&a.memory.rss())
            .then(a.stat.pid.cmp(&b.stat.pid))
    });
    procs.truncate(n);
    procs
}
