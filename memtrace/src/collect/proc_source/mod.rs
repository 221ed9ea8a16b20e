//! The /proc source: what the sampler reads where eBPF cannot load (a default container, not
//! root). It follows only the scope's processes ([`Members`]: a tree, a cgroup or everything)
//! and hands the sampler the same per-process values the tracer gives: resident memory by kind
//! (`RssAnon`, `RssFile`, `RssShmem`) and `VmSwap` from `status`, the kernel's peak (`VmHWM`),
//! faults (`stat` minflt + majflt), identity, and the processes that exited since the previous
//! sample with their last values. OOM kills come from the scope's OOM counter ([`OomSource`]).
//!
//! What it costs is kept low by reading only what may have changed: each followed process
//! holds its pidfd and its three files open (closed when it exits); every sample one poll() over
//! the pidfds tells which exited, the scope is listed again only when a pid was handed out
//! ([`members`]), and a process is read in full only when its `statm` changed ([`tracked`]).
//! Where pidfds are unavailable every followed process's `statm` is read every sample instead.
//! What it cannot see: a process born and gone between two samples, reclaim stalls, and which
//! process the kernel's OOM killer chose.
mod members;
mod oom;
mod tracked;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

pub use members::Members;
pub use oom::{OomSource, PROBABLE, UNKNOWN_VICTIM};
use rustix::{
    event::{PollFd, PollFlags, Timespec, poll},
    io::Errno,
};

use crate::{
    collect::model::{OomKill, ProcSample},
    host::{
        clock,
        pidfd::{ProcRef, ProcRefError},
        privilege,
        procfs::{self, PidStat, ProcError},
    },
};

/// One reading of the scope.
#[derive(Debug, Default)]
pub struct Reading {
    /// The live processes, with their latest values (no rates).
    pub live: Vec<ProcSample>,
    /// The processes that exited since the previous reading, with their last values.
    pub exited: Vec<ProcSample>,
    /// OOM kills counted since the previous reading.
    pub oom_kills: Vec<OomKill>,
}

/// How exits are noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExitWatch {
    /// A pidfd per process, all polled at once.
    Pidfd,
    /// Reading each process every sample (no pidfds here).
    Reading,
}

/// The /proc source.
#[derive(Debug)]
pub struct ProcSource {
    proc_root: PathBuf,
    discovery: members::Discovery,
    followed: HashMap<u32, tracked::Tracked>,
    exits: ExitWatch,
    oom: Option<oom::OomCounter>,
    /// Processes left unread for want of file descriptors (said once).
    out_of_descriptors: bool,
}

impl ProcSource {
    /// A source for `members` under `proc_root`, OOM kills counted from `oom`. Nothing is read
    /// before the first [`read`](Self::read).
    pub fn new(proc_root: &Path, members: Members, oom: OomSource) -> Self {
        // Four descriptors per followed process.
        privilege::raise_nofile();
        Self {
            proc_root: proc_root.to_owned(),
            discovery: members::Discovery::new(proc_root, members),
            followed: HashMap::new(),
            exits: ExitWatch::Pidfd,
            oom: oom::OomCounter::open(proc_root, &oom),
            out_of_descriptors: false,
        }
    }

    /// Notices exits by reading every process every sample, as where pidfds are unavailable.
    pub fn without_pidfds(mut self) -> Self {
        self.exits = ExitWatch::Reading;
        self
    }

    /// Reads the scope now.
    pub fn read(&mut self) -> Result<Reading, ProcError> {
        self.read_at(Instant::now())
    }

    /// Reads the scope as of `now`.
    pub fn read_at(&mut self, now: Instant) -> Result<Reading, ProcError> {
        let mut gone = self.exited_by_pidfd();
        let followed = &self.followed;
        if let Some(listing) = self
            .discovery
            .list(now, |pid| followed.contains_key(&pid))?
        {
            let unlisted: Vec<u32> = self
                .followed
                .keys()
                .copied()
                .filter(|pid| !listing.pids.contains(pid) && !gone.contains(pid))
                .collect();
            for pid in unlisted {
                // Out of /proc: exited. Out of the cgroup but alive: it left the scope.
                let exited = self
                    .followed
                    .get_mut(&pid)
                    .is_none_or(|t| t.refresh(&self.proc_root, now) == tracked::Refresh::Gone);
                if exited {
                    gone.push(pid);
                } else {
                    self.followed.remove(&pid);
                }
            }
            self.admit(&listing.candidates, now);
        }
        let every_sample = self.exits == ExitWatch::Reading;
        for (pid, process) in &mut self.followed {
            if gone.contains(pid) || !process.due(now, every_sample) {
                continue;
            }
            if process.refresh(&self.proc_root, now) == tracked::Refresh::Gone {
                gone.push(*pid);
            }
        }
        let exited: Vec<ProcSample> = gone
            .iter()
            .filter_map(|pid| self.followed.remove(pid))
            .map(tracked::Tracked::into_exit)
            .collect();
        let oom_kills = self
            .oom
            .as_mut()
            .map(|counter| counter.read(&exited, clock::unix_ms()))
            .unwrap_or_default();
        Ok(Reading {
            live: self.followed.values().map(|t| t.sample.clone()).collect(),
            exited,
            oom_kills,
        })
    }

