//! Processes in a trace: who a slot is ([`ProcIdent`], written once as a PROC record and again
//! when it execs or is re-parented, its names [`capped`] in length both ways) and its numbers in
//! one sample ([`ProcValues`]).
use bytes::BytesMut;

use super::varint::{DecodeError, get_str, get_varint, put_str, put_varint};
use crate::collect::model::ProcSample;

/// Who a process slot is.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcIdent {
    /// tgid.
    pub pid: u32,
    /// Parent.
    pub ppid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Command name.
    pub comm: String,
    /// Command line.
    pub cmdline: String,
}

/// One process's numbers in one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcValues {
    /// Anonymous resident bytes.
    pub anon: u64,
    /// File-backed resident bytes.
    pub file: u64,
    /// Shared-memory resident bytes.
    pub shmem: u64,
    /// Swapped-out bytes.
    pub swap: u64,
    /// Highest resident set seen.
    pub peak_rss: u64,
    /// Page faults since tracing began.
    pub faults: u64,
    /// Direct-reclaim stalls.
    pub reclaim_count: u64,
    /// Time stalled in direct reclaim, ns.
    pub reclaim_stall_ns: u64,
    /// GPU memory, when known.
    pub gpu: Option<u64>,
    /// Exited in this interval.
    pub exited: bool,
    /// Chosen by the OOM killer.
    pub oom_killed: bool,
}

impl ProcValues {
    /// The numbers of a sampled process that a trace keeps.
    pub fn of(p: &ProcSample) -> Self {
        Self {
            anon: p.anon_bytes,
            file: p.file_bytes,
            shmem: p.shmem_bytes,
            swap: p.swap_bytes,
            peak_rss: p.peak_rss_bytes,
            faults: p.faults,
            reclaim_count: p.reclaim_count,
            reclaim_stall_ns: p.reclaim_stall_ns,
            gpu: p.gpu_bytes,
            exited: p.exited,
            oom_killed: p.oom_killed,
        }
    }

    /// Resident set: anon + file + shmem (saturating; decoded values never come near it).
    pub fn rss(&self) -> u64 {
        self.anon
            .saturating_add(self.file)
            .saturating_add(self.shmem)
    }

    /// The process's [footprint](crate::collect::model::footprint): anon + shmem + swap. Leak
    /// verdicts use this.
    pub fn footprint(&self) -> u64 {
        crate::collect::model::footprint(self.anon, self.shmem, self.swap)
    }
}

/// Encodes a PROC record payload.
pub fn encode_ident(slot: u32, ident: &ProcIdent) -> BytesMut {
    let mut out = BytesMut::with_capacity(32 + ident.cmdline.len());
    put_varint(&mut out, u64::from(slot));
    put_varint(&mut out, u64::from(ident.pid));
    put_varint(&mut out, u64::from(ident.ppid));
    put_varint(&mut out, ident.start_ticks);
    put_str(&mut out, &ident.comm);
    put_str(&mut out, &ident.cmdline);
    out
}

/// Longest command name stored (the kernel's are 15 bytes; invalid UTF-8 can triple that).
pub const MAX_COMM: usize = 256;
/// Longest command line stored (a compiler's can be tens of KiB; the start says what it was).
pub const MAX_CMDLINE: usize = 1024;

/// `text` cut to at most `max` bytes at a char boundary, with `…` (3 bytes) when cut.
pub fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The longest a [`capped`] text can be.
pub const fn capped_len(max: usize) -> usize {
    max + '…'.len_utf8()
}

/// Decodes a PROC record payload.
pub fn decode_ident(mut buf: &[u8]) -> Result<(u32, ProcIdent), DecodeError> {
    let buf = &mut buf;
    let small = |v: u64| u32::try_from(v).map_err(|_| DecodeError("number out of range".into()));
    let slot = small(get_varint(buf)?)?;
    let ident = ProcIdent {
        pid: small(get_varint(buf)?)?,
        ppid: small(get_varint(buf)?)?,
        start_ticks: get_varint(buf)?,
        comm: get_str(buf, capped_len(MAX_COMM))?,
        cmdline: get_str(buf, capped_len(MAX_CMDLINE))?,
    };
    Ok((slot, ident))
}
