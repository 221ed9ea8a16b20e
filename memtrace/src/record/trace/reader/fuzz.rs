//! The reader's fuzz target, run as an ordinary test with a bounded number of cases: a corpus
//! of crafted traces whose checksums are all VALID, so the decoder really reads every mutation.
//! Each starts from a real trace (the codec tests' generator), mutates the payloads of its
//! records — varints at their extremes spliced in (huge counts, slots, deltas, lengths),
//! payloads cut short (strings truncated), bytes overwritten or inserted at random — or drops,
//! repeats or re-kinds whole records, then frames every record again with [`frame::encode`].
//!
//! Checked for each (these run in debug builds, where an integer overflow panics): the reader
//! never panics; damage is reported with a byte offset, never before the first record that
//! changed, and everything before that record reads back unchanged; the decoded trace takes at
//! most [`MAX_MEMORY_RATIO`] times the file's size. The report and the exports run on the same
//! corpus in `analyze::report::fuzz`.
use std::mem::size_of;

use proptest::{collection::vec, prelude::*, sample::Index};

use crate::{
    collect::model::GpuDevice,
    record::trace::{
        MAGIC, TraceData, TraceError,
        codec::{ProcIdent, ProcValues, Sample, put_varint, tests},
        frame::{self, kind},
        read_bytes,
        reader::TimedEvent,
    },
};

/// Decoded bytes per file byte, at most (the worst record shapes need ~50).
pub const MAX_MEMORY_RATIO: usize = 64;

/// Which record a mutation changes: any, or (half the time) a sample, where most decoding is.
#[derive(Clone, Debug)]
pub struct Target {
    at: Index,
    sample: bool,
}

impl Target {
    fn index(&self, records: &[(u8, Vec<u8>)]) -> usize {
        let samples: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].0 == kind::SAMPLE)
            .collect();
        if self.sample && !samples.is_empty() {
            samples[self.at.index(samples.len())]
        } else {
            self.at.index(records.len())
        }
    }
}

/// One change to a trace's records.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Replaces up to `len` payload bytes at `at` with the varint `value`.
    Varint {
        record: Target,
        at: Index,
        len: usize,
        value: u64,
    },
    /// Cuts the payload at `at`.
    Truncate { record: Target, at: Index },
    /// Overwrites payload bytes from `at`.
    Overwrite {
        record: Target,
        at: Index,
        bytes: Vec<u8>,
    },
    /// Inserts bytes into the payload at `at`.
    Insert {
        record: Target,
        at: Index,
        bytes: Vec<u8>,
    },
    /// Repeats the record `times` more times.
    Repeat { record: Target, times: usize },
    /// Drops the record.
    Drop { record: Target },
    /// Gives the record another kind.
    Kind { record: Target, kind: u8 },
}

/// Numbers at the edges of every range the decoder handles (raw varints: zigzagged deltas
/// are their halves).
fn extreme() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(127),
        Just(128),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        Just(1 << 40),
        Just(1 << 45),
        Just(1 << 52),
        Just(1 << 56),
        Just(1 << 62),
        Just(i64::MAX as u64),
        Just(1 << 63),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let record = (any::<Index>(), any::<bool>()).prop_map(|(at, sample)| Target { at, sample });
    let at = any::<Index>();
    prop_oneof![
        4 => (record.clone(), at.clone(), 0usize..=10, extreme())
            .prop_map(|(record, at, len, value)| Mutation::Varint { record, at, len, value }),
        1 => (record.clone(), at.clone())
            .prop_map(|(record, at)| Mutation::Truncate { record, at }),
        2 => (record.clone(), at.clone(), vec(any::<u8>(), 1..16))
            .prop_map(|(record, at, bytes)| Mutation::Overwrite { record, at, bytes }),
        1 => (record.clone(), at, vec(any::<u8>(), 1..16))
            .prop_map(|(record, at, bytes)| Mutation::Insert { record, at, bytes }),
        1 => (record.clone(), 1usize..300)
            .prop_map(|(record, times)| Mutation::Repeat { record, times }),
        1 => record.clone().prop_map(|record| Mutation::Drop { record }),
        1 => (record, kind::HEADER..=kind::END)
            .prop_map(|(record, kind)| Mutation::Kind { record, kind }),
    ]
}