    /// The followed processes whose pidfd says they exited.
    fn exited_by_pidfd(&self) -> Vec<u32> {
        if self.exits != ExitWatch::Pidfd {
            return Vec::new();
        }
        let (pids, mut fds): (Vec<u32>, Vec<PollFd<'_>>) = self
            .followed
            .iter()
            .filter_map(|(pid, t)| Some((*pid, PollFd::new(t.pidfd.as_ref()?, PollFlags::IN))))
            .unzip();
        if fds.is_empty() {
            return Vec::new();
        }
        // A zero timeout: look, don't wait.
        match poll(&mut fds, Some(&Timespec::default())) {
            Ok(0) | Err(_) => Vec::new(),
            Ok(_) => pids
                .into_iter()
                .zip(&fds)
                .filter(|(_, fd)| !fd.revents().is_empty())
                .map(|(pid, _)| pid)
                .collect(),
        }
    }

    /// Examines listed pids not yet known: members are followed from now on, others are
    /// remembered as foreign. Tree members are found through their parents, so a child listed
    /// before its new parent still joins.
    fn admit(&mut self, candidates: &[u32], now: Instant) {
        let mut pending: Vec<PidStat> = candidates
            .iter()
            .filter_map(|pid| {
                let path = self.proc_root.join(pid.to_string()).join("stat");
                procfs::parse_pid_stat(&procfs::read(&path).ok()?)
            })
            .collect();
        loop {
            let before = pending.len();
            let mut rest = Vec::with_capacity(pending.len());
            for stat in pending {
                if self.is_member(&stat) {
                    self.follow(stat, now);
                } else {
                    rest.push(stat);
                }
            }
            pending = rest;
            if pending.len() == before {
                break;
            }
        }
        for stat in pending {
            self.discovery.foreign(stat.pid);
        }
    }

    fn is_member(&self, stat: &PidStat) -> bool {
        match &self.discovery.members {
            Members::All | Members::Cgroup(_) => true,
            Members::Tree(root) => stat.pid == *root || self.followed.contains_key(&stat.ppid),
        }
    }

    /// Opens a member's pidfd and files and reads it.
    fn follow(&mut self, stat: PidStat, now: Instant) {
        let pid = stat.pid;
        let pidfd = match self.exits {
            ExitWatch::Reading => None,
            ExitWatch::Pidfd => {
                let target = ProcRef {
                    pid,
                    start_ticks: stat.start_ticks,
                    comm: stat.comm.clone(),
                };
                match target.open(&self.proc_root) {
                    Ok(fd) => Some(fd),
                    Err(ProcRefError::Gone(_) | ProcRefError::Reused { .. }) => return,
                    Err(ProcRefError::Io { source, .. }) => {
                        if matches!(
                            source.raw_os_error().map(Errno::from_raw_os_error),
                            Some(Errno::NOSYS | Errno::PERM | Errno::ACCESS)
                        ) {
                            log::debug!("no pidfds ({source}): exits are noticed by reading");
                            self.exits = ExitWatch::Reading;
                        } else {
                            self.lacks_descriptors(&source.to_string());
                            return;
                        }
                        None
                    }
                }
            }
        };
        match tracked::Tracked::open(&self.proc_root, stat, pidfd, now) {
            tracked::Opened::Tracked(process) => {
                self.followed.insert(pid, *process);
            }
            tracked::Opened::NotUser => self.discovery.foreign(pid),
            tracked::Opened::Gone => {}
            tracked::Opened::NoDescriptors(err) => self.lacks_descriptors(&err.to_string()),
        }
    }

    fn lacks_descriptors(&mut self, err: &str) {
        if !self.out_of_descriptors {
            self.out_of_descriptors = true;
            log::warn!(
                "some processes are not read ({err}): the /proc source keeps four files open \
                 per process; raise the open-files limit (ulimit -n)"
            );
        }
    }

    /// How many processes are followed.
    pub fn followed(&self) -> usize {
        self.followed.len()
    }
}
