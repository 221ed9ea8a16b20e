//! What the benchmarks and tests read about a process from /proc: its CPU time, its memory and
//! whether it is held (stopped or frozen), through the same parsers memtrace itself uses ([`memtrace_host::procfs`]).
use std::path::Path;

use anyhow::Context as _;
use memtrace_host::{
    clock,
    procfs::{self, PidMemory},
};

/// CPU seconds (user + system, all threads) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = procfs::parse_pid_stat(&procfs::read(Path::new(&path))?)
        .with_context(|| format!("parsing {path}"))?;
    Ok((stat.utime + stat.stime) as f64 / clock::clock_ticks() as f64)
}

/// The state letter of `pid` (`T` = stopped, `Z` = zombie), or `None` once it is gone.
pub fn state(pid: u32) -> Option<char> {
    let text = procfs::read(Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    procfs::parse_pid_stat(&text).map(|stat| stat.state)
}

/// Whether `pid` is held: stopped by a signal (`T`), or frozen by a cgroup freezer — v1 (its
/// freezer cgroup's `freezer.state` says `FROZEN`; the task shows `D`) or v2 (its cgroup's
/// `cgroup.events` says `frozen 1`).
pub fn held(pid: u32) -> bool {
    if state(pid) == Some('T') {
        return true;
    }
    let proc_root = Path::new("/proc");
    let v1_frozen = memtrace_host::freezer::v1_freezer_of(proc_root, pid).is_some_and(|dir| {
        std::fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
    });
    v1_frozen
        || memtrace_host::cgroup::v2_cgroup_of(proc_root, pid).is_some_and(|dir| {
            std::fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|events| events.lines().any(|l| l == "frozen 1"))
        })
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// Process `pid`'s memory by kind, with its peak (VmHWM).
pub fn memory(pid: u32) -> anyhow::Result<PidMemory> {
    let path = format!("/proc/{pid}/status");
    procfs::parse_pid_status(&procfs::read(Path::new(&path))?)
        .with_context(|| format!("no Rss lines in {path}"))
}

/// How many processes exist (numeric entries of /proc).
pub fn process_count() -> usize {
    procfs::list_pids(Path::new("/proc")).map_or(0, |pids| pids.len())
}

#[cfg(test)]
mod tests {
    //! Readings of this very process.
    use super::*;

    #[test]
    fn reads_itself() {
        let me = std::process::id();
        assert!(cpu_seconds(me).expect("cpu") >= 0.0);
        let memory = memory(me).expect("memory");
        assert!(memory.rss() > 0 && memory.hwm >= memory.rss());
        assert!(process_count() > 1);
        assert!(alive(me) && matches!(state(me), Some('R' | 'S')));
    }
}
