//! The eBPF side of the sampler: the tracer's per-process counters and exit/OOM events, joined
//! with /proc for identity (comm, cmdline, ppid, start time).
//!
//! /proc is read per process only for `stat` (one small file; it also detects pid reuse through
//! the start time); command lines are cached per (pid, start time) and re-read when the comm
//! changes (exec).
use std::{
    collections::{HashMap, VecDeque},
    path::Path,
};

use memtrace_common::{ProcEvent, ProcStats, event_kind};

use super::{Rates, SampleError};
use crate::{
    collect::{
        model::{OomKill, ProcSample, TracerHealth},
        tracer::{ProcCounters, RssMembers, Tracer},
    },
    host::{clock, procfs, procscan},
};

/// Identity of a live process, from /proc.
#[derive(Clone, Debug)]
struct Ident {
    ppid: u32,
    comm: String,
    cmdline: String,
    start_ticks: u64,
    faults: u64,
    read_at: std::time::Instant,
}

/// How many recent OOM victims are remembered to mark their exit.
const OOM_MEMORY: usize = 64;

/// The tracer and what the sampler keeps to join its counters with /proc.
#[derive(Debug)]
pub(super) struct EbpfJoin {
    pub(super) tracer: Tracer,
    idents: HashMap<u32, Ident>,
    /// OOM victims seen recently (their exit may come in a later snapshot), oldest first.
    oom_victims: VecDeque<u32>,
    /// Reuse a process's /proc identity this long (None: re-read every sample).
    pub(super) ident_max_age: Option<std::time::Duration>,
}

/// Converts a NUL-padded kernel comm.
pub fn comm_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

impl EbpfJoin {
    /// Wraps a started tracer, seeding it with every process that exists now (the kernel side
    /// only sees changes).
    pub(super) fn new(mut tracer: Tracer, proc_root: &Path) -> Result<Self, SampleError> {
        let members = tracer.members();
        for proc in procscan::scan_all(proc_root)? {
            tracer.seed(proc.stat.pid, &seed_stats(&proc.memory, members))?;
        }
        Ok(Self {
            tracer,
            idents: HashMap::new(),
            oom_victims: VecDeque::with_capacity(OOM_MEMORY),
            ident_max_age: None,
        })
    }

    /// Every traced process plus the ones that exited since the previous snapshot, the OOM
    /// kills and the tracer's health.
    pub(super) fn collect(
        &mut self,
        rates: &mut Rates,
        proc_root: &Path,
        now: f64,
        since: f64,
    ) -> Result<(Vec<ProcSample>, Vec<OomKill>, TracerHealth), SampleError> {
        let members = self.tracer.members();
        let counters = self.tracer.read_procs()?;
        let events = self.tracer.drain_events();
        let mut procs = Vec::with_capacity(counters.len() + events.len());
        for counter in &counters {
            if let Some(sample) = self.live_sample(counter, members, proc_root, rates, now, since) {
                procs.push(sample);
            }
        }
        let mut oom_kills = Vec::new();
        for event in events.iter().filter(|e| e.kind == event_kind::OOM_VICTIM) {
            oom_kills.push(self.oom_kill(event, members));
            if self.oom_victims.len() == OOM_MEMORY {
                self.oom_victims.pop_front();
            }
            self.oom_victims.push_back(event.pid);
        }
        // An exit event carries its own CPU's cache; other CPUs may hold newer counters.
        let slots = self.tracer.rss_slots().unwrap_or_default();
        for event in events.iter().filter(|e| e.kind == event_kind::EXIT) {
            let mut merged = ProcCounters {
                pid: event.pid,
                stats: event.stats,
            };
            crate::collect::tracer::merge_slots(&mut merged, &slots);
            let event = ProcEvent {
                stats: merged.stats,
                ..*event
            };
            let mut sample = self.exit_sample(&event, members);
            if let Some(at) = self.oom_victims.iter().position(|&pid| pid == event.pid) {
                sample.oom_killed = true;
                self.oom_victims.remove(at);
            }
            procs.push(sample);
        }
        for sample in procs.iter_mut().filter(|p| !p.exited) {
            sample.oom_killed = self.oom_victims.contains(&sample.pid);
        }
        Ok((procs, oom_kills, self.tracer.health()?))
    }

    /// A live process's sample, or `None` if it vanished from /proc meanwhile (its exit event
    /// will report it).
    fn live_sample(
        &mut self,
        counter: &ProcCounters,
        members: RssMembers,
        proc_root: &Path,
        rates: &mut Rates,
        now: f64,
        since: f64,
    ) -> Option<ProcSample> {
        let ident = self.refresh_ident(proc_root, counter.pid)?;
        let fault_hook = self.tracer.options().fault_hook;
        let mut sample = sample_from_stats(counter.pid, &counter.stats, members);
        sample.ppid = ident.ppid;
        sample.comm = ident.comm.into();
        sample.cmdline = ident.cmdline.into();
        sample.start_ticks = ident.start_ticks;
        if !fault_hook {
            sample.faults = ident.faults;
        }
        rates.apply(&mut sample, now, since);
        Some(sample)
    }

