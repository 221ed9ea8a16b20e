//! The maps every program shares, the layout global, and small helpers over them.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use memtrace_common::{
    FaultSlot, KernelLayout, MAX_PROCS, MAX_RECLAIMING_THREADS, MAX_WATCHED_PIPES, MAX_WRITERS,
    NR_RSS, PIPE_WRITES_RINGBUF_BYTES, PipeLayout, ProcStats, RINGBUF_BYTES, RssSlot, WatchedPipe,
    layout_flags,
};

/// Per-process counters, keyed by tgid.
#[map]
pub static PROCS: HashMap<u32, ProcStats> = HashMap::with_max_entries(MAX_PROCS, 0);

/// Per-CPU cache of the last process's resident counters, see [`RssSlot`].
#[map]
pub static RSS_SLOTS: PerCpuArray<RssSlot> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU fault batch (one slot per CPU), see [`FaultSlot`].
#[map]
pub static FAULT_SLOTS: PerCpuArray<FaultSlot> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU health counters, indexed by `memtrace_common::stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(memtrace_common::stat::COUNT, 0);

/// Start time (ns) of the direct reclaim a thread is in, keyed by thread id.
#[map]
pub static RECLAIM_START: HashMap<u32, u64> = HashMap::with_max_entries(MAX_RECLAIMING_THREADS, 0);

/// Rare events to userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);

/// The output pipes whose writes are reported, set by userspace (`run`/`record`).
#[map]
pub static PIPES: Array<WatchedPipe> = Array::with_max_entries(MAX_WATCHED_PIPES, 0);

/// The processes whose writes are looked at (the traced tree: userspace puts memtrace itself
/// here before it starts the command, and forks inherit it), keyed by tgid.
#[map]
pub static WRITERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(MAX_WRITERS, 0);

/// Writes to those pipes, to userspace (sized by userspace at load).
#[map]
pub static PIPE_WRITES: RingBuf = RingBuf::with_byte_size(PIPE_WRITES_RINGBUF_BYTES, 0);

/// Structure offsets of the pipe-write program, written by userspace before load.
#[unsafe(no_mangle)]
static PIPE_LAYOUT: PipeLayout = PipeLayout::UNSET;

/// The pipe layout userspace set for this kernel.
#[inline(always)]
pub fn pipe_layout() -> PipeLayout {
    // SAFETY: as for `layout()`.
    unsafe { core::ptr::read_volatile(&raw const PIPE_LAYOUT) }
}

/// Kernel structure offsets, written by userspace before load (read-only afterwards).
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::UNSET;

/// The layout userspace set for this kernel.
#[inline(always)]
pub fn layout() -> KernelLayout {
    // SAFETY: LAYOUT is a plain static; the volatile read stops the compiler from folding the
    // placeholder value, since userspace rewrites it in .rodata before load.
    unsafe { core::ptr::read_volatile(&raw const LAYOUT) }
}

/// Adds one to health counter `index` on this CPU.
#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; programs don't preempt each
        // other on one CPU for the same slot in a way that matters for a statistics counter.
        unsafe { *slot += 1 };
    }
}

/// The entry of process `tgid`, created (zeroed) if absent. `None` (and counted) when full.
#[inline(always)]
pub fn proc_entry(tgid: u32) -> Option<*mut ProcStats> {
    if let Some(entry) = PROCS.get_ptr_mut(tgid) {
        return Some(entry);
    }
    // Another CPU may insert the same key meanwhile: EEXIST is fine, the lookup below finds it.
    let _ = PROCS.insert(tgid, ProcStats::ZERO, u64::from(BPF_NOEXIST));
    let entry = PROCS.get_ptr_mut(tgid);
    if entry.is_none() {
        bump(memtrace_common::stat::MAP_FULL);
    }
    entry
}

/// Adds `value` to the counter at `target` with one atomic instruction.
///
/// # Safety
/// `target` must point into a live map value.
#[inline(always)]
pub unsafe fn atomic_add(target: *mut u64, value: u64) {
    // SAFETY: the caller guarantees a valid, aligned map-value pointer. `AtomicU64::fetch_add`
    // is not offered for the BPF target, but the instruction (BPF_ATOMIC | BPF_ADD) exists.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            target, value,
        )
    };
}

/// Folds this CPU's pending fault batch into its process's entry and empties the slot.
///
/// # Safety
/// `slot` must be this CPU's `FAULT_SLOTS` value.
#[inline(always)]
pub unsafe fn flush_fault_slot(slot: *mut FaultSlot) {
    // SAFETY: guaranteed by the caller.
    let (tgid, pending) = unsafe { ((*slot).tgid, (*slot).pending) };
    if pending != 0 {
        // No entry is created here: a process that has already exited must not come back.
        if let Some(entry) = PROCS.get_ptr_mut(tgid) {
            // SAFETY: entry points into a live PROCS value.
            unsafe { atomic_add(&raw mut (*entry).faults, pending) };
        }
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*slot).tgid = 0;
        (*slot).pending = 0;
    }
}

/// Reads a `T` at `base + offset` with a plain load.
///
/// # Safety
/// `base` must be a BTF-typed kernel pointer given to a BTF program and `offset` a constant
/// from the frozen layout, so that the verifier checks the access and makes it fault-tolerant.
#[inline(always)]
pub unsafe fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: guaranteed by the caller (see above).
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>()) }
}

/// Writes a slot's resident counters back into its process's entry, if the entry still exists
/// (an exited process must not come back) and is older; then empties the slot.
///
/// # Safety
/// `slot` must be this CPU's `RSS_SLOTS` value.
#[inline(always)]
pub unsafe fn flush_rss_slot(slot: *mut RssSlot) {
    // SAFETY: guaranteed by the caller.
    let (tgid, stats) = unsafe { ((*slot).tgid, (*slot).stats) };
    if tgid != 0
        && let Some(entry) = PROCS.get_ptr_mut(tgid)
    {
        // SAFETY: entry points into a live PROCS value; plain stores of values that were true
        // at `stats.stamp`.
        unsafe { (*entry).merge_newer(&stats) };
    }
    // SAFETY: guaranteed by the caller.
    unsafe { (*slot).tgid = 0 };
}

/// A copy of process `tgid`'s entry with this CPU's newer resident counters folded in; the slot
/// is emptied when `take` (the process is gone). Other CPUs' slots are merged by userspace.
#[inline(always)]
pub fn merged_stats(tgid: u32, take: bool) -> Option<ProcStats> {
    // SAFETY: the value is copied out at once.
    let mut stats = (unsafe { PROCS.get(tgid) }).copied()?;
    if let Some(slot) = RSS_SLOTS.get_ptr_mut(0) {
        // SAFETY: slot is this CPU's RSS_SLOTS value.
        unsafe {
            if (*slot).tgid == tgid {
                stats.merge_newer(&(*slot).stats);
                if take {
                    (*slot).tgid = 0;
                }
            }
        }
    }
    Some(stats)
}

/// The resident size the counters `rss` (from [`mm_counters`]) add up to: all of them but the
/// swap entries.
#[inline(always)]
pub fn resident(rss: &[u64; NR_RSS]) -> u64 {
    let swap = layout().swap_member as usize;
    rss.iter().sum::<u64>() - rss.get(swap).copied().unwrap_or(0)
}

/// The mm's counters (file, anon, swap entries, shmem in the kernel's numbering), in bytes.
///
/// # Safety
/// `mm` must be a BTF-typed `mm_struct` pointer (a program argument, or loaded through one).
#[inline(always)]
pub unsafe fn mm_counters(mm: *const u8) -> [u64; NR_RSS] {
    let layout = layout();
    let counter = |index: u32| -> u64 {
        let offset = layout.mm_rss_stat + index * layout.rss_counter_size + layout.counter_count;
        // The flag is a constant from .rodata: the verifier only checks the branch this kernel
        // takes (before 6.2 the counters are atomic_long_t, which it won't load through BTF).
        let pages = if layout.flags & layout_flags::RSS_ATOMIC != 0 {
            let field = mm.wrapping_add(offset as usize).cast::<i64>();
            // SAFETY: bpf_probe_read_kernel tolerates any address; a bad one returns an error.
            unsafe { bpf_probe_read_kernel(field) }.unwrap_or(0)
        } else {
            // SAFETY: guaranteed by the caller; a constant offset inside mm_struct.rss_stat.
            unsafe { load::<i64>(mm, offset) }
        };
        // percpu_counter_read_positive(): the batched value can dip below zero transiently.
        (pages.max(0) as u64) * u64::from(layout.page_size)
    };
    [counter(0), counter(1), counter(2), counter(3)]
}
