//! The maps every program shares, the layout global, and small helpers over them.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use memtrace_common::{
    FaultSlot, KernelLayout, MAX_PROCS, MAX_RECLAIMING_THREADS, ProcStats, RINGBUF_BYTES, RssSlot,
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
