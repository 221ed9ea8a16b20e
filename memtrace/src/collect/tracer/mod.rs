//! Loads and attaches the kernel programs (aya), in process or in a short-lived [`helper`]
//! process (the guard: see [`Load`]), and reads what they aggregated: per-process counters,
//! pending fault batches, health counters and ring-buffer events. Dropping the [`Tracer`]
//! detaches every program (it closes the links), on any exit path.
mod batch;
pub mod helper;
pub mod layout;
mod link;
mod maps;
pub mod pipes;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, RingBuf},
    programs::{BtfTracePoint, ProgramError},
};
pub use helper::HelperFailure;
pub use layout::RssMembers;
use memtrace_common::{
    FaultSlot, PIPE_WRITES_RINGBUF_BYTES, PIPE_WRITES_RINGBUF_MIN, ProcEvent, ProcStats, RssSlot,
    layout_flags, stat,
};
pub use pipes::PipeWrites;

use crate::{
    collect::model::TracerHealth,
    host::{btf, privilege, tracefs},
};

/// `BPF_NOEXIST` from the kernel UAPI: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

/// The eBPF object built by `memtrace/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memtrace"));

/// Why the tracer could not start or read its maps.
#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    /// Not root (or without CAP_BPF + CAP_PERFMON).
    #[error(transparent)]
    Privilege(#[from] privilege::PrivilegeError),
    /// BTF missing or lacking what the programs need.
    #[error("kernel BTF: {0}")]
    Btf(#[from] btf::BtfError),
    /// The kernel lacks tracepoints the programs attach to.
    #[error("this kernel lacks the tracepoints {0} (memtrace needs kernel 5.10+ with BTF)")]
    MissingTracepoints(String),
    /// aya failed to load the object.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The verifier or the attach step refused a program.
    #[error("eBPF program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Cause.
        source: ProgramError,
    },
    /// A map was missing or unreadable.
    #[error("eBPF map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        source: aya::maps::MapError,
    },
    /// The loader helper ([`Load::Helper`]) failed, or reported this failure.
    #[error("{message}")]
    Helper {
        /// What kind of failure, for the reason eBPF is off.
        kind: HelperFailure,
        /// Its text.
        message: String,
    },
}

/// What to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracerOptions {
    /// Also attach the per-fault counter (`page_fault_user`). Off by default: the kernel already
    /// counts faults per task, so live processes' counts come from /proc and exited ones' from
    /// the exit event, at no per-fault cost. The hook exists for comparison (`bench overhead`).
    /// Ignored with [`Programs::RareEvents`].
    pub fault_hook: bool,
    /// Also attach the pipe-write program (`run`/`record` with `--stage-regex`): writes to the
    /// output pipes later named with [`PipeWrites::watch`] are reported with the writer's
    /// counters, for exact stdout marks. Where this kernel has no attachable pipe write, the
    /// tracer starts without it (one warning) and marks fall back to read time.
    pub pipe_writes: bool,
    /// Which set of programs runs.
    pub programs: Programs,
    /// With [`Programs::RareEvents`]: every exiting process reports its memory (its counters
    /// and the kernel's high-water mark, read from its mm), so a process born and gone between
    /// two samples is still seen, with its peak (`top`). Only where `sched_process_exit` runs
    /// before the task lets go of its mm (kernel ≥ 6.16); elsewhere it stays off, and
    /// [`Tracer::options`] says so.
    pub exit_memory: bool,
    /// Which process loads them.
    pub load: Load,
}

/// Which process parses the kernel's BTF and loads the programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Load {
    /// This one (`top`, `run`, `record`): simplest, but the BTF parses stay in its peak RSS.
    #[default]
    InProcess,
    /// A short-lived helper that hands the descriptors over and exits ([`helper`]): the guard,
    /// whose peak RSS (all of it mlocked) stays that of its own work. Not for the pipe-write
    /// programs.
    Helper,
}

/// Which programs the tracer attaches: the choice between counting every change in the kernel
/// and running nothing on the page-fault path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Programs {
    /// Every program, `rss_stat` included: the kernel keeps each process's counters at every
    /// change of its resident memory (one program run per counter change, ~40 ns), with the
    /// time of each change (`run`, `record`, `top --per-event`).
    #[default]
    PerEvent,
    /// Only the programs of rare events — reclaim begin/end, kswapd wake-ups, process exit and
    /// OOM victim ([`layout::RARE_EVENTS`]) — and nothing on the page-fault path; per-process
    /// memory is read from /proc instead (the guard, and `top` by default, which also asks for
    /// [`TracerOptions::exit_memory`]).
    RareEvents,
}

