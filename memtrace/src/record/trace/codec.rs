//! Compact sample encoding: every number is a LEB128 varint of the zigzagged change since the
//! previous sample; a process whose values did not change is not written at all (the reader
//! carries it forward), and a changed one writes a bit mask of which fields changed, then only
//! those ([`proc_entry`]). Memory is stored in 4 KiB units (lossless for page-sized kernel counters), system
//! memory and GPU memory in KiB. Rates are not stored: they follow from the counters.
//!
//! A decoded [`Sample`] keeps only the processes written in it ([`Sample::changed`]);
//! [`Replay`] carries the others forward. So decoding takes memory in proportion to the file,
//! however many processes a crafted trace keeps alive across however many samples. The decoder
//! trusts nothing it reads: counts are checked against the bytes left and slots against the
//! identities named before anything is allocated, every change is checked arithmetic, and a
//! byte quantity beyond [`MAX_BYTES`] (a sample's total beyond [`MAX_TOTAL_BYTES`]) or a time
//! beyond [`MAX_TIME_MS`] is an error — so nothing downstream can overflow or print a wrapped
//! number.
use std::collections::{BTreeMap, HashMap};

use bytes::{Buf as _, BytesMut};

use super::varint::{get_count, get_delta, get_str, put_delta, put_str};
pub use super::{
    process::{
        MAX_CMDLINE, MAX_COMM, ProcIdent, ProcValues, capped, capped_len, decode_ident,
        encode_ident,
    },
    varint::{DecodeError, get_varint, put_varint},
};
use crate::collect::model::{GpuDevice, Snapshot, SystemSample, TracerHealth};
use proc_entry::{decode_proc, encode_proc};

const PAGE: u64 = 4096;
const KIB: u64 = 1024;

/// The most bytes one memory value may hold (64 PiB, more than any machine has): the encoder
/// clamps to it, the decoder refuses more.
pub const MAX_BYTES: u64 = 1 << 56;
/// The most bytes the live processes (or the GPUs) of one sample may hold together (4 EiB):
/// below it, every sum of a sample and every difference of two fits an i64.
pub const MAX_TOTAL_BYTES: u64 = 1 << 62;
/// The latest time a trace may hold, ms since the Unix epoch: 9999-12-31 23:59:59.999 UTC.
/// Anything later is damage, and times in µs still fit a u64.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;
/// Longest GPU name stored (NVML's are at most 96 bytes).
pub const MAX_GPU_NAME: usize = 256;
/// The fewest payload bytes a GPU entry of a sample takes (index, name flag, two deltas,
/// utilisation).
const GPU_MIN_BYTES: usize = 5;
/// The fewest payload bytes a process entry of a sample takes (slot step, field mask).
const PROC_MIN_BYTES: usize = 2;

/// One decoded sample. It holds the processes written in it; [`Replay`] adds the ones carried
/// forward.
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
    /// (slot, values) of every process that appeared, changed or exited in this sample, sorted
    /// by slot. Every process of the previous sample that had not exited is also present, with
    /// its values unchanged.
    pub changed: Vec<(u32, ProcValues)>,
}

/// Replays decoded samples with every process present in each: those written in it and those
/// carried forward (every process of the previous sample that had not exited). Costs one map of
/// the live processes, whatever the number of samples.
#[derive(Debug)]
pub struct Replay<'a> {
    samples: std::slice::Iter<'a, Sample>,
    live: BTreeMap<u32, ProcValues>,
    exited: Vec<u32>,
}

impl<'a> Replay<'a> {
    /// Starts before the first of `samples`.
    pub fn new(samples: &'a [Sample]) -> Self {
        Self {
            samples: samples.iter(),
            live: BTreeMap::new(),
            exited: Vec::new(),
        }
    }

