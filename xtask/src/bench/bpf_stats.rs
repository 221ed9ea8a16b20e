//! Kernel-side run time of BPF programs: `kernel.bpf_stats_enabled` switched on for a scope
//! (an RAII guard puts the old value back), and each program's `run_time_ns`/`run_cnt` read
//! from `bpftool prog show --json`.
//!
//! The statistics cost two clock reads per program run, so they are only on while the kernel
//! program costs are measured, never while wall times are.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The sysctl that makes the kernel account run time and count per program.
const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled` switched on; dropping it restores the value it had before.
#[derive(Debug)]
pub struct StatsEnabled {
    path: PathBuf,
    old: String,
}

impl StatsEnabled {
    /// Switches the statistics on.
    pub fn enable() -> anyhow::Result<Self> {
        Self::enable_at(Path::new(SYSCTL))
    }

    fn enable_at(path: &Path) -> anyhow::Result<Self> {
        let old = std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned();
        std::fs::write(path, "1").with_context(|| format!("writing 1 to {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            old,
        })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(&self.path, &self.old) {
            eprintln!(
                "xtask: could not restore {} to {}: {err}",
                self.path.display(),
                self.old
            );
        }
    }
}

/// One loaded program as bpftool reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Kernel program id.
    pub id: u64,
    /// Name, truncated by the kernel to 15 characters.
    pub name: String,
    /// Program type (`tracing` for BTF tracepoints, `tracepoint` for classic ones).
    pub kind: String,
    /// Total run time since load, while the statistics were on.
    pub run_time_ns: u64,
    /// Runs since load, while the statistics were on.
    pub run_cnt: u64,
    /// Processes holding the program, when bpftool was built to report them.
    pub pids: Vec<u32>,
}

/// Every loaded program.
pub fn programs() -> anyhow::Result<Vec<Program>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .context("running bpftool prog show --json")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `bpftool prog show --json`. bpftool leaves `run_time_ns`/`run_cnt` out while they
/// are zero, and `pids` out when built without support for it.
pub fn parse(json: &str) -> anyhow::Result<Vec<Program>> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("parsing bpftool's JSON output")?;
    let list = value
        .as_array()
        .context("bpftool's JSON output is not an array")?;
    let number = |item: &serde_json::Value, key: &str| item.get(key).and_then(|v| v.as_u64());
    list.iter()
        .map(|item| {
            let pids = item
                .get("pids")
                .and_then(|p| p.as_array())
                .map(|pids| {
                    pids.iter()
                        .filter_map(|p| p.get("pid")?.as_u64())
                        .filter_map(|p| u32::try_from(p).ok())
                        .collect()
                })
                .unwrap_or_default();
            Ok(Program {
                id: number(item, "id").context("a bpftool entry without an id")?,
                name: item
                    .get("name")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                kind: item
                    .get("type")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                run_time_ns: number(item, "run_time_ns").unwrap_or(0),
                run_cnt: number(item, "run_cnt").unwrap_or(0),
                pids,
            })
        })
        .collect()
}

/// The programs of `now` that a process started after `before` loaded: ids not in `before`,
/// and held by `pid` where bpftool says who holds them.
pub fn loaded_since(before: &[Program], now: &[Program], pid: u32) -> Vec<Program> {
    now.iter()
        .filter(|p| !before.iter().any(|b| b.id == p.id))
        .filter(|p| p.pids.is_empty() || p.pids.contains(&pid))
        .cloned()
        .collect()
}

/// Run time and count accumulated by each program of `programs` between the `start` and `end`
/// snapshots, keyed by name (programs sharing a name are summed). Programs gone by `end` count
/// nothing.
pub fn delta(programs: &[Program], start: &[Program], end: &[Program]) -> Vec<(String, u64, u64)> {
    let mut sums: HashMap<&str, (u64, u64)> = HashMap::new();
    for program in programs {
        let find = |list: &[Program]| list.iter().find(|p| p.id == program.id).cloned();
        let Some(last) = find(end) else { continue };
        let (t0, c0) = find(start).map_or((0, 0), |p| (p.run_time_ns, p.run_cnt));
        let sum = sums.entry(program.name.as_str()).or_default();
        sum.0 += last.run_time_ns.saturating_sub(t0);
        sum.1 += last.run_cnt.saturating_sub(c0);
    }
    let mut out: Vec<(String, u64, u64)> = sums
        .into_iter()
        .map(|(name, (time, count))| (name.to_owned(), time, count))
        .collect();
    out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    //! bpftool JSON parsing, program selection, deltas and the sysctl guard.
    use super::*;

    const JSON: &str = r#"[
        {"id":134,"type":"tracepoint","name":"page_fault_user","tag":"8d","gpl_compatible":true,
         "run_time_ns":5000,"run_cnt":100,"map_ids":[61]},
        {"id":140,"type":"tracing","name":"rss_stat","run_time_ns":900,"run_cnt":30,
         "pids":[{"pid":77,"comm":"memtrace"}]},
        {"id":141,"type":"tracing","name":"page_fault_user"}
    ]"#;

    #[test]
    fn parses_bpftool() {
        let programs = parse(JSON).expect("valid");
        assert_eq!(programs.len(), 3);
        assert_eq!(programs[0].kind, "tracepoint");
        assert_eq!((programs[0].run_time_ns, programs[0].run_cnt), (5000, 100));
        assert_eq!(programs[1].pids, vec![77]);
        assert_eq!((programs[2].run_time_ns, programs[2].run_cnt), (0, 0));
        assert!(parse("{}").is_err());
        assert!(parse("[{\"name\":\"x\"}]").is_err());
    }

    #[test]
    fn selects_and_subtracts() {
        let all = parse(JSON).expect("valid");
        let before = vec![all[0].clone()];
        let ours = loaded_since(&before, &all, 77);
        assert_eq!(
            ours.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![140, 141]
        );
        assert!(loaded_since(&before, &all, 78).iter().all(|p| p.id == 141));

        let mut end = all.clone();
        end[1].run_time_ns = 2900;
        end[1].run_cnt = 130;
        end[2].run_time_ns = 400;
        end[2].run_cnt = 20;
        let d = delta(&ours, &all, &end);
        assert_eq!(
            d,
            vec![
                ("rss_stat".to_owned(), 2000, 100),
                ("page_fault_user".to_owned(), 400, 20)
            ]
        );
        // A program that unloaded before the end snapshot contributes nothing.
        assert!(delta(&ours, &all, &end[..1]).is_empty());
    }

    #[test]
    fn guard_enables_and_restores() {
        let path = std::env::temp_dir().join(format!("xtask-bpf-stats-{}", std::process::id()));
        std::fs::write(&path, "0\n").expect("write");
        let guard = StatsEnabled::enable_at(&path).expect("enable");
        assert_eq!(guard.old, "0");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "1");
        drop(guard);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "0");
        let _ = std::fs::remove_file(&path);
    }
}