impl Programs {
    /// Whether `program` (a name of [`layout::TRACEPOINTS`]) is attached in this set.
    pub fn attaches(self, program: &str, fault_hook: bool) -> bool {
        match self {
            Self::PerEvent => program != "page_fault_user" || fault_hook,
            Self::RareEvents => layout::RARE_EVENTS.contains(&program),
        }
    }
}

/// One process's counters as read from the maps, pending fault batches included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcCounters {
    /// tgid.
    pub pid: u32,
    /// The kernel-side counters.
    pub stats: ProcStats,
}

/// The attached programs and their maps.
pub struct Tracer {
    maps: maps::TracerMaps,
    /// Each program's descriptor and link: closing the links detaches the programs.
    attached: Vec<link::Attached>,
    members: RssMembers,
    options: TracerOptions,
    /// Boxed: taken out once by `run`/`record`, absent for everyone else.
    pipe_writes: Option<Box<PipeWrites>>,
    /// Set once the kernel refused a batch lookup: the maps are then read entry by entry.
    no_batch: AtomicBool,
    /// System calls of the last read of the process map.
    read_calls: AtomicUsize,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("members", &self.members)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// Checks privileges, reads BTF, loads and attaches the programs, in the process
    /// `options.load` names.
    pub fn start(options: TracerOptions) -> Result<Self, TracerError> {
        privilege::require_root("load eBPF programs")?;
        privilege::raise_memlock();
        if options.load == Load::Helper {
            return helper::start(options);
        }
        let own_btf = btf::Btf::from_sys_fs()?;
        let missing = layout::missing_tracepoints(&own_btf)?;
        if !missing.is_empty() {
            return Err(TracerError::MissingTracepoints(missing.join(", ")));
        }
        let members = layout::rss_members(&own_btf)?;
        let mut kernel_layout = layout::kernel_layout(&own_btf, privilege::page_size())?;
        let exit_memory = options.exit_memory
            && options.programs == Programs::RareEvents
            && kernel_layout.flags & layout_flags::EXIT_HAS_GROUP_DEAD != 0;
        if exit_memory {
            kernel_layout.flags |= layout_flags::EXIT_MEMORY;
        }
        let pipe_layout = if options.pipe_writes {
            match pipe_layout_for(&own_btf) {
                Ok(pipe_layout) => Some(pipe_layout),
                Err(err) => {
                    log::warn!("{err}: stdout marks are taken when memtrace reads them");
                    None
                }
            }
        } else {
            None
        };
        drop(own_btf);

        // One parse of the kernel's BTF at a time: the loader's own (EbpfLoader::new parses it),
        // dropped with the loader, then aya's attach step's.
        let mut loader = EbpfLoader::new();
        loader.override_global("LAYOUT", &kernel_layout, true);
        loader.map_max_entries(
            "PIPE_WRITES",
            match pipe_layout {
                Some(_) => PIPE_WRITES_RINGBUF_BYTES,
                None => PIPE_WRITES_RINGBUF_MIN,
            },
        );
        if let Some(pipe_layout) = &pipe_layout {
            loader.override_global("PIPE_LAYOUT", pipe_layout, true);
        }
        let mut ebpf = loader.load(OBJECT)?;
        drop(loader);
        let aya_btf = Btf::from_sys_fs()
            .map_err(|err| btf::BtfError::Missing(format!("loadable vmlinux BTF ({err})")))?;
        let mut attached = Vec::new();
        for (name, tracepoint) in layout::TRACEPOINTS {
            if options.programs.attaches(name, options.fault_hook) {
                attached.push(attach(&mut ebpf, name, tracepoint, &aya_btf)?);
            }
        }
        let maps = maps::TracerMaps::take(&mut ebpf)?;
        let pipe_writes = match pipe_layout {
            Some(_) => match attach_pipe_writes(&mut ebpf, &aya_btf, &mut attached) {
                Ok(writes) => Some(Box::new(writes)),
                Err(err) => {
                    log::warn!("{err}: stdout marks are taken when memtrace reads them");
                    None
                }
            },
            None => None,
        };
        drop(aya_btf);
        // Only once the programs run: where they cannot, the /proc source needs no tracefs.
        if let Err(err) = tracefs::ensure_mounted() {
            // memtrace attaches BTF tracepoints only, so it works without tracefs; say so once.
            log::warn!("{err}; memtrace does not need it, but bpftrace and perf do");
        }
        // Parsing vmlinux BTF twice (ours and aya's) peaks at tens of MiB of heap; give it back.
        // SAFETY: glibc's malloc_trim only returns free heap pages to the kernel, under the
        // allocator's own locks; no live allocation is touched. rustix has no allocator calls.
        unsafe { libc::malloc_trim(0) };
        // The rest of the object (its program descriptors, maps no one reads here) is closed
        // with `ebpf`: the links hold the programs, and the programs the maps they use.
        let options = TracerOptions {
            exit_memory,
            ..options
        };
        let mut tracer = Self::from_parts(maps, attached, members, options);
        tracer.pipe_writes = pipe_writes;
        Ok(tracer)
    }

