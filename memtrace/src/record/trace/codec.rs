//! Compact sample encoding: every number is a LEB128 varint of the zigzagged change since the
//! previous sample; a process whose values did not change is not written at all (the reader
//! carries it forward), and a changed one writes a bit mask of which fields changed, then only
//! those. Memory is stored in 4 KiB units (lossless for page-sized kernel counters), system
//! memory and GPU memory in KiB. Rates are not stored: they follow from the counters.
use std::collections::{BTreeMap, HashMap};

use bytes::{Buf as _, BytesMut};

use super::varint::{get_delta, get_str, put_delta, put_str};
pub use super::{
    process::{ProcIdent, ProcValues, decode_ident, encode_ident},
    varint::{DecodeError, get_varint, put_varint},
};
use crate::collect::model::{GpuDevice, Snapshot, SystemSample, TracerHealth};

const PAGE: u64 = 4096;
const KIB: u64 = 1024;

// Field bits of a process entry, the common ones first so a typical mask is one byte.
const ANON: u64 = 1;
const FAULTS: u64 = 1 << 1;
const PEAK_IS_RSS: u64 = 1 << 2;
const FILE: u64 = 1 << 3;
const SHMEM: u64 = 1 << 4;
const SWAP: u64 = 1 << 5;
const PEAK: u64 = 1 << 6;
const RECLAIM_COUNT: u64 = 1 << 7;
const RECLAIM_NS: u64 = 1 << 8;
const GPU: u64 = 1 << 9;
const GPU_NONE: u64 = 1 << 10;
const EXITED: u64 = 1 << 11;
const OOM: u64 = 1 << 12;

/// One decoded sample: the processes are every live slot (changed or carried forward).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// ms since the Unix epoch.
    pub time_unix_ms: u64,
    /// Machine-wide state.
    pub system: SystemSample,
    /// GPUs.
    pub gpus: Vec<GpuDevice>,
    /// Tracer health counters.
    pub health: TracerHealth,
    /// (slot, values) of every process present, sorted by slot.
    pub procs: Vec<(u32, ProcValues)>,
}

/// Delta state shared by the encoder and the decoder: the previous sample.
#[derive(Debug, Default)]
struct State {
    time_ms: u64,
    system: [u64; 6],
    health: [u64; 5],
    gpus: BTreeMap<u32, GpuDevice>,
    procs: BTreeMap<u32, ProcValues>,
}

fn system_fields(s: &SystemSample) -> [u64; 6] {
    let psi = |v: Option<f64>| v.map_or(0, |v| (v * 100.0).round().max(0.0) as u64 + 1);
    [
        s.mem_total_bytes / KIB,
        s.mem_available_bytes / KIB,
        s.swap_total_bytes / KIB,
        s.swap_free_bytes / KIB,
        psi(s.psi_some_avg10),
        psi(s.psi_full_avg10),
    ]
}

fn system_from(f: &[u64; 6]) -> SystemSample {
    let psi = |v: u64| (v > 0).then(|| (v - 1) as f64 / 100.0);
    let total = f[0] * KIB;
    let available = f[1] * KIB;
    let used = total.saturating_sub(available);
    SystemSample {
        mem_total_bytes: total,
        mem_available_bytes: available,
        mem_used_bytes: used,
        mem_used_percent: crate::collect::system::percent(used, total),
        swap_total_bytes: f[2] * KIB,
        swap_free_bytes: f[3] * KIB,
        psi_some_avg10: psi(f[4]),
        psi_full_avg10: psi(f[5]),
    }
}

fn health_fields(h: &TracerHealth) -> [u64; 5] {
    [
        h.kswapd_wakeups,
        h.map_full,
        h.ringbuf_drops,
        h.no_owner,
        h.reclaim_unmatched,
    ]
}

fn put_masked(out: &mut BytesMut, old: &[u64], new: &[u64]) {
    let mask = old
        .iter()
        .zip(new)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .fold(0u64, |m, (i, _)| m | 1 << i);
    put_varint(out, mask);
    for (i, (a, b)) in old.iter().zip(new).enumerate() {
        if mask & 1 << i != 0 {
            put_delta(out, *a, *b);
        }
    }
}

