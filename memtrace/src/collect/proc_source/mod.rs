//! The /proc source: what the sampler reads where eBPF cannot load (a default container, not
//! root), and the guard's per-process reads beside its rare-event programs. It follows only the
//! scope's processes ([`Members`]: a tree, a cgroup or everything) and knows of each the same
//! values the tracer gives: resident memory by kind (`RssAnon`, `RssFile`, `RssShmem`) and
//! `VmSwap` from `status`, the kernel's peak (`VmHWM`), faults (`stat` minflt + majflt),
//! identity; each reading also hands over the processes that exited since the previous one, with
//! their last values, and the OOM kills the scope's counter ([`OomSource`]) shows.
//!
//! What a reading costs is kept to what may have changed: each followed process holds its
//! pidfd and its `stat` and `status` open (closed when it exits); the pidfds sit in one epoll
//! set, so a reading learns which processes exited from one `epoll_wait`; new processes are
//! looked for only when a pid was handed out ([`members`]); and a process's `stat` is read as a
//! probe, `status` only when the probe's resident set, virtual size or fault count changed, an
//! idle one at least once a second ([`tracked`]). Faults are part of the probe so that peaks are
//! right: memory mapped, touched and unmapped between two samples leaves the resident set as it
//! was but not the fault count, and the `VmHWM` then read holds the peak the kernel recorded
//! before the unmap. Where pidfds are unavailable every followed process's `stat` is read every
//! sample instead. What it cannot see: a process born and gone between two samples, reclaim
//! stalls, and which process the kernel's OOM killer chose.
mod members;
mod oom;
mod tracked;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Instant,
};

pub use members::Members;
pub use oom::{OomSource, PROBABLE, UNKNOWN_VICTIM};
use rustix::{
    buffer::spare_capacity,
    event::{Timespec, epoll},
    io::Errno,
};
pub use tracked::Probe;

use crate::{
    collect::model::{OomKill, ProcSample},
    host::{
        clock,
        pidfd::{ProcRef, ProcRefError},
        privilege,
        procfs::{self, PidStat, ProcError},
    },
};

/// What changed since the previous reading (the live processes are [`ProcSource::live`]).
#[derive(Debug, Default)]
pub struct Reading {
    /// The processes that exited since the previous reading, with their last values.
    pub exited: Vec<ProcSample>,
    /// OOM kills counted since the previous reading.
    pub oom_kills: Vec<OomKill>,
}

/// What the source has read so far (for benchmarks and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Readings.
    pub readings: u64,
    /// Listings of the scope.
    pub listings: u64,
    /// `stat` reads whose resident set, virtual size and faults had not changed (nothing else
    /// read).
    pub unchanged: u64,
    /// Full reads (`stat` and `status`), new processes included.
    pub full: u64,
}

/// How exits are noticed.
#[derive(Debug)]
enum Exits {
    /// Every followed process's pidfd is in this epoll set, its pid as the data.
    Epoll(OwnedFd),
    /// By reading each process every sample (no pidfds here).
    Reading,
}

/// The /proc source.
#[derive(Debug)]
pub struct ProcSource {
    proc_root: PathBuf,
    discovery: members::Discovery,
    followed: HashMap<u32, tracked::Tracked>,
    exits: Exits,
    oom: Option<oom::OomCounter>,
    /// Processes left unread for want of file descriptors (said once).
    out_of_descriptors: bool,
    /// Read every followed process's `stat` at every reading (no idle backoff).
    every_sample: bool,
    /// What a read consults first.
    probe: Probe,
    counts: ReadCounts,
    /// The one buffer every followed process's files are read into.
    buf: Vec<u8>,
}

impl ProcSource {
    /// A source for `members` under `proc_root`, OOM kills counted from `oom`. Nothing is read
    /// before the first [`read`](Self::read).
    pub fn new(proc_root: &Path, members: Members, oom: OomSource) -> Self {
        // Three descriptors per followed process: its pidfd, `stat` and `status`.
        privilege::raise_nofile();
        let exits = match epoll::create(epoll::CreateFlags::CLOEXEC) {
            Ok(set) => Exits::Epoll(set),
            Err(errno) => {
                log::debug!("no epoll ({errno}): exits are noticed by reading");
                Exits::Reading
            }
        };
        Self {
            proc_root: proc_root.to_owned(),
            discovery: members::Discovery::new(proc_root, members),
            followed: HashMap::new(),
            exits,
            oom: oom::OomCounter::open(proc_root, &oom),
            out_of_descriptors: false,
            every_sample: false,
            probe: Probe::default(),
            counts: ReadCounts::default(),
            buf: Vec::new(),
        }
    }

    /// Reads every followed process's `stat` at every reading, idle ones included: for a
    /// caller that reads only when it needs fresh values (the guard, near pressure), where a
    /// process that wakes up must be seen growing at the next reading, not 1, 3, 7, … later.
    /// A cgroup scope is also listed at every reading, so that a process moved into it since
    /// the previous one is read now.
    pub fn every_sample(mut self) -> Self {
        self.every_sample = true;
        self.discovery.list_every_look();
        self
    }

    /// Probes each process with `statm` (its sizes) instead of `stat` (sizes and faults): a
    /// third of the cost per read, for a caller that uses no peak (the guard); a peak reached
    /// and let go between two reads is then not seen until the sizes change.
    pub fn sizes_only(mut self) -> Self {
        self.probe = Probe::Sizes;
        self
    }

