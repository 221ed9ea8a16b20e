//! Direct-reclaim stalls per process (global and memcg-limit reclaim, count and total ns) and
//! kswapd wakeups system wide. Reclaim is rare next to faults, so a per-thread start-time map is
//! affordable here.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use memtrace_common::stat;

use crate::maps::{RECLAIM_START, atomic_add, bump, proc_entry};

// tp_btf/mm_vmscan_direct_reclaim_begin: TP_PROTO(int order, gfp_t gfp_flags)
#[btf_tracepoint(function = "mm_vmscan_direct_reclaim_begin")]
pub fn direct_reclaim_begin(_ctx: BtfTracePointContext) -> i32 {
    try_reclaim_begin();
    0
}

// tp_btf/mm_vmscan_direct_reclaim_end: TP_PROTO(unsigned long nr_reclaimed)
#[btf_tracepoint(function = "mm_vmscan_direct_reclaim_end")]
pub fn direct_reclaim_end(_ctx: BtfTracePointContext) -> i32 {
    try_reclaim_end();
    0
}

// tp_btf/mm_vmscan_memcg_reclaim_begin: TP_PROTO(int order, gfp_t gfp_flags)
// A task charging a cgroup over its limit stalls here instead of in global direct reclaim.
#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_begin")]
pub fn memcg_reclaim_begin(_ctx: BtfTracePointContext) -> i32 {
    try_reclaim_begin();
    0
}

// tp_btf/mm_vmscan_memcg_reclaim_end: TP_PROTO(unsigned long nr_reclaimed)
#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_end")]
pub fn memcg_reclaim_end(_ctx: BtfTracePointContext) -> i32 {
    try_reclaim_end();
    0
}

// tp_btf/mm_vmscan_wakeup_kswapd: TP_PROTO(int nid, int zid, int order, gfp_t gfp_flags)
#[btf_tracepoint(function = "mm_vmscan_wakeup_kswapd")]
pub fn wakeup_kswapd(_ctx: BtfTracePointContext) -> i32 {
    bump(stat::KSWAPD_WAKEUPS);
    0
}

#[inline(always)]
fn try_reclaim_begin() {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: plain helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if RECLAIM_START.insert(tid, now, 0).is_err() {
        bump(stat::RECLAIM_UNMATCHED);
    }
}

#[inline(always)]
fn try_reclaim_end() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: the value is copied out at once; the entry is removed right after.
    let Some(start) = (unsafe { RECLAIM_START.get(tid) }).copied() else {
        bump(stat::RECLAIM_UNMATCHED);
        return;
    };
    let _ = RECLAIM_START.remove(tid);
    // SAFETY: plain helper call without arguments.
    let elapsed = unsafe { bpf_ktime_get_ns() }.saturating_sub(start);
    if let Some(entry) = proc_entry((pid_tgid >> 32) as u32) {
        // SAFETY: entry points into a live PROCS value.
        unsafe {
            atomic_add(&raw mut (*entry).reclaim_count, 1);
            atomic_add(&raw mut (*entry).reclaim_ns, elapsed);
        }
    }
}