fn get_masked(buf: &mut &[u8], state: &mut [u64]) -> Result<(), DecodeError> {
    let mask = get_varint(buf)?;
    for (i, value) in state.iter_mut().enumerate() {
        if mask & 1 << i != 0 {
            *value = get_delta(buf, *value)?;
        }
    }
    Ok(())
}

/// Longest command line stored (a compiler's can be tens of KiB; the start says what it was).
pub const MAX_CMDLINE: usize = 1024;

fn capped(cmdline: &str) -> String {
    if cmdline.len() <= MAX_CMDLINE {
        return cmdline.to_owned();
    }
    let mut end = MAX_CMDLINE;
    while !cmdline.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &cmdline[..end])
}

/// Turns snapshots into sample payloads, assigning a slot to each (pid, start time).
#[derive(Debug, Default)]
pub struct Encoder {
    state: State,
    slots: HashMap<(u32, u64), u32>,
    idents: Vec<ProcIdent>,
}

impl Encoder {
    /// Starts from the header's start time.
    pub fn new(start_unix_ms: u64) -> Self {
        Self {
            state: State {
                time_ms: start_unix_ms,
                ..State::default()
            },
            ..Self::default()
        }
    }

    /// Encodes `snapshot` (already filtered to what is traced): returns the identities that are
    /// new or changed (to write first, as PROC records) and the sample payload.
    pub fn encode(&mut self, snapshot: &Snapshot) -> (Vec<(u32, ProcIdent)>, BytesMut) {
        let mut out = BytesMut::with_capacity(64 + snapshot.procs.len() * 6);
        put_delta(&mut out, self.state.time_ms, snapshot.time_unix_ms);
        self.state.time_ms = snapshot.time_unix_ms;
        let system = system_fields(&snapshot.system);
        put_masked(&mut out, &self.state.system, &system);
        self.state.system = system;
        let health = health_fields(&snapshot.health);
        put_masked(&mut out, &self.state.health, &health);
        self.state.health = health;
        self.encode_gpus(&mut out, &snapshot.gpus);

        let mut idents = Vec::new();
        let mut current: BTreeMap<u32, ProcValues> = BTreeMap::new();
        for p in &snapshot.procs {
            let key = (p.pid, p.start_ticks);
            let next = u32::try_from(self.idents.len()).unwrap_or(u32::MAX);
            let slot = *self.slots.entry(key).or_insert(next);
            let ident = ProcIdent {
                pid: p.pid,
                ppid: p.ppid,
                start_ticks: p.start_ticks,
                comm: p.comm.clone(),
                cmdline: capped(&p.cmdline),
            };
            if slot == next {
                self.idents.push(ident.clone());
                idents.push((slot, ident));
            } else if let Some(known) = self.idents.get_mut(slot as usize) {
                let renamed = !ident.comm.is_empty() && known.comm != ident.comm;
                let moved = ident.ppid != 0 && known.ppid != ident.ppid;
                if renamed || moved {
                    *known = ident.clone();
                    idents.push((slot, ident));
                }
            }
            let values = ProcValues::of(p);
            current.insert(slot, values);
            if p.exited {
                self.slots.remove(&key);
            }
        }
        // Slots that vanished without an exit sample end as exited, values unchanged.
        let gone: Vec<(u32, ProcValues)> = self
            .state
            .procs
            .iter()
            .filter(|(slot, _)| !current.contains_key(slot))
            .map(|(slot, v)| (*slot, ProcValues { exited: true, ..*v }))
            .collect();
        current.extend(gone);
        let changed: Vec<(u32, ProcValues, ProcValues)> = current
            .iter()
            .filter_map(|(slot, new)| {
                let old = self.state.procs.get(slot).copied().unwrap_or_default();
                (old != *new || !self.state.procs.contains_key(slot)).then_some((*slot, old, *new))
            })
            .collect();
        put_varint(&mut out, changed.len() as u64);
        let mut previous = 0u32;
        for (slot, old, new) in &changed {
            put_varint(&mut out, u64::from(slot - previous));
            previous = *slot;
            encode_proc(&mut out, old, new);
        }
        current.retain(|_, v| !v.exited);
        self.slots.retain(|_, slot| current.contains_key(slot));
        self.state.procs = current;
        (idents, out)
    }