    /// A tracer over attached programs and their maps.
    fn from_parts(
        maps: maps::TracerMaps,
        attached: Vec<link::Attached>,
        members: RssMembers,
        options: TracerOptions,
    ) -> Self {
        Self {
            maps,
            attached,
            members,
            options,
            pipe_writes: None,
            no_batch: AtomicBool::new(false),
            read_calls: AtomicUsize::new(0),
        }
    }

    /// The pipe-write program's maps, once (`None` when it is not attached).
    pub fn take_pipe_writes(&mut self) -> Option<PipeWrites> {
        self.pipe_writes.take().map(|writes| *writes)
    }

    /// The kernel's numbering of the rss counters.
    pub fn members(&self) -> RssMembers {
        self.members
    }

    /// What was attached.
    pub fn options(&self) -> TracerOptions {
        self.options
    }

    /// The names of the attached programs, in attach order.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|attached| attached.name.as_str())
    }

    /// Seeds entries for processes that existed before the tracer (the kernel only reports
    /// changes). Entries the programs already created are left alone.
    pub fn seed(&mut self, pid: u32, stats: &ProcStats) -> Result<(), TracerError> {
        match self.maps.procs.insert(pid, stats, BPF_NOEXIST) {
            Ok(()) => Ok(()),
            // EEXIST: the kernel side got there first; ENOMEM/E2BIG: map full, counted by the
            // kernel side on its next attempt.
            Err(_) => Ok(()),
        }
    }

    /// Every process's counters, with this CPU-batched faults added.
    pub fn read_procs(&self) -> Result<Vec<ProcCounters>, TracerError> {
        let mut out = self.read_entries()?;
        let slots = self.rss_slots()?;
        for entry in &mut out {
            merge_slots(entry, &slots);
        }
        if self
            .options
            .programs
            .attaches("page_fault_user", self.options.fault_hook)
        {
            for slot in self.fault_slots()? {
                if slot.pending == 0 {
                    continue;
                }
                if let Some(entry) = out.iter_mut().find(|c| c.pid == slot.tgid) {
                    entry.stats.faults += slot.pending;
                }
            }
        }
        Ok(out)
    }

    /// The process map's entries, read in batches (a few system calls, [`batch`]) where the
    /// kernel can, else one by one.
    fn read_entries(&self) -> Result<Vec<ProcCounters>, TracerError> {
        if !self.no_batch.load(Ordering::Relaxed) {
            let (mut pids, mut stats) = (Vec::new(), Vec::new());
            match batch::lookup_all(&self.maps.procs, &mut pids, &mut stats) {
                Ok(calls) => {
                    self.read_calls.store(calls, Ordering::Relaxed);
                    return Ok(pids
                        .into_iter()
                        .zip(stats)
                        .map(|(pid, stats)| ProcCounters { pid, stats })
                        .collect());
                }
                Err(err @ batch::BatchError::Unsupported(_)) => {
                    log::debug!("{err}: reading the process map entry by entry");
                    self.no_batch.store(true, Ordering::Relaxed);
                }
                Err(batch::BatchError::Io(io_error)) => {
                    return Err(TracerError::Map {
                        name: "PROCS",
                        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                            call: "bpf_map_lookup_batch",
                            io_error,
                        }),
                    });
                }
            }
        }
        self.read_entries_one_by_one()
    }

    /// The process map's entries read one by one with aya's iterator (`get_next_key`, then a
    /// lookup: two system calls per entry): the way where the kernel has no batch lookup, and
    /// what tests compare the batches with.
    pub fn read_entries_one_by_one(&self) -> Result<Vec<ProcCounters>, TracerError> {
        let mut out = Vec::with_capacity(512);
        for item in self.maps.procs.iter() {
            // An entry removed between get_next_key and lookup is simply skipped.
            let Ok((pid, stats)) = item else { continue };
            out.push(ProcCounters { pid, stats });
        }
        self.read_calls.store(2 * out.len() + 1, Ordering::Relaxed);
        Ok(out)
    }

    /// The system calls the last read of the process map made (for tests and benches).
    pub fn last_read_calls(&self) -> usize {
        self.read_calls.load(Ordering::Relaxed)
    }

    /// The per-CPU caches of resident counters (see `RssSlot`).
    pub fn rss_slots(&self) -> Result<Vec<RssSlot>, TracerError> {
        per_cpu(&self.maps.rss_slots, "RSS_SLOTS", 0)
    }

    /// The per-CPU fault batches.
    pub fn fault_slots(&self) -> Result<Vec<FaultSlot>, TracerError> {
        per_cpu(&self.maps.fault_slots, "FAULT_SLOTS", 0)
    }

    /// The tracer's own health counters, summed over CPUs.
    pub fn health(&self) -> Result<TracerHealth, TracerError> {
        let sum = |index: u32| -> Result<u64, TracerError> {
            Ok(per_cpu(&self.maps.stats, "STATS", index)?.iter().sum())
        };
        Ok(TracerHealth {
            kswapd_wakeups: sum(stat::KSWAPD_WAKEUPS)?,
            map_full: sum(stat::MAP_FULL)?,
            ringbuf_drops: sum(stat::RINGBUF_DROPS)?,
            no_owner: sum(stat::NO_OWNER)?,
            reclaim_unmatched: sum(stat::RECLAIM_UNMATCHED)?,
        })
    }

    /// Takes every event waiting in the ring buffer.
    pub fn drain_events(&mut self) -> Vec<ProcEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.maps.events.next() {
            if item.len() < std::mem::size_of::<ProcEvent>() {
                continue;
            }
            // SAFETY: item holds at least size_of::<ProcEvent>() readable bytes (checked above),
            // the kernel side writes exactly one ProcEvent per record, and ProcEvent is repr(C)
            // integers and byte arrays, valid for any bit pattern; read_unaligned copes with the
            // record's alignment.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ProcEvent>()) };
            events.push(event);
        }
        events
    }
}