    /// The next sample and every process present in it, by slot (exited ones included in the
    /// sample where they exit).
    pub fn step(&mut self) -> Option<(&'a Sample, &BTreeMap<u32, ProcValues>)> {
        for slot in self.exited.drain(..) {
            self.live.remove(&slot);
        }
        let sample = self.samples.next()?;
        for (slot, values) in &sample.changed {
            self.live.insert(*slot, *values);
            if values.exited {
                self.exited.push(*slot);
            }
        }
        Some((sample, &self.live))
    }
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

/// `bytes` in KiB, clamped to [`MAX_BYTES`] so the decoder takes back what is written.
fn kib(bytes: u64) -> u64 {
    bytes.min(MAX_BYTES) / KIB
}

/// `bytes` in 4 KiB pages (rounded up), clamped to [`MAX_BYTES`] like [`kib`].
fn pages(bytes: u64) -> u64 {
    bytes.min(MAX_BYTES).div_ceil(PAGE)
}

/// `count` units of `unit` bytes, refused beyond [`MAX_BYTES`] (never wrapped).
fn to_bytes(count: u64, unit: u64) -> Result<u64, DecodeError> {
    count
        .checked_mul(unit)
        .filter(|bytes| *bytes <= MAX_BYTES)
        .ok_or_else(|| {
            DecodeError(format!(
                "{count} × {unit} bytes is more memory than any machine has"
            ))
        })
}

fn system_fields(s: &SystemSample) -> [u64; 6] {
    let psi = |v: Option<f64>| {
        v.map_or(0, |v| {
            ((v * 100.0).round().max(0.0) as u64).saturating_add(1)
        })
    };
    [
        kib(s.mem_total_bytes),
        kib(s.mem_available_bytes),
        kib(s.swap_total_bytes),
        kib(s.swap_free_bytes),
        psi(s.psi_some_avg10),
        psi(s.psi_full_avg10),
    ]
}

fn system_from(f: &[u64; 6]) -> Result<SystemSample, DecodeError> {
    let psi = |v: u64| (v > 0).then(|| (v - 1) as f64 / 100.0);
    let total = to_bytes(f[0], KIB)?;
    let available = to_bytes(f[1], KIB)?;
    let used = total.saturating_sub(available);
    Ok(SystemSample {
        mem_total_bytes: total,
        mem_available_bytes: available,
        mem_used_bytes: used,
        mem_used_percent: crate::collect::system::percent(used, total),
        swap_total_bytes: to_bytes(f[2], KIB)?,
        swap_free_bytes: to_bytes(f[3], KIB)?,
        psi_some_avg10: psi(f[4]),
        psi_full_avg10: psi(f[5]),
    })
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
                comm: capped(&p.comm, MAX_COMM),
                cmdline: capped(&p.cmdline, MAX_CMDLINE),
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
            let name = capped(&gpu.name, MAX_GPU_NAME);
            let named = old.name != name;
            put_varint(out, u64::from(named));
            if named {
                put_str(out, &name);
            }
            put_delta(out, kib(old.used_bytes), kib(gpu.used_bytes));
            put_delta(out, kib(old.total_bytes), kib(gpu.total_bytes));
            put_varint(out, gpu.utilization_percent.map_or(0, |u| u64::from(u) + 1));
            self.state.gpus.insert(
                gpu.index,
                GpuDevice {
                    name,
                    ..gpu.clone()
                },
            );
        }
    }
}

/// Turns sample and identity payloads back into samples.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    /// Identities named so far (PROC records): a sample may only write these slots.
    named: u32,
    /// Σ of what every live process holds (anon + file + shmem + swap + GPU), kept as samples
    /// change it; never above [`MAX_TOTAL_BYTES`].
    live_bytes: u128,
}

/// What a process holds, for the sample total: nothing once it has exited.
fn held(values: &ProcValues) -> u128 {
    if values.exited {
        return 0;
    }
    [
        values.anon,
        values.file,
        values.shmem,
        values.swap,
        values.gpu.unwrap_or(0),
    ]
    .into_iter()
    .map(u128::from)
    .sum()
}

impl Decoder {
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

    /// Decodes one PROC record payload: a new slot (the next one) or a known one renamed.
    pub fn ident(&mut self, payload: &[u8]) -> Result<(u32, ProcIdent), DecodeError> {
        let (slot, ident) = decode_ident(payload)?;
        if slot > self.named {
            return Err(DecodeError(format!(
                "process slot {slot} named before slot {}",
                self.named
            )));
        }
        if slot == self.named {
            self.named = self
                .named
                .checked_add(1)
                .ok_or_else(|| DecodeError("too many process slots".into()))?;
        }
        Ok((slot, ident))
    }

