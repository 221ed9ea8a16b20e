//! Inputs the engine derives from outside state: GPU over-threshold reasons (naming the top
//! holders) and whether a victim tree has a v2 cgroup of its own that can be frozen.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::{
    collect::{
        gpu::{GpuSample, over_threshold},
        model::Snapshot,
    },
    guard::victim::Candidate,
    host::{cgroup, units},
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
                        .map_or("?", |p| &*p.comm);
                    format!("{pid} ({comm}) {:.1} GiB", units::to_gib(*bytes))
                })
                .collect();
            format!(
                "GPU {index} memory {used:.1} % >= {percent} %; top holders: {}",
                names.join(", ")
            )
        })
        .collect()
}

/// The victim's own v2 cgroup, if it has one holding nothing but the tree — in it and in every
/// cgroup below it, which freezing stops too — and its `cgroup.freeze` can be written (not on a
/// read-only cgroupfs, as containers mount it): then it can be frozen instead of signalled.
pub(super) fn own_cgroup(proc_root: &Path, victim: &Candidate) -> Option<PathBuf> {
    let dir = cgroup::v2_cgroup_of(proc_root, victim.root.pid)?;
    // Only a real v2 cgroup directory (see V2Dir), with a freeze file (kernel 5.2+).
    let opened = cgroup::V2Dir::open(proc_root, &dir).ok()?;
    opened.frozen().ok()?;
    if !opened.freezable() {
        return None;
    }
    let members: HashSet<u32> = victim.members.iter().map(|t| t.pid).collect();
    let pids = cgroup::pids_below(&dir).ok()?;
    (!pids.is_empty() && pids.iter().all(|pid| members.contains(pid))).then_some(dir)
}