/// Every CPU's value of slot `index` of the per-CPU array `array` (named `name`).
fn per_cpu<T: aya::Pod>(
    array: &aya::maps::PerCpuArray<MapData, T>,
    name: &'static str,
    index: u32,
) -> Result<Vec<T>, TracerError> {
    let values = array
        .get(&index, 0)
        .map_err(|source| TracerError::Map { name, source })?;
    Ok(values.iter().copied().collect())
}

/// Folds the per-CPU caches of `entry`'s process into it, by [`ProcStats::merge_newer`].
pub fn merge_slots(entry: &mut ProcCounters, slots: &[RssSlot]) {
    for slot in slots.iter().filter(|s| s.tgid == entry.pid) {
        entry.stats.merge_newer(&slot.stats);
    }
}

fn missing_map(name: &'static str) -> TracerError {
    TracerError::Map {
        name,
        source: aya::maps::MapError::InvalidName {
            name: name.to_owned(),
        },
    }
}

fn take_ring(ebpf: &mut Ebpf, name: &'static str) -> Result<RingBuf<MapData>, TracerError> {
    let map = ebpf.take_map(name).ok_or(missing_map(name))?;
    RingBuf::try_from(map).map_err(|source| TracerError::Map { name, source })
}

/// The pipe-write programs' layout, where this kernel has their tracepoints.
fn pipe_layout_for(btf: &btf::Btf) -> Result<memtrace_common::PipeLayout, TracerError> {
    let mut missing = Vec::new();
    for (_, tracepoint) in layout::PIPE_TRACEPOINTS {
        if btf.tracepoint_args(tracepoint)?.is_none() {
            missing.push(*tracepoint);
        }
    }
    if !missing.is_empty() {
        return Err(TracerError::MissingTracepoints(missing.join(", ")));
    }
    Ok(layout::pipe_layout(btf)?)
}

