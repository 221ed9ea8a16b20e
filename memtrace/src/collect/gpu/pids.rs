//! NVML's pids and ours. The NVIDIA driver knows no pid namespaces: NVML always reports a
//! process by its pid in the host's (initial) pid namespace. memtrace names processes by the
//! /proc it reads. Three cases ([`PidView`]):
//!
//! * memtrace runs in the host's pid namespace: the pids are the same;
//! * memtrace runs in a child pid namespace (a container) but reads a /proc of the host's
//!   namespace (`--pid=host`-like setups, a /proc mounted from the host): a process's
//!   `NSpid:` line in `/proc/PID/status` lists its pids from that /proc's namespace down, so the
//!   process whose `NSpid:` starts with the pid NVML reports is the holder ([`map_by_nspid`]);
//! * memtrace's /proc is the container's own (the usual `docker run`): no file it can read
//!   names host pids, so per-process GPU memory is not available, said once
//!   ([`super::FOREIGN_PIDS_NOTE`]); the devices' totals still show.
//!
//! Which namespace a /proc belongs to is told by its pid 1's `ns/pid` link: the initial pid
//! namespace has the fixed inode `PROC_PID_INIT_INO` (0xEFFFFFFC).
use std::{collections::HashMap, path::Path};

use super::GpuProcess;

/// `readlink /proc/PID/ns/pid` of a process in the initial (host) pid namespace.
pub const INIT_PID_NS: &str = "pid:[4026531836]";

/// How NVML's (host) pids relate to the pids of the /proc memtrace reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidView {
    /// memtrace runs in the host's pid namespace: NVML's pids are ours.
    Host,
    /// memtrace runs in a child pid namespace and reads the host's /proc: NVML's pids are
    /// matched by `NSpid:`.
    Nspid,
    /// No readable file names host pids: per-process GPU memory is not available here.
    Unavailable,
}

impl PidView {
    /// Decides from `readlink ns/pid` of memtrace itself and of pid 1 of the /proc it reads
    /// (`None`: unreadable).
    pub fn from_links(own: Option<&str>, proc_init: Option<&str>) -> Self {
        match (own, proc_init) {
            (Some(INIT_PID_NS), _) => Self::Host,
            // Without namespace links (kernels before 3.8) there are no containers to speak of.
            (None, _) => Self::Host,
            (Some(_), Some(INIT_PID_NS)) => Self::Nspid,
            (Some(_), _) => Self::Unavailable,
        }
    }

    /// The view for memtrace reading `proc_root`.
    pub fn detect(proc_root: &Path) -> Self {
        let link = |who: &str| {
            std::fs::read_link(proc_root.join(who).join("ns/pid"))
                .ok()
                .map(|target| target.display().to_string())
        };
        Self::from_links(link("self").as_deref(), link("1").as_deref())
    }
}

/// The first pid of a `/proc/PID/status` text's `NSpid:` line: the process's pid in the pid
/// namespace of the /proc it was read from.
pub fn nspid_first(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Our pid for each host pid, from `(our pid, /proc/PID/status text)` pairs: the process whose
/// `NSpid:` starts with a host pid holds what NVML reports for it.
pub fn map_by_nspid(statuses: impl IntoIterator<Item = (u32, String)>) -> HashMap<u32, u32> {
    statuses
        .into_iter()
        .filter_map(|(ours, status)| Some((nspid_first(&status)?, ours)))
        .collect()
}

/// Rewrites `processes` (host pids, as NVML lists them) to our pids with `map`; returns how many
/// were dropped because no process here matches.
pub fn translate(processes: &mut Vec<GpuProcess>, map: &HashMap<u32, u32>) -> usize {
    let before = processes.len();
    processes.retain_mut(|process| match map.get(&process.pid) {
        Some(&ours) => {
            process.pid = ours;
            true
        }
        None => false,
    });
    before - processes.len()
}

/// [`map_by_nspid`] for the host pids NVML listed, reading `ROOT/PID/status` of each.
pub fn map_listed(proc_root: &Path, processes: &[GpuProcess]) -> HashMap<u32, u32> {
    map_by_nspid(processes.iter().filter_map(|p| {
        let status = std::fs::read_to_string(proc_root.join(p.pid.to_string()).join("status"));
        Some((p.pid, status.ok()?))
    }))
}

#[cfg(test)]
mod tests {
    //! The view from namespace links, and the NSpid mapping on fake status texts.
    use super::*;

    fn on(pid: u32, used_bytes: u64) -> GpuProcess {
        GpuProcess {
            pid,
            gpu_index: 0,
            used_bytes,
        }
    }

    #[test]
    fn view_follows_the_namespace_links() {
        let child = Some("pid:[4026532178]");
        assert_eq!(PidView::from_links(Some(INIT_PID_NS), None), PidView::Host);
        assert_eq!(
            PidView::from_links(child, Some(INIT_PID_NS)),
            PidView::Nspid
        );
        assert_eq!(
            PidView::from_links(child, child),
            PidView::Unavailable,
            "the container's own /proc"
        );
        assert_eq!(PidView::from_links(child, None), PidView::Unavailable);
        // The real /proc: whatever it is, reading it must not panic.
        let _ = PidView::detect(Path::new("/proc"));
    }

    #[test]
    fn nspid_maps_host_pids_to_the_holders() {
        // As read from the host's /proc by memtrace in a child pid namespace: the process whose
        // NSpid starts with the pid NVML reports is the holder; its pid here is that first one.
        let statuses = vec![
            (
                48213,
                "Name:\tpython\nNSpid:\t48213\t17\nVmRSS:\t1 kB\n".to_owned(),
            ),
            (48250, "Name:\tworker\nNSpid:\t48250\t23\t5\n".to_owned()),
            (1, "Name:\tsystemd\nNSpid:\t1\n".to_owned()),
            (9, "Name:\told-kernel\n".to_owned()),
        ];
        let map = map_by_nspid(statuses);
        assert_eq!(map.get(&48213), Some(&48213));
        assert_eq!(map.get(&48250), Some(&48250));
        assert_eq!(map.len(), 3, "no NSpid line: no entry");
        // A status read through another view (a host /proc mounted elsewhere): the first NSpid
        // field is the host pid, the key; the value is the pid memtrace uses.
        let elsewhere = map_by_nspid([(17, "NSpid:\t48213\t17\n".to_owned())]);
        let mut listed = vec![on(48213, 2 << 30), on(99999, 1 << 30)];
        assert_eq!(
            translate(&mut listed, &elsewhere),
            1,
            "unmatched host pid dropped"
        );
        assert_eq!(listed, vec![on(17, 2 << 30)]);
        assert_eq!(nspid_first("NSpid:\t\n"), None);
    }
}
