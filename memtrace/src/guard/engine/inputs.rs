//! Inputs the engine derives from outside state: GPU over-threshold reasons (naming the top
//! holders) and whether a victim tree has a v2 cgroup of its own that can be frozen.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::{
    gpu::{GpuSample, over_threshold},
    guard::victim::Candidate,
    model::Snapshot,
};

/// One reason per GPU at or above `percent`, naming its three largest holders.
pub(super) fn gpu_reasons(sample: &GpuSample, snapshot: &Snapshot, percent: f64) -> Vec<String> {
    over_threshold(sample, percent)
        .into_iter()
        .map(|(index, used, holders)| {
            let names: Vec<String> = holders
                .iter()
                .take(3)
                .map(|(pid, bytes)| {
                    let comm = snapshot
                        .procs
                        .iter()
                        .find(|p| p.pid == *pid)
                        .map_or("?", |p| p.comm.as_str());
                    format!(
                        "{pid} ({comm}) {:.1} GiB",
                        *bytes as f64 / (1u64 << 30) as f64
                    )
                })
                .collect();
            format!(
                "GPU {index} memory {used:.1} % >= {percent} %; top holders: {}",
                names.join(", ")
            )
        })
        .collect()
}

/// The victim's own v2 cgroup, if it has one holding nothing but the tree (then it can be
/// frozen instead of signalled).
pub(super) fn own_cgroup(proc_root: &Path, victim: &Candidate) -> Option<PathBuf> {
    let text =
        std::fs::read_to_string(proc_root.join(victim.root.pid.to_string()).join("cgroup")).ok()?;
    let relative = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    if relative == "/" || relative.is_empty() {
        return None;
    }
    let mount = std::fs::read_to_string(proc_root.join("mounts"))
        .ok()?
        .lines()
        .find_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let (_, target, fstype) = (f.next(), f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(target))
        })?;
    let dir = mount.join(relative.trim_start_matches('/'));
    if !dir.join("cgroup.freeze").exists() {
        return None;
    }
    let members: HashSet<u32> = victim.members.iter().map(|t| t.pid).collect();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let pids: Vec<u32> = procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    (!pids.is_empty() && pids.iter().all(|pid| members.contains(pid))).then_some(dir)
}
