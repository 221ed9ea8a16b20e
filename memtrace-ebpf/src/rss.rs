//! Resident memory by kind per process, from the `rss_stat` BTF tracepoint, with its peak.
//!
//! The event fires whenever one of an mm's counters changes, also in another task's context (a
//! reclaimer unmapping pages, a process exiting), so it is attributed to the mm's owner, never to
//! `current`. The counter's value is read from the mm itself, as the classic tracepoint does.
//! All reads are direct loads through the BTF-typed `mm` argument: no helper calls.
use aya_ebpf::{
    helpers::generated::bpf_jiffies64, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use memtrace_common::{NR_RSS, stat};

use crate::maps::{
    RSS_SLOTS, bump, flush_rss_slot, layout, load, mm_counters, proc_entry, resident,
};

// tp_btf/rss_stat:
//   TP_PROTO(struct mm_struct *mm, int member)
// The classic tracepoint's format, for reference (we don't use it: it hashes the mm pointer):
//   field:unsigned int mm_id;  field:unsigned int curr;  field:int member;  field:long size;
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat(ctx: BtfTracePointContext) -> i32 {
    let _ = try_rss_stat(&ctx);
    0
}

#[inline(always)]
fn try_rss_stat(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let mm: *const u8 = ctx.arg(0);
    let member: i32 = ctx.arg(1);
    let layout = layout();
    // SAFETY: `mm` is the tracepoint's BTF-typed argument: the verifier turns these loads at
    // constant offsets (the layout is frozen .rodata) into fault-tolerant kernel reads, and
    // checks each one against mm_struct's BTF.
    let owner: *const u8 = unsafe { load(mm, layout.mm_owner) };
    if owner.is_null() {
        bump(stat::NO_OWNER);
        return Ok(());
    }
    // SAFETY: as above; `owner` is a BTF-typed task_struct pointer read from the mm.
    let tgid = unsafe { load::<i32>(owner, layout.task_tgid) } as u32;
    if member as u32 >= NR_RSS as u32 {
        return Ok(());
    }
    let Some(slot) = RSS_SLOTS.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: slot is this CPU's RSS_SLOTS value; tracing programs do not nest on one CPU.
    unsafe {
        if (*slot).tgid != tgid {
            // Another process's memory changed on this CPU: write the old one back and start
            // from this process's entry (created if new).
            flush_rss_slot(slot);
            let Some(entry) = proc_entry(tgid) else {
                return Ok(());
            };
            (*slot).stats.peak_rss_bytes = (*entry).peak_rss_bytes;
            (*slot).tgid = tgid;
        }
        // All four counters, read from the mm: the slot is a consistent snapshot of it.
        let rss = mm_counters(mm);
        let stats = &mut (*slot).stats;
        stats.rss_bytes = rss;
        stats.stamp = bpf_jiffies64();
        let resident = resident(&rss);
        if resident > stats.peak_rss_bytes {
            stats.peak_rss_bytes = resident;
        }
    }
    Ok(())
}