/// The records of a well-formed trace, after the magic and version.
fn records(data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut offset = MAGIC.len() + 2;
    let mut out = Vec::new();
    while let Ok(Some(record)) = frame::decode(&data[offset..], offset as u64) {
        out.push((record.kind, record.payload.to_vec()));
        offset += record.len;
    }
    out
}

impl Mutation {
    fn record(&self) -> &Target {
        match self {
            Self::Varint { record, .. }
            | Self::Truncate { record, .. }
            | Self::Overwrite { record, .. }
            | Self::Insert { record, .. }
            | Self::Repeat { record, .. }
            | Self::Drop { record }
            | Self::Kind { record, .. } => record,
        }
    }
}

fn apply(records: &mut Vec<(u8, Vec<u8>)>, mutation: &Mutation) {
    let at_record = mutation.record().index(records);
    let (kind, payload) = &mut records[at_record];
    match mutation {
        Mutation::Varint { at, len, value, .. } => {
            let at = at.index(payload.len() + 1);
            let end = (at + len).min(payload.len());
            let mut varint = bytes::BytesMut::new();
            put_varint(&mut varint, *value);
            payload.splice(at..end, varint.iter().copied());
        }
        Mutation::Truncate { at, .. } => payload.truncate(at.index(payload.len() + 1)),
        Mutation::Overwrite { at, bytes, .. } => {
            let at = at.index(payload.len() + 1);
            for (slot, byte) in payload.iter_mut().skip(at).zip(bytes) {
                *slot = *byte;
            }
        }
        Mutation::Insert { at, bytes, .. } => {
            let at = at.index(payload.len() + 1);
            payload.splice(at..at, bytes.iter().copied());
        }
        Mutation::Kind { kind: new, .. } => *kind = *new,
        Mutation::Repeat { times, .. } => {
            let copy = (*kind, payload.clone());
            records.splice(at_record..at_record, std::iter::repeat_n(copy, *times));
        }
        Mutation::Drop { .. } => {
            if records.len() > 1 {
                records.remove(at_record);
            }
        }
    }
}

/// A crafted trace: its bytes, the real trace it was made from, and where the first record
/// that differs from it starts (with how many samples precede that record).
#[derive(Debug)]
pub struct Crafted {
    /// The file.
    pub data: Vec<u8>,
    /// The trace it was made from.
    pub good: TraceData,
    /// Offset of the first changed record (the file's length when none changed).
    pub first_changed: u64,
    /// SAMPLE records before it.
    pub samples_before: usize,
}

/// Frames `records` into a trace file (valid checksums).
fn assemble(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut data = MAGIC.to_vec();
    data.extend_from_slice(&crate::record::trace::VERSION.to_le_bytes());
    for (kind, payload) in records {
        data.extend_from_slice(&frame::encode(*kind, payload));
    }
    data
}

/// Real traces with one to four mutations each.
pub fn crafted() -> impl Strategy<Value = Crafted> {
    (vec(tests::arb_snapshot(), 1..5), vec(mutation(), 1..4)).prop_map(|(snapshots, mutations)| {
        let original = tests::trace_file(&snapshots);
        let good = read_bytes(&original).expect("the generator writes good traces");
        let before = records(&original);
        let mut after = before.clone();
        for mutation in &mutations {
            apply(&mut after, mutation);
        }
        let same = before
            .iter()
            .zip(&after)
            .take_while(|(a, b)| a == b)
            .count();
        let first_changed = (MAGIC.len() + 2) as u64
            + after[..same]
                .iter()
                .map(|(_, p)| (p.len() + frame::OVERHEAD) as u64)
                .sum::<u64>();
        let samples_before = after[..same]
            .iter()
            .filter(|(k, _)| *k == kind::SAMPLE)
            .count();
        Crafted {
            data: assemble(&after),
            good,
            first_changed,
            samples_before,
        }
    })
}

/// What a decoded trace holds on the heap, give or take the allocator's rounding.
pub fn decoded_bytes(trace: &TraceData) -> usize {
    let samples: usize = trace
        .samples
        .iter()
        .map(|s| {
            s.changed.capacity() * size_of::<(u32, ProcValues)>()
                + s.gpus.capacity() * size_of::<GpuDevice>()
                + s.gpus.iter().map(|g| g.name.capacity()).sum::<usize>()
        })
        .sum();
    let idents: usize = trace
        .idents
        .iter()
        .map(|i| i.comm.capacity() + i.cmdline.capacity())
        .sum();
    // Events and the header: their JSON is longer than their strings.
    let json: usize = trace
        .events
        .iter()
        .map(|e| serde_json::to_vec(&e.event).map_or(0, |j| j.len()))
        .sum::<usize>()
        + serde_json::to_vec(&trace.header).map_or(0, |j| j.len());
    trace.samples.capacity() * size_of::<Sample>()
        + samples
        + trace.idents.capacity() * size_of::<ProcIdent>()
        + idents
        + trace.events.capacity() * size_of::<TimedEvent>()
        + json
}

