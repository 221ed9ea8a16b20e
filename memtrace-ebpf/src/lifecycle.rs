//! Process exits and OOM kills, sent to userspace as ring-buffer events with the process's last
//! counters (so a process that lived less than one sampling interval is still seen, with its
//! peak). An exiting process's entry is removed so the map holds live processes only. With the
//! rare-event programs, which keep no entry for most processes, userspace may ask
//! ([`layout_flags::EXIT_MEMORY`]) for every exit to report the memory read from the task's mm.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use memtrace_common::{COMM_LEN, ProcEvent, ProcStats, event_kind, layout_flags, stat};

use crate::maps::{
    EVENTS, FAULT_SLOTS, PROCS, bump, layout, load, merged_stats, mm_counters, resident,
};

// tp_btf/sched_process_exit: TP_PROTO(struct task_struct *p, bool group_dead)  (kernel ≥ 6.16)
//                           TP_PROTO(struct task_struct *p)                   (before)
// Runs in the exiting task's context; `group_dead` is true for the last thread of the group.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    try_process_exit(&ctx);
    0
}

// tp_btf/mark_victim: TP_PROTO(struct task_struct *task, uid_t uid)   (kernel ≥ 6.8)
//                     TP_PROTO(int pid)                              (before)
#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim(ctx: BtfTracePointContext) -> i32 {
    let _ = try_mark_victim(&ctx);
    0
}

#[inline(always)]
fn try_process_exit(ctx: &BtfTracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // The flag is a constant from .rodata, so the verifier only checks the branch this kernel
    // takes (older kernels have no 2nd argument to read).
    let last_thread = if layout().flags & layout_flags::EXIT_HAS_GROUP_DEAD != 0 {
        let group_dead: u64 = ctx.arg(1);
        group_dead & 0xff != 0
    } else {
        pid_tgid as u32 == tgid
    };
    if !last_thread {
        return;
    }
    if let Some(slot) = FAULT_SLOTS.get_ptr_mut(0) {
        // The exit event carries the kernel's exact count; a pending batch of the optional
        // fault hook must not be credited to a later process that reuses the pid.
        // SAFETY: slot is this CPU's FAULT_SLOTS value.
        unsafe {
            if (*slot).tgid == tgid {
                (*slot).tgid = 0;
                (*slot).pending = 0;
            }
        }
    }
    let task: *const u8 = ctx.arg(0);
    let from_mm = layout().flags & layout_flags::EXIT_MEMORY != 0;
    let mut stats = match merged_stats(tgid, true) {
        Some(stats) => {
            let _ = PROCS.remove(tgid);
            stats
        }
        // The rare-event programs keep no entry for most processes: where userspace asked, the
        // exit reports the memory of every process (below), not only of those with an entry.
        None if from_mm => ProcStats::ZERO,
        None => return,
    };
    if from_mm && !exit_memory(task, &mut stats) {
        // The task has no mm (a kernel thread's group, or one already gone): nothing to report.
        return;
    }
    stats.faults = group_faults(task);
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    send(event_kind::EXIT, tgid, comm, stats);
}

/// Fills `stats` with the exiting task's memory, read from its mm: the four counters as the
/// task leaves, and its peak, the kernel's high-water mark (`hiwater_rss`, raised before every
/// unmap or reclaim that lowers the resident size) or the resident size now, whichever is
/// higher. Only called with [`layout_flags::EXIT_MEMORY`], which userspace sets only where this
/// tracepoint runs before the task lets go of its mm. `false` if the task has none.
#[inline(always)]
fn exit_memory(task: *const u8, stats: &mut ProcStats) -> bool {
    let layout = layout();
    // SAFETY: `task` is the tracepoint's BTF-typed argument and the offset a constant from the
    // frozen layout: the verifier checks the load against task_struct's BTF, and `mm` is then a
    // BTF-typed mm_struct pointer (or null).
    let mm: *const u8 = unsafe { load(task, layout.task_mm) };
    if mm.is_null() {
        return false;
    }
    // SAFETY: `mm` is BTF-typed, loaded through the task as above.
    let rss = unsafe { mm_counters(mm) };
    // SAFETY: as above, a constant offset inside mm_struct.
    let hiwater_pages: u64 = unsafe { load(mm, layout.mm_hiwater_rss) };
    let hiwater = hiwater_pages * u64::from(layout.page_size);
    stats.peak_rss_bytes = stats.peak_rss_bytes.max(hiwater).max(resident(&rss));
    stats.rss_bytes = rss;
    true
}

/// The kernel's own fault count of the exiting task's thread group: the last thread's
/// `min_flt + maj_flt` plus what its reaped siblings left in `signal_struct`.
#[inline(always)]
fn group_faults(task: *const u8) -> u64 {
    let layout = layout();
    // SAFETY: `task` is the tracepoint's BTF-typed argument and the offsets are constants from
    // the frozen layout, so the verifier checks these loads against task_struct's BTF.
    unsafe {
        let own = load::<u64>(task, layout.task_min_flt) + load::<u64>(task, layout.task_maj_flt);
        let signal: *const u8 = load(task, layout.task_signal);
        if signal.is_null() {
            return own;
        }
        own + load::<u64>(signal, layout.signal_min_flt)
            + load::<u64>(signal, layout.signal_maj_flt)
    }
}

#[inline(always)]
fn try_mark_victim(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let layout = layout();
    let (tgid, comm) = if layout.flags & layout_flags::VICTIM_IS_TASK != 0 {
        let task: *const u8 = ctx.arg(0);
        // SAFETY: bpf_probe_read_kernel tolerates any address; a bad one returns an error.
        let tgid: i32 = unsafe {
            bpf_probe_read_kernel(task.wrapping_add(layout.task_tgid as usize).cast::<i32>())
        }?;
        // SAFETY: as above.
        let comm: [u8; COMM_LEN] = unsafe {
            bpf_probe_read_kernel(
                task.wrapping_add(layout.task_comm as usize)
                    .cast::<[u8; COMM_LEN]>(),
            )
        }?;
        (tgid as u32, comm)
    } else {
        // Older kernels pass only the pid; userspace fills in the name from its own table.
        let pid: i32 = ctx.arg(0);
        (pid as u32, [0; COMM_LEN])
    };
    // SAFETY: the value is copied out at once.
    let stats = (unsafe { PROCS.get(tgid) })
        .copied()
        .unwrap_or(ProcStats::ZERO);
    send(event_kind::OOM_VICTIM, tgid, comm, stats);
    Ok(())
}

#[inline(always)]
fn send(kind: u32, pid: u32, comm: [u8; COMM_LEN], stats: ProcStats) {
    let Some(mut entry) = EVENTS.reserve::<ProcEvent>(0) else {
        bump(stat::RINGBUF_DROPS);
        return;
    };
    entry.write(ProcEvent {
        kind,
        pid,
        // SAFETY: plain helper call without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm,
        stats,
    });
    entry.submit(0);
}