    /// Re-reads `/proc/PID/stat`; re-reads the command line when the process is new or its comm
    /// changed.
    fn refresh_ident(&mut self, proc_root: &Path, pid: u32) -> Option<Ident> {
        if let (Some(max_age), Some(cached)) = (self.ident_max_age, self.idents.get(&pid))
            && cached.read_at.elapsed() < max_age
        {
            return Some(cached.clone());
        }
        let dir = proc_root.join(pid.to_string());
        let stat = procfs::parse_pid_stat(&procfs::read(&dir.join("stat")).ok()?)?;
        let cached = self
            .idents
            .get(&pid)
            .filter(|old| old.start_ticks == stat.start_ticks && old.comm == stat.comm);
        let cmdline = match cached {
            Some(old) => old.cmdline.clone(),
            None => std::fs::read(dir.join("cmdline"))
                .map(|raw| procfs::parse_cmdline(&raw))
                .unwrap_or_default(),
        };
        let ident = Ident {
            ppid: stat.ppid,
            comm: stat.comm,
            cmdline,
            start_ticks: stat.start_ticks,
            faults: stat.minflt + stat.majflt,
            read_at: std::time::Instant::now(),
        };
        self.idents.insert(pid, ident.clone());
        Some(ident)
    }

    fn exit_sample(&mut self, event: &ProcEvent, members: RssMembers) -> ProcSample {
        let mut sample = sample_from_stats(event.pid, &event.stats, members);
        sample.comm = comm_string(&event.comm).into();
        if let Some(ident) = self.idents.remove(&event.pid) {
            sample.ppid = ident.ppid;
            sample.cmdline = ident.cmdline.into();
            sample.start_ticks = ident.start_ticks;
        }
        sample.exited = true;
        sample
    }

    fn oom_kill(&self, event: &ProcEvent, members: RssMembers) -> OomKill {
        let mut comm = comm_string(&event.comm);
        if comm.is_empty() {
            comm = self
                .idents
                .get(&event.pid)
                .map(|ident| ident.comm.clone())
                .unwrap_or_default();
        }
        OomKill {
            pid: event.pid,
            comm,
            rss_bytes: sample_from_stats(event.pid, &event.stats, members).rss_bytes,
            time_unix_ms: clock::unix_ms(),
        }
    }
}

/// The model's view of kernel counters.
pub fn sample_from_stats(pid: u32, stats: &ProcStats, members: RssMembers) -> ProcSample {
    let kind = |index: usize| stats.rss_bytes.get(index).copied().unwrap_or(0);
    let (anon, file, shmem, swap) = (
        kind(members.anon),
        kind(members.file),
        kind(members.shmem),
        kind(members.swap),
    );
    let rss = anon + file + shmem;
    ProcSample {
        pid,
        rss_bytes: rss,
        anon_bytes: anon,
        file_bytes: file,
        shmem_bytes: shmem,
        swap_bytes: swap,
        peak_rss_bytes: stats.peak_rss_bytes.max(rss),
        faults: stats.faults,
        reclaim_count: stats.reclaim_count,
        reclaim_stall_ns: stats.reclaim_ns,
        ..ProcSample::default()
    }
}

/// Kernel-side counters for a process found in /proc before the tracer started.
pub fn seed_stats(memory: &procfs::PidMemory, members: RssMembers) -> ProcStats {
    let mut stats = ProcStats::ZERO;
    for (index, value) in [
        (members.anon, memory.anon),
        (members.file, memory.file),
        (members.shmem, memory.shmem),
        (members.swap, memory.swap),
    ] {
        if let Some(slot) = stats.rss_bytes.get_mut(index) {
            *slot = value;
        }
    }
    stats.peak_rss_bytes = memory.hwm.max(memory.rss());
    stats
}

#[cfg(test)]
mod tests {
    //! Mapping kernel counter numbering to the model, and seeding from /proc.
    use super::*;

    const MEMBERS: RssMembers = RssMembers {
        file: 0,
        anon: 1,
        swap: 2,
        shmem: 3,
    };

    #[test]
    fn kinds_follow_kernel_numbering() {
        let stats = ProcStats {
            rss_bytes: [10, 20, 40, 30],
            peak_rss_bytes: 5,
            faults: 7,
            reclaim_count: 1,
            reclaim_ns: 99,
            stamp: 0,
        };
        let sample = sample_from_stats(3, &stats, MEMBERS);
        assert_eq!(
            (
                sample.file_bytes,
                sample.anon_bytes,
                sample.swap_bytes,
                sample.shmem_bytes
            ),
            (10, 20, 40, 30)
        );
        assert_eq!(sample.rss_bytes, 60, "swap is not resident");
        assert_eq!(sample.peak_rss_bytes, 60, "peak never below current");
        assert_eq!((sample.faults, sample.reclaim_stall_ns), (7, 99));
    }

    #[test]
    fn seeding_round_trips() {
        let memory = procfs::PidMemory {
            anon: 1,
            file: 2,
            shmem: 3,
            swap: 4,
            hwm: 100,
        };
        let stats = seed_stats(&memory, MEMBERS);
        let sample = sample_from_stats(1, &stats, MEMBERS);
        assert_eq!(
            (sample.anon_bytes, sample.file_bytes, sample.shmem_bytes),
            (1, 2, 3)
        );
        assert_eq!(sample.swap_bytes, 4);
        assert_eq!(sample.peak_rss_bytes, 100);
    }

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm_string(b"bash\0\0\0"), "bash");
        assert_eq!(comm_string(b"0123456789abcdef"), "0123456789abcdef");
    }
}