/// Checks one crafted trace against the reader's promises.
pub fn check(crafted: &Crafted) -> Result<Option<TraceData>, TestCaseError> {
    let len = crafted.data.len() as u64;
    let offset_ok = |err: &TraceError| {
        err.offset()
            .is_some_and(|o| o >= crafted.first_changed.min(10) && o <= len)
    };
    match read_bytes(&crafted.data) {
        Err(err) => {
            prop_assert!(
                offset_ok(&err),
                "{err} (first change at {})",
                crafted.first_changed
            );
            prop_assert!(
                err.offset().is_some_and(|o| o >= crafted.first_changed),
                "{err} before the first change at {}",
                crafted.first_changed
            );
            Ok(None)
        }
        Ok(trace) => {
            if let Some(err) = &trace.damage {
                prop_assert!(
                    err.offset()
                        .is_some_and(|o| o >= crafted.first_changed && o <= len),
                    "{err} (first change at {}, {len} bytes)",
                    crafted.first_changed
                );
            }
            let before = crafted.samples_before;
            prop_assert!(trace.samples.len() >= before);
            prop_assert_eq!(&trace.samples[..before], &crafted.good.samples[..before]);
            let decoded = decoded_bytes(&trace);
            prop_assert!(
                decoded <= MAX_MEMORY_RATIO * crafted.data.len(),
                "{decoded} decoded bytes from a {len}-byte file"
            );
            Ok(Some(trace))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Crafted traces with valid checksums: no panic, damage with an offset no earlier than the
    /// first changed record, what precedes it unchanged, memory within a multiple of the file.
    #[test]
    fn crafted_traces_never_panic_and_stay_bounded(crafted in crafted()) {
        check(&crafted)?;
    }
}

/// N named processes written once, then M samples in which nothing changes: every process is
/// carried forward through every sample. Decoding used to copy all N into each of the M
/// samples (N × M × 96 bytes: 20 000 × 20 000 took > 1 GiB from a 607 KB file); now it keeps
/// what the file holds. Small here (2 000 × 2 000: the old reader needed ~380 MiB).
#[test]
fn processes_carried_through_many_samples_cost_nothing_per_sample() {
    let n = 2_000u32;
    let m = 2_000;
    let mut records = Vec::new();
    let header = crate::record::trace::Header {
        start_unix_ms: 1_700_000_000_000,
        ..Default::default()
    };
    records.push((kind::HEADER, serde_json::to_vec(&header).expect("json")));
    for slot in 0..n {
        let ident = ProcIdent {
            pid: 1000 + slot,
            comm: "p".into(),
            ..ProcIdent::default()
        };
        records.push((
            kind::PROC,
            crate::record::trace::codec::encode_ident(slot, &ident).to_vec(),
        ));
    }
    let mut first = bytes::BytesMut::new();
    for v in [2, 0, 0, 0, u64::from(n)] {
        put_varint(&mut first, v);
    }
    for slot in 0..n {
        // Step, mask ANON, +100 pages.
        for v in [u64::from(slot > 0), 1, 200] {
            put_varint(&mut first, v);
        }
    }
    records.push((kind::SAMPLE, first.to_vec()));
    for _ in 0..m {
        // One ms later, nothing changed.
        records.push((kind::SAMPLE, vec![2, 0, 0, 0, 0]));
    }
    let data = assemble(&records);
    let trace = read_bytes(&data).expect("reads");
    assert!(trace.damage.is_none(), "{:?}", trace.damage);
    assert_eq!(trace.samples.len(), m + 1);
    let mut replay = trace.replay();
    let mut steps = 0;
    while let Some((_, live)) = replay.step() {
        assert_eq!(live.len(), n as usize, "all carried forward");
        steps += 1;
    }
    assert_eq!(steps, m + 1);
    let decoded = decoded_bytes(&trace);
    assert!(
        decoded <= MAX_MEMORY_RATIO * data.len(),
        "{decoded} bytes decoded from {}",
        data.len()
    );
}