    /// Counts no OOM kills: for a caller that learns of them from the kernel's own event
    /// (the guard's rare-event programs), which names the victim.
    pub fn without_oom_counter(mut self) -> Self {
        self.oom = None;
        self
    }

    /// Notices exits by reading every process every sample, as where pidfds are unavailable.
    pub fn without_pidfds(mut self) -> Self {
        self.exits = Exits::Reading;
        self
    }

    /// Reads the scope now.
    pub fn read(&mut self) -> Result<Reading, ProcError> {
        self.read_at(Instant::now())
    }

    /// Reads the scope as of `now`.
    pub fn read_at(&mut self, now: Instant) -> Result<Reading, ProcError> {
        self.counts.readings += 1;
        let mut gone = self.exited_by_pidfd();
        let followed = &self.followed;
        if let Some(listing) = self
            .discovery
            .look(now, |pid| followed.contains_key(&pid))?
        {
            if let Some(pids) = &listing.pids {
                self.counts.listings += 1;
                let unlisted: Vec<u32> = self
                    .followed
                    .keys()
                    .copied()
                    .filter(|pid| !pids.contains(pid) && !gone.contains(pid))
                    .collect();
                for pid in unlisted {
                    // Out of /proc: exited. Out of the cgroup but alive: it left the scope.
                    let exited = self.followed.get_mut(&pid).is_none_or(|t| {
                        t.refresh(&self.proc_root, now, &mut self.buf) == tracked::Refresh::Gone
                    });
                    if exited {
                        gone.push(pid);
                    } else {
                        self.followed.remove(&pid);
                    }
                }
            }
            self.admit(&listing.candidates, now);
        }
        let every_sample = self.every_sample || matches!(self.exits, Exits::Reading);
        for (pid, process) in &mut self.followed {
            if gone.contains(pid) || !process.due(now, every_sample) {
                continue;
            }
            match process.refresh(&self.proc_root, now, &mut self.buf) {
                tracked::Refresh::Unchanged => self.counts.unchanged += 1,
                tracked::Refresh::Changed => self.counts.full += 1,
                tracked::Refresh::Gone => gone.push(*pid),
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
            .map(|counter| counter.read(now, &exited, clock::unix_ms()))
            .unwrap_or_default();
        Ok(Reading { exited, oom_kills })
    }

    /// The live processes with their latest values (no rates: the sampler adds those).
    pub fn live(&self) -> impl Iterator<Item = &ProcSample> {
        self.followed.values().map(|t| &t.sample)
    }

    /// The followed processes whose pidfd says they exited.
    fn exited_by_pidfd(&self) -> Vec<u32> {
        let Exits::Epoll(set) = &self.exits else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            // A zero timeout: look, don't wait.
            match epoll::wait(set, spare_capacity(&mut events), Some(&Timespec::default())) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(_) => break,
            }
            gone.extend(
                events
                    .iter()
                    .filter_map(|event| u32::try_from(event.data.u64()).ok())
                    .filter(|pid| self.followed.contains_key(pid)),
            );
            if events.len() < events.capacity() {
                break;
            }
        }
        gone.sort_unstable();
        gone.dedup();
        gone
    }

    /// Examines listed pids not yet known: members are followed from now on, others are
    /// remembered as foreign. Tree members are found through their parents, so a child listed
    /// before its new parent still joins.
    fn admit(&mut self, candidates: &[u32], now: Instant) {
        // A pid handed out to a thread is reachable in /proc too: not a process.
        let mut pending: Vec<PidStat> = candidates
            .iter()
            .filter_map(|pid| {
                let path = self.proc_root.join(pid.to_string()).join("stat");
                procfs::parse_pid_stat(&procfs::read(&path).ok()?)
            })
            .filter(|stat| !stat.is_thread())
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
        let pidfd = match &self.exits {
            Exits::Reading => None,
            Exits::Epoll(set) => {
                let target = ProcRef {
                    pid,
                    start_ticks: stat.start_ticks,
                    comm: stat.comm.clone(),
                };
                let opened = target.open(&self.proc_root).and_then(|fd| {
                    epoll::add(
                        set,
                        &fd,
                        epoll::EventData::new_u64(u64::from(pid)),
                        epoll::EventFlags::IN,
                    )
                    .map(|()| fd)
                    .map_err(|errno| ProcRefError::Io {
                        pid,
                        source: errno.into(),
                    })
                });
                match opened {
                    Ok(fd) => Some(fd),
                    Err(ProcRefError::Gone(_) | ProcRefError::Reused { .. }) => return,
                    Err(ProcRefError::Io { source, .. }) => {
                        if matches!(
                            source.raw_os_error().map(Errno::from_raw_os_error),
                            Some(Errno::NOSYS | Errno::PERM | Errno::ACCESS)
                        ) {
                            log::debug!("no pidfds ({source}): exits are noticed by reading");
                            self.exits = Exits::Reading;
                        } else {
                            self.lacks_descriptors(&source.to_string());
                            return;
                        }
                        None
                    }
                }
            }
        };
        match tracked::Tracked::open(&self.proc_root, stat, pidfd, self.probe, now, &mut self.buf) {
            tracked::Opened::Tracked(process) => {
                self.counts.full += 1;
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
                "some processes are not read ({err}): the /proc source keeps three files open \
                 per process; raise the open-files limit (ulimit -n)"
            );
        }
    }

    /// How many processes are followed.
    pub fn followed(&self) -> usize {
        self.followed.len()
    }

    /// What it has read so far.
    pub fn counts(&self) -> ReadCounts {
        self.counts
    }
}