/// Loads and attaches the pipe-write programs (added to `attached`) and takes their maps.
fn attach_pipe_writes(
    ebpf: &mut Ebpf,
    btf: &Btf,
    attached: &mut Vec<link::Attached>,
) -> Result<PipeWrites, TracerError> {
    for (name, tracepoint) in layout::PIPE_TRACEPOINTS {
        attached.push(attach(ebpf, name, tracepoint, btf)?);
    }
    let ring = take_ring(ebpf, "PIPE_WRITES")?;
    let map = |name: &'static str, ebpf: &mut Ebpf| ebpf.take_map(name).ok_or(missing_map(name));
    let pipes = Array::try_from(map("PIPES", ebpf)?).map_err(|source| TracerError::Map {
        name: "PIPES",
        source,
    })?;
    let writers = HashMap::try_from(map("WRITERS", ebpf)?).map_err(|source| TracerError::Map {
        name: "WRITERS",
        source,
    })?;
    Ok(PipeWrites::new(ring, pipes, writers))
}

fn attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
    btf: &Btf,
) -> Result<link::Attached, TracerError> {
    let wrap = |source| TracerError::Program { name, source };
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or(TracerError::Program {
            name,
            source: ProgramError::UnexpectedProgramType,
        })?
        .try_into()
        .map_err(wrap)?;
    program.load(tracepoint, btf).map_err(wrap)?;
    link::attach(name, program).map_err(wrap)
}

#[cfg(test)]
mod tests {
    //! Merging per-CPU caches into an entry: only the process's own slots count (the rule
    //! itself, newest counters and highest peak, is tested in memtrace-common). Which programs
    //! each set attaches.
    use super::*;

    #[test]
    fn the_rare_event_set_attaches_nothing_on_the_fault_path() {
        let attached = |programs: Programs, fault_hook| -> Vec<&str> {
            layout::TRACEPOINTS
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| programs.attaches(name, fault_hook))
                .collect()
        };
        for fault_hook in [false, true] {
            let rare = attached(Programs::RareEvents, fault_hook);
            assert!(!rare.contains(&"rss_stat"), "{rare:?}");
            assert!(!rare.contains(&"page_fault_user"), "{rare:?}");
            for name in [
                "direct_reclaim_begin",
                "direct_reclaim_end",
                "memcg_reclaim_begin",
                "memcg_reclaim_end",
                "wakeup_kswapd",
                "sched_process_exit",
                "mark_victim",
            ] {
                assert!(rare.contains(&name), "{name} missing from {rare:?}");
            }
        }
        let per_event = attached(Programs::PerEvent, false);
        assert!(per_event.contains(&"rss_stat"));
        assert!(!per_event.contains(&"page_fault_user"));
        assert_eq!(
            attached(Programs::PerEvent, true).len(),
            layout::TRACEPOINTS.len()
        );
        assert_eq!(Programs::default(), Programs::PerEvent, "top, run, record");
    }

    fn stats(anon: u64, stamp: u64) -> ProcStats {
        ProcStats {
            rss_bytes: [0, anon, 0, 0],
            peak_rss_bytes: anon,
            stamp,
            ..ProcStats::ZERO
        }
    }

    #[test]
    fn only_the_processs_own_slots_are_merged() {
        let mut entry = ProcCounters {
            pid: 7,
            stats: stats(10, 100),
        };
        let slot = |tgid, anon, stamp| RssSlot {
            tgid,
            _pad: 0,
            stats: stats(anon, stamp),
        };
        merge_slots(
            &mut entry,
            &[slot(8, 99, 200), slot(7, 30, 105), slot(7, 20, 103)],
        );
        assert_eq!(entry.stats.rss_bytes[1], 30, "the newest of pid 7's copies");
        assert_eq!(entry.stats.stamp, 105);
        assert_eq!(entry.stats.peak_rss_bytes, 30, "pid 8's peak is not ours");
    }
}
