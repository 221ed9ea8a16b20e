//! Resident memory by kind per process, from the `rss_stat` BTF tracepoint, with its peak.
//!
//! The event fires whenever one of an mm's counters changes, also in another task's context (a
//! reclaimer unmapping pages, a process exiting), so it is attributed to the mm's owner, never to
//! `current`. The counter's value is read from the mm itself, as the classic tracepoint does.
//! All reads are direct loads through the BTF-typed `mm` argument: no helper calls.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use memtrace_common::stat;

use crate::maps::{bump, layout, load, proc_entry};

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
    let counter = |index: u32| -> i64 {
        let offset = layout.mm_rss_stat + index * layout.rss_counter_size + layout.counter_count;
        // SAFETY: as above, at a constant offset inside mm_struct.rss_stat.
        unsafe { load::<i64>(mm, offset) }
    };
    // One constant offset per counter: the verifier refuses variable offsets into kernel
    // structures (and loses the bound of an index kept in another register).
    let pages = match member {
        0 => counter(0),
        1 => counter(1),
        2 => counter(2),
        3 => counter(3),
        _ => return Ok(()),
    };
    // percpu_counter_read_positive(): the batched value can dip below zero transiently.
    let bytes = (pages.max(0) as u64) * u64::from(layout.page_size);
    let Some(entry) = proc_entry(tgid) else {
        return Ok(());
    };
    // SAFETY: entry points into a live PROCS value. Concurrent writers race only on plain stores
    // of a counter's current value, so the last one wins with a value that was true at that time.
    unsafe {
        let rss = &mut (*entry).rss_bytes;
        match member {
            0 => rss[0] = bytes,
            1 => rss[1] = bytes,
            2 => rss[2] = bytes,
            _ => rss[3] = bytes,
        }
        let swap = layout.swap_member as usize;
        let resident = rss.iter().sum::<u64>() - rss.get(swap).copied().unwrap_or(0);
        if resident > (*entry).peak_rss_bytes {
            (*entry).peak_rss_bytes = resident;
        }
    }
    Ok(())
}
