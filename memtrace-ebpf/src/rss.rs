//! Resident memory by kind per process, from the `rss_stat` BTF tracepoint, with its peak.
//!
//! The event fires whenever one of an mm's counters changes, also in another task's context (a
//! reclaimer unmapping pages, a process exiting), so it is attributed to the mm's owner, never to
//! `current`. The counter's value is read from the mm itself, as the classic tracepoint does.
use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::btf_tracepoint, programs::BtfTracePointContext};
use memtrace_common::{KernelLayout, NR_RSS, stat};

use crate::maps::{bump, layout, proc_entry};

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
    let member = member as u32 as usize;
    if member >= NR_RSS {
        return Ok(());
    }
    let layout = layout();
    let Some(tgid) = owner_tgid(mm, &layout)? else {
        bump(stat::NO_OWNER);
        return Ok(());
    };
    let counter = mm
        .wrapping_add(layout.mm_rss_stat as usize)
        .wrapping_add(member * layout.rss_counter_size as usize)
        .wrapping_add(layout.counter_count as usize);
    // SAFETY: bpf_probe_read_kernel tolerates any address; a bad one returns an error.
    let pages: i64 = unsafe { bpf_probe_read_kernel(counter.cast::<i64>()) }?;
    // percpu_counter_read_positive(): the batched value can dip below zero transiently.
    let bytes = (pages.max(0) as u64) * u64::from(layout.page_size);
    let Some(entry) = proc_entry(tgid) else {
        return Ok(());
    };
    // SAFETY: entry points into a live PROCS value. Concurrent writers race only on plain stores
    // of a counter's current value, so the last one wins with a value that was true at that time.
    unsafe {
        let rss = &mut (*entry).rss_bytes;
        // Constant indices only: the verifier loses the bound of a variable index that the
        // compiler keeps in another register than the one it checked.
        match member {
            0 => rss[0] = bytes,
            1 => rss[1] = bytes,
            2 => rss[2] = bytes,
            3 => rss[3] = bytes,
            _ => return Ok(()),
        }
        let swap = layout.swap_member as usize;
        let resident = rss.iter().sum::<u64>() - rss.get(swap).copied().unwrap_or(0);
        if resident > (*entry).peak_rss_bytes {
            (*entry).peak_rss_bytes = resident;
        }
    }
    Ok(())
}

/// The tgid of the task owning `mm` (`mm->owner->tgid`); `None` while the mm has no owner.
#[inline(always)]
fn owner_tgid(mm: *const u8, layout: &KernelLayout) -> Result<Option<u32>, i64> {
    let owner_field = mm.wrapping_add(layout.mm_owner as usize);
    // SAFETY: bpf_probe_read_kernel tolerates any address; a bad one returns an error.
    let owner: *const u8 = unsafe { bpf_probe_read_kernel(owner_field.cast::<*const u8>()) }?;
    if owner.is_null() {
        return Ok(None);
    }
    let tgid_field = owner.wrapping_add(layout.task_tgid as usize);
    // SAFETY: as above.
    let tgid: i32 = unsafe { bpf_probe_read_kernel(tgid_field.cast::<i32>()) }?;
    Ok(Some(tgid as u32))
}
