//! The side of the sampler without per-event counting (the guard's, and `top`'s by default):
//! per-process memory from the /proc source's reads of the scope's processes, joined with what
//! the rare-event programs saw (reclaim stalls per process, kswapd wake-ups, the kernel's OOM
//! victims, and for `top` every exit with its memory: [`exit_memory`](super::exit_memory)). No
//! program runs on the page-fault path, and a reading costs what the /proc source's does: a
//! function of the number of processes, not of the fault rate. The caller decides when to read
//! (the guard: near pressure, else rarely; `top`: every interval).
//!
//! A process outside the scope that stalled in reclaim (sshd under global reclaim, while the
//! guard watches a cgroup) has a map entry but no reading: it is read from /proc then, so that
//! the guard still sees who stalled.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
};

use memtrace_common::{ProcEvent, event_kind};

use super::{Rates, SampleError, ebpf::comm_string, exit_memory::ExitMemory};
use crate::{
    collect::{
        model::{OomKill, ProcSample, TracerHealth},
        proc_source::ProcSource,
        tracer::{ProcCounters, Tracer},
    },
    host::{clock, procscan},
};

/// How many recent OOM victims are remembered to mark their exit.
const OOM_MEMORY: usize = 64;

/// The rare-event tracer and the /proc source it is joined with.
#[derive(Debug)]
pub(super) struct RareJoin {
    pub(super) tracer: Tracer,
    pub(super) procs: Box<ProcSource>,
    proc_root: PathBuf,
    /// OOM victims seen recently (their exit may come in a later snapshot), oldest first.
    oom_victims: VecDeque<u32>,
    /// Exits reported with their memory, where the tracer sends them (`top`); `None` for the
    /// guard, whose exit events only complete reclaim stalls.
    exits: Option<ExitMemory>,
}

impl RareJoin {
    pub(super) fn new(tracer: Tracer, procs: Box<ProcSource>, proc_root: &Path) -> Self {
        let exits = tracer.options().exit_memory.then(ExitMemory::default);
        Self {
            tracer,
            procs,
            proc_root: proc_root.to_owned(),
            oom_victims: VecDeque::with_capacity(OOM_MEMORY),
            exits,
        }
    }

    /// The scope's live processes (with rates) and those that exited since the previous
    /// reading, the OOM kills and the tracer's health.
    pub(super) fn collect(
        &mut self,
        rates: &mut Rates,
        now: f64,
        since: f64,
    ) -> Result<(Vec<ProcSample>, Vec<OomKill>, TracerHealth), SampleError> {
        let reading = self.procs.read()?;
        let counters = self.tracer.read_procs()?;
        let events = self.tracer.drain_events();
        let mut live: Vec<ProcSample> = self.procs.live().cloned().collect();
        let mut exited = reading.exited;
        let known: HashSet<u32> = live.iter().chain(exited.iter()).map(|p| p.pid).collect();
        live.extend(
            reclaimers_outside(&counters, &known)
                .filter_map(|pid| read_outsider(&self.proc_root, pid)),
        );
        if let Some(exits) = &mut self.exits {
            exits.join(&events, &live, &mut exited, self.tracer.members());
        }
        let oom_kills = join(
            &mut live,
            &mut exited,
            &counters,
            &events,
            &mut self.oom_victims,
            clock::unix_ms(),
        );
        for sample in &mut live {
            rates.apply(sample, now, since);
        }
        live.extend(exited);
        Ok((live, oom_kills, self.tracer.health()?))
    }
}

/// The processes with reclaim stalls in the map that the readings do not know (outside the
/// scope).
fn reclaimers_outside<'a>(
    counters: &'a [ProcCounters],
    known: &'a HashSet<u32>,
) -> impl Iterator<Item = u32> + 'a {
    counters
        .iter()
        .filter(|c| c.stats.reclaim_count > 0 && !known.contains(&c.pid))
        .map(|c| c.pid)
}

/// One process outside the scope, read from /proc (its reclaim stalls are joined later);
/// `None` if it is gone or a kernel thread.
fn read_outsider(proc_root: &Path, pid: u32) -> Option<ProcSample> {
    let found = procscan::scan_pid(proc_root, pid)?;
    let memory = &found.memory;
    Some(ProcSample {
        pid,
        ppid: found.stat.ppid,
        comm: found.stat.comm.into(),
        cmdline: found.cmdline.into(),
        start_ticks: found.stat.start_ticks,
        rss_bytes: memory.rss(),
        anon_bytes: memory.anon,
        file_bytes: memory.file,
        shmem_bytes: memory.shmem,
        swap_bytes: memory.swap,
        peak_rss_bytes: memory.hwm.max(memory.rss()),
        faults: found.stat.minflt + found.stat.majflt,
        ..ProcSample::default()
    })
}

