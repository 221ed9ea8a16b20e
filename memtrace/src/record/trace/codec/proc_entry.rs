//! One process's entry in a sample: a bit mask of the fields that changed since the previous
//! sample, then the change of each, in pages (memory), KiB (GPU memory) or counts. A peak equal
//! to the resident sum is one bit, not a number.
use bytes::BytesMut;

use super::{DecodeError, KIB, PAGE, ProcValues, get_varint, kib, pages, put_varint, to_bytes};
use crate::record::trace::varint::{get_delta, put_delta};

// Field bits of a process entry, the common ones first so a typical mask is one byte.
pub(super) const ANON: u64 = 1;
pub(super) const FAULTS: u64 = 1 << 1;
pub(super) const PEAK_IS_RSS: u64 = 1 << 2;
pub(super) const FILE: u64 = 1 << 3;
pub(super) const SHMEM: u64 = 1 << 4;
pub(super) const SWAP: u64 = 1 << 5;
pub(super) const PEAK: u64 = 1 << 6;
pub(super) const RECLAIM_COUNT: u64 = 1 << 7;
pub(super) const RECLAIM_NS: u64 = 1 << 8;
pub(super) const GPU: u64 = 1 << 9;
pub(super) const GPU_NONE: u64 = 1 << 10;
pub(super) const EXITED: u64 = 1 << 11;
pub(super) const OOM: u64 = 1 << 12;

/// Writes `new`'s entry, the change from `old`.
pub(super) fn encode_proc(out: &mut BytesMut, old: &ProcValues, new: &ProcValues) {
    let mem = [
        (ANON, old.anon, new.anon),
        (FILE, old.file, new.file),
        (SHMEM, old.shmem, new.shmem),
        (SWAP, old.swap, new.swap),
    ];
    let counters = [
        (FAULTS, old.faults, new.faults),
        (RECLAIM_COUNT, old.reclaim_count, new.reclaim_count),
        (RECLAIM_NS, old.reclaim_stall_ns, new.reclaim_stall_ns),
    ];
    let mut mask = 0;
    for (bit, a, b) in mem {
        if pages(a) != pages(b) {
            mask |= bit;
        }
    }
    for (bit, a, b) in counters {
        if a != b {
            mask |= bit;
        }
    }
    if pages(new.peak_rss) != pages(old.peak_rss) {
        mask |= if pages(new.peak_rss) == pages(new.anon) + pages(new.file) + pages(new.shmem) {
            PEAK_IS_RSS
        } else {
            PEAK
        };
    }
    match (old.gpu, new.gpu) {
        (a, Some(b)) if a != Some(b) => mask |= GPU,
        (Some(_), None) => mask |= GPU_NONE,
        _ => {}
    }
    if new.exited {
        mask |= EXITED;
    }
    if new.oom_killed {
        mask |= OOM;
    }
    put_varint(out, mask);
    for (bit, a, b) in mem {
        if mask & bit != 0 {
            put_delta(out, pages(a), pages(b));
        }
    }
    if mask & PEAK != 0 {
        put_delta(out, pages(old.peak_rss), pages(new.peak_rss));
    }
    for (bit, a, b) in counters {
        if mask & bit != 0 {
            put_delta(out, a, b);
        }
    }
    if mask & GPU != 0 {
        put_delta(out, kib(old.gpu.unwrap_or(0)), kib(new.gpu.unwrap_or(0)));
    }
}

/// Reads an entry: `old` with the changes it carries.
pub(super) fn decode_proc(buf: &mut &[u8], old: &ProcValues) -> Result<ProcValues, DecodeError> {
    let mask = get_varint(buf)?;
    let mut new = ProcValues {
        exited: mask & EXITED != 0,
        oom_killed: mask & OOM != 0,
        ..*old
    };
    for (bit, field) in [
        (ANON, &mut new.anon),
        (FILE, &mut new.file),
        (SHMEM, &mut new.shmem),
        (SWAP, &mut new.swap),
    ] {
        if mask & bit != 0 {
            *field = to_bytes(get_delta(buf, pages(*field))?, PAGE)?;
        }
    }
    if mask & PEAK != 0 {
        new.peak_rss = to_bytes(get_delta(buf, pages(new.peak_rss))?, PAGE)?;
    }
    if mask & PEAK_IS_RSS != 0 {
        new.peak_rss = new.rss();
    }
    for (bit, field) in [
        (FAULTS, &mut new.faults),
        (RECLAIM_COUNT, &mut new.reclaim_count),
        (RECLAIM_NS, &mut new.reclaim_stall_ns),
    ] {
        if mask & bit != 0 {
            *field = get_delta(buf, *field)?;
        }
    }
    if mask & GPU != 0 {
        new.gpu = Some(to_bytes(get_delta(buf, old.gpu.unwrap_or(0) / KIB)?, KIB)?);
    }
    if mask & GPU_NONE != 0 {
        new.gpu = None;
    }
    Ok(new)
}