    /// Decodes one sample payload.
    pub fn decode(&mut self, mut buf: &[u8]) -> Result<Sample, DecodeError> {
        let buf = &mut buf;
        let s = &mut self.state;
        s.time_ms = get_delta(buf, s.time_ms)?;
        if s.time_ms > MAX_TIME_MS {
            return Err(DecodeError(format!(
                "sample time {} ms is after the year 9999",
                s.time_ms
            )));
        }
        get_masked(buf, &mut s.system)?;
        get_masked(buf, &mut s.health)?;
        let system = system_from(&s.system)?;
        let gpus = self.decode_gpus(buf)?;
        let changed = self.decode_procs(buf)?;
        if buf.has_remaining() {
            return Err(DecodeError(format!(
                "{} unexpected bytes after the sample",
                buf.remaining()
            )));
        }
        let h = &self.state.health;
        Ok(Sample {
            time_unix_ms: self.state.time_ms,
            system,
            gpus,
            health: TracerHealth {
                kswapd_wakeups: h[0],
                map_full: h[1],
                ringbuf_drops: h[2],
                no_owner: h[3],
                reclaim_unmatched: h[4],
            },
            changed,
        })
    }

    fn decode_gpus(&mut self, buf: &mut &[u8]) -> Result<Vec<GpuDevice>, DecodeError> {
        let count = get_count(buf, GPU_MIN_BYTES, "GPUs")?;
        let mut seen = Vec::with_capacity(count);
        let mut used = 0u64;
        for _ in 0..count {
            let index = u32::try_from(get_varint(buf)?)
                .map_err(|_| DecodeError("GPU index out of range".into()))?;
            let gpu = self.state.gpus.entry(index).or_default();
            gpu.index = index;
            if get_varint(buf)? != 0 {
                gpu.name = get_str(buf, capped_len(MAX_GPU_NAME))?;
            }
            gpu.used_bytes = to_bytes(get_delta(buf, gpu.used_bytes / KIB)?, KIB)?;
            gpu.total_bytes = to_bytes(get_delta(buf, gpu.total_bytes / KIB)?, KIB)?;
            let util = get_varint(buf)?;
            gpu.utilization_percent = (util > 0).then(|| u32::try_from(util - 1).unwrap_or(100));
            used = used
                .checked_add(gpu.used_bytes)
                .filter(|used| *used <= MAX_TOTAL_BYTES)
                .ok_or_else(|| DecodeError("the GPUs use more than 4 EiB together".into()))?;
            seen.push(gpu.clone());
        }
        Ok(seen)
    }

    fn decode_procs(&mut self, buf: &mut &[u8]) -> Result<Vec<(u32, ProcValues)>, DecodeError> {
        let count = get_count(buf, PROC_MIN_BYTES, "processes")?;
        let mut changed = Vec::with_capacity(count);
        let mut slot = 0u32;
        for i in 0..count {
            let step = get_varint(buf)?;
            if i > 0 && step == 0 {
                return Err(DecodeError(format!("process slot {slot} written twice")));
            }
            slot = u32::try_from(step)
                .ok()
                .and_then(|step| slot.checked_add(step))
                .filter(|slot| *slot < self.named)
                .ok_or_else(|| {
                    DecodeError(format!(
                        "a process slot beyond the {} named before this sample",
                        self.named
                    ))
                })?;
            let old = self.state.procs.get(&slot).copied();
            let new = decode_proc(buf, &old.unwrap_or_default())?;
            self.live_bytes = self
                .live_bytes
                .saturating_sub(old.as_ref().map_or(0, held))
                .saturating_add(held(&new));
            self.state.procs.insert(slot, new);
            changed.push((slot, new));
        }
        if self.live_bytes > u128::from(MAX_TOTAL_BYTES) {
            return Err(DecodeError(format!(
                "the live processes hold {} bytes together, more than 4 EiB",
                self.live_bytes
            )));
        }
        for (slot, values) in &changed {
            if values.exited {
                self.state.procs.remove(slot);
            }
        }
        Ok(changed)
    }
}

mod proc_entry;

#[cfg(test)]
pub(super) mod tests;