    fn encode_gpus(&mut self, out: &mut BytesMut, gpus: &[GpuDevice]) {
        put_varint(out, gpus.len() as u64);
        for gpu in gpus {
            let old = self.state.gpus.get(&gpu.index).cloned().unwrap_or_default();
            put_varint(out, u64::from(gpu.index));
            let named = old.name != gpu.name;
            put_varint(out, u64::from(named));
            if named {
                put_str(out, &gpu.name);
            }
            put_delta(out, old.used_bytes / KIB, gpu.used_bytes / KIB);
            put_delta(out, old.total_bytes / KIB, gpu.total_bytes / KIB);
            put_varint(out, gpu.utilization_percent.map_or(0, |u| u64::from(u) + 1));
            self.state.gpus.insert(gpu.index, gpu.clone());
        }
    }
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE)
}

fn encode_proc(out: &mut BytesMut, old: &ProcValues, new: &ProcValues) {
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
        put_delta(out, old.gpu.unwrap_or(0) / KIB, new.gpu.unwrap_or(0) / KIB);
    }
}

/// Turns sample and identity payloads back into samples.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    /// Starts from the header's start time.
    pub fn new(start_unix_ms: u64) -> Self {
        Self {
            state: State {
                time_ms: start_unix_ms,
                ..State::default()
            },
        }
    }

    /// Decodes one sample payload.
    pub fn decode(&mut self, mut buf: &[u8]) -> Result<Sample, DecodeError> {
        let buf = &mut buf;
        let s = &mut self.state;
        s.time_ms = get_delta(buf, s.time_ms)?;
        get_masked(buf, &mut s.system)?;
        get_masked(buf, &mut s.health)?;
        let gpus = get_varint(buf)?;
        let mut seen = Vec::new();
        for _ in 0..gpus {
            let index = u32::try_from(get_varint(buf)?).unwrap_or(u32::MAX);
            let gpu = s.gpus.entry(index).or_default();
            gpu.index = index;
            if get_varint(buf)? != 0 {
                gpu.name = get_str(buf)?;
            }
            gpu.used_bytes = get_delta(buf, gpu.used_bytes / KIB)? * KIB;
            gpu.total_bytes = get_delta(buf, gpu.total_bytes / KIB)? * KIB;
            let util = get_varint(buf)?;
            gpu.utilization_percent = (util > 0).then(|| u32::try_from(util - 1).unwrap_or(100));
            seen.push(gpu.clone());
        }
        let count = get_varint(buf)?;
        let mut slot = 0u32;
        for _ in 0..count {
            let step =
                u32::try_from(get_varint(buf)?).map_err(|_| DecodeError("bad slot".into()))?;
            slot = slot
                .checked_add(step)
                .ok_or_else(|| DecodeError("bad slot".into()))?;
            let old = s.procs.get(&slot).copied().unwrap_or_default();
            let new = decode_proc(buf, &old)?;
            s.procs.insert(slot, new);
        }
        if buf.has_remaining() {
            return Err(DecodeError(format!(
                "{} unexpected bytes after the sample",
                buf.remaining()
            )));
        }
        let sample = Sample {
            time_unix_ms: s.time_ms,
            system: system_from(&s.system),
            gpus: seen,
            health: TracerHealth {
                kswapd_wakeups: s.health[0],
                map_full: s.health[1],
                ringbuf_drops: s.health[2],
                no_owner: s.health[3],
                reclaim_unmatched: s.health[4],
            },
            procs: s.procs.iter().map(|(k, v)| (*k, *v)).collect(),
        };
        s.procs.retain(|_, v| !v.exited);
        Ok(sample)
    }
}

fn decode_proc(buf: &mut &[u8], old: &ProcValues) -> Result<ProcValues, DecodeError> {
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
            *field = get_delta(buf, pages(*field))? * PAGE;
        }
    }
    if mask & PEAK != 0 {
        new.peak_rss = get_delta(buf, pages(new.peak_rss))? * PAGE;
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
        new.gpu = Some(get_delta(buf, old.gpu.unwrap_or(0) / KIB)? * KIB);
    }
    if mask & GPU_NONE != 0 {
        new.gpu = None;
    }
    Ok(new)
}

#[cfg(test)]
mod tests;