/// Joins the programs' findings into the /proc source's samples: each process's reclaim stalls
/// (from its map entry, or for one that exited from its exit event, the entry being gone), and
/// the OOM victims, named by the kernel and marked on their samples. Returns the OOM kills.
fn join(
    live: &mut [ProcSample],
    exited: &mut [ProcSample],
    counters: &[ProcCounters],
    events: &[ProcEvent],
    oom_victims: &mut VecDeque<u32>,
    time_unix_ms: u64,
) -> Vec<OomKill> {
    // Only processes that went through reclaim have entries: usually none.
    let mut reclaim: HashMap<u32, (u64, u64)> = counters
        .iter()
        .map(|c| (c.pid, (c.stats.reclaim_count, c.stats.reclaim_ns)))
        .collect();
    for event in events.iter().filter(|e| e.kind == event_kind::EXIT) {
        let seen = reclaim.entry(event.pid).or_default();
        *seen = (
            seen.0.max(event.stats.reclaim_count),
            seen.1.max(event.stats.reclaim_ns),
        );
    }
    for sample in live.iter_mut().chain(exited.iter_mut()) {
        if let Some(&(count, ns)) = reclaim.get(&sample.pid) {
            sample.reclaim_count = count;
            sample.reclaim_stall_ns = ns;
        }
    }
    let mut oom_kills = Vec::new();
    for event in events.iter().filter(|e| e.kind == event_kind::OOM_VICTIM) {
        // Without the per-event counters the event's memory is empty: the last reading has it.
        let known = live
            .iter()
            .chain(exited.iter())
            .find(|sample| sample.pid == event.pid);
        let mut comm = comm_string(&event.comm);
        if comm.is_empty() {
            comm = known.map(|s| s.comm.to_string()).unwrap_or_default();
        }
        oom_kills.push(OomKill {
            pid: event.pid,
            comm,
            rss_bytes: known.map_or(0, |s| s.rss_bytes),
            time_unix_ms,
        });
        if oom_victims.len() == OOM_MEMORY {
            oom_victims.pop_front();
        }
        oom_victims.push_back(event.pid);
    }
    for sample in exited.iter_mut() {
        if let Some(at) = oom_victims.iter().position(|&pid| pid == sample.pid) {
            sample.oom_killed = true;
            oom_victims.remove(at);
        }
    }
    for sample in live.iter_mut() {
        sample.oom_killed = oom_victims.contains(&sample.pid);
    }
    oom_kills
}

#[cfg(test)]
mod tests {
    //! Reclaim stalls and OOM victims joined into /proc readings.
    use memtrace_common::{COMM_LEN, ProcStats};

    use super::*;

    fn sample(pid: u32, comm: &str, rss: u64) -> ProcSample {
        ProcSample {
            pid,
            comm: comm.into(),
            rss_bytes: rss,
            ..ProcSample::default()
        }
    }

    fn event(kind: u32, pid: u32, comm: &str, reclaim: (u64, u64)) -> ProcEvent {
        let mut raw = [0u8; COMM_LEN];
        raw[..comm.len()].copy_from_slice(comm.as_bytes());
        ProcEvent {
            kind,
            pid,
            ts_ns: 1,
            comm: raw,
            stats: ProcStats {
                reclaim_count: reclaim.0,
                reclaim_ns: reclaim.1,
                ..ProcStats::ZERO
            },
        }
    }

    #[test]
    fn reclaim_stalls_come_from_the_map_or_the_exit_event() {
        let mut live = vec![sample(10, "hog", 1 << 30), sample(11, "idle", 1 << 20)];
        let mut exited = vec![sample(12, "gone", 0)];
        let counters = [ProcCounters {
            pid: 10,
            stats: ProcStats {
                reclaim_count: 3,
                reclaim_ns: 9_000_000,
                ..ProcStats::ZERO
            },
        }];
        let events = [event(event_kind::EXIT, 12, "gone", (2, 5_000))];
        let kills = join(
            &mut live,
            &mut exited,
            &counters,
            &events,
            &mut VecDeque::new(),
            7,
        );
        assert!(kills.is_empty());
        assert_eq!(
            (live[0].reclaim_count, live[0].reclaim_stall_ns),
            (3, 9_000_000)
        );
        assert_eq!((live[1].reclaim_count, live[1].reclaim_stall_ns), (0, 0));
        assert_eq!(
            (exited[0].reclaim_count, exited[0].reclaim_stall_ns),
            (2, 5_000)
        );
    }

    #[test]
    fn reclaimers_outside_the_scope_are_read_from_proc() {
        let stalled = |pid, count| ProcCounters {
            pid,
            stats: ProcStats {
                reclaim_count: count,
                reclaim_ns: count * 1000,
                ..ProcStats::ZERO
            },
        };
        let counters = [stalled(10, 2), stalled(20, 1), stalled(30, 0)];
        let known: HashSet<u32> = [10].into();
        // 20 stalled outside the scope; 30 has an entry but never stalled.
        assert_eq!(
            reclaimers_outside(&counters, &known).collect::<Vec<_>>(),
            vec![20]
        );
        // This process, read as an outsider, then given its stalls.
        let me = std::process::id();
        let mut live = vec![read_outsider(Path::new("/proc"), me).expect("this process")];
        assert!(live[0].rss_bytes > 0 && live[0].start_ticks > 0);
        join(
            &mut live,
            &mut [],
            &[stalled(me, 4)],
            &[],
            &mut VecDeque::new(),
            1,
        );
        assert_eq!((live[0].reclaim_count, live[0].reclaim_stall_ns), (4, 4000));
    }

    #[test]
    fn the_kernels_oom_victim_is_named_with_its_last_reading() {
        let mut victims = VecDeque::new();
        // Chosen while still alive (older kernels send no comm).
        let mut live = vec![sample(10, "hog", 1 << 30), sample(11, "idle", 1 << 20)];
        let events = [event(event_kind::OOM_VICTIM, 10, "", (0, 0))];
        let kills = join(&mut live, &mut [], &[], &events, &mut victims, 7);
        assert_eq!(
            kills,
            vec![OomKill {
                pid: 10,
                comm: "hog".to_owned(),
                rss_bytes: 1 << 30,
                time_unix_ms: 7,
            }]
        );
        assert!(live[0].oom_killed && !live[1].oom_killed);
        // Its exit comes in the next reading: marked, then forgotten.
        let mut exited = vec![sample(10, "hog", 1 << 30)];
        let kills = join(&mut [], &mut exited, &[], &[], &mut victims, 8);
        assert!(kills.is_empty());
        assert!(exited[0].oom_killed);
        assert!(victims.is_empty());
    }
}
