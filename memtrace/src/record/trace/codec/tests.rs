//! Round trips of the sample encoding — hand-made cases for each rule, then generated
//! sequences of snapshots — and the reader's promise on damaged files: every truncation and
//! every flipped bit gives an error or damage naming a byte offset at or before the damage,
//! never a panic, and everything before it reads back unchanged; hand-made samples whose
//! numbers, counts, slots or strings are out of range are errors, never overflows. (The crafted
//! traces with valid checksums are in `reader::fuzz`, which reuses this file's generators.)
use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;
use proptest::{collection::vec, prelude::*};

use super::{
    proc_entry::{ANON, FILE, GPU, PEAK, SHMEM, SWAP},
    *,
};
use crate::{
    collect::model::ProcSample,
    record::trace::{Event, Header, TraceError, TraceWriter, read_bytes},
};

const START: u64 = 1_700_000_000_000;

/// What a decoder must report for `snapshot`, given the processes live after the previous one:
/// every process of the snapshot with its values, and every process that vanished without an
/// exit sample as exited with its last values. Keyed by (pid, start time).
fn expected(
    live: &mut BTreeMap<(u32, u64), ProcValues>,
    snapshot: &Snapshot,
) -> BTreeMap<(u32, u64), ProcValues> {
    let mut out: BTreeMap<(u32, u64), ProcValues> = snapshot
        .procs
        .iter()
        .map(|p| ((p.pid, p.start_ticks), ProcValues::of(p)))
        .collect();
    for (key, old) in live.iter() {
        out.entry(*key).or_insert(ProcValues {
            exited: true,
            ..*old
        });
    }
    *live = out
        .iter()
        .filter(|(_, v)| !v.exited)
        .map(|(k, v)| (*k, *v))
        .collect();
    out
}

/// Encodes `snapshots` one after the other, decodes each payload, and checks every decoded
/// sample against what went in (memory in pages, system and GPU memory in KiB: the generators
/// only make values the encoding keeps exactly).
fn round_trip(snapshots: &[Snapshot]) -> Result<(), TestCaseError> {
    let mut encoder = Encoder::new(START);
    let mut decoder = Decoder::new(START);
    let mut slots: HashMap<u32, (u32, u64)> = HashMap::new();
    let mut samples = Vec::new();
    for snapshot in snapshots {
        let (idents, payload) = encoder.encode(snapshot);
        for (slot, ident) in idents {
            let (decoded_slot, decoded) = decoder
                .ident(&encode_ident(slot, &ident))
                .map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!((decoded_slot, &decoded), (slot, &ident));
            slots.insert(slot, (ident.pid, ident.start_ticks));
        }
        let sample = decoder
            .decode(&payload)
            .map_err(|e| TestCaseError::fail(e.0))?;
        prop_assert_eq!(sample.time_unix_ms, snapshot.time_unix_ms);
        prop_assert_eq!(&sample.system, &snapshot.system);
        prop_assert_eq!(&sample.health, &snapshot.health);
        prop_assert_eq!(&sample.gpus, &snapshot.gpus);
        samples.push(sample);
    }
    let mut replay = Replay::new(&samples);
    let mut live = BTreeMap::new();
    for snapshot in snapshots {
        let (_, procs) = replay
            .step()
            .ok_or_else(|| TestCaseError::fail("a sample per snapshot"))?;
        let got: BTreeMap<(u32, u64), ProcValues> = procs
            .iter()
            .map(|(slot, v)| (slots.get(slot).copied().unwrap_or_default(), *v))
            .collect();
        prop_assert_eq!(got, expected(&mut live, snapshot));
    }
    Ok(())
}

fn proc(pid: u32, anon_pages: u64) -> ProcSample {
    let anon = anon_pages * PAGE;
    ProcSample {
        pid,
        ppid: 1,
        comm: format!("p{pid}").into(),
        start_ticks: u64::from(pid) * 10,
        anon_bytes: anon,
        rss_bytes: anon,
        peak_rss_bytes: anon,
        ..ProcSample::default()
    }
}

fn snapshot(t: u64, procs: Vec<ProcSample>) -> Snapshot {
    Snapshot {
        time_unix_ms: START + t * 1000,
        procs,
        ..Snapshot::default()
    }
}

#[test]
fn unchanged_processes_cost_one_byte_and_come_back() {
    let first = snapshot(0, vec![proc(10, 5), proc(11, 7)]);
    let second = snapshot(1, vec![proc(10, 5), proc(11, 9)]);
    let mut encoder = Encoder::new(START);
    let (_, _) = encoder.encode(&first);
    let (idents, payload) = encoder.encode(&second);
    assert!(idents.is_empty(), "known processes are not named again");
    // time delta, two empty masks, no GPUs, one changed process: slot step, mask, anon delta.
    assert!(payload.len() <= 10, "{} bytes", payload.len());
    round_trip(&[first, second]).expect("round trip");
}

#[test]
fn exits_vanishing_processes_and_pid_reuse() {
    let mut exited = proc(11, 9);
    exited.exited = true;
    exited.oom_killed = true;
    let mut reused = proc(11, 1);
    reused.start_ticks = 999;
    round_trip(&[
        snapshot(0, vec![proc(10, 5), proc(11, 7), proc(12, 3)]),
        // 11 exits with a sample, 12 vanishes without one.
        snapshot(1, vec![proc(10, 5), exited]),
        // pid 11 again, but another process (another start time): a new slot.
        snapshot(2, vec![proc(10, 6), reused]),
    ])
    .expect("round trip");
}

#[test]
fn renamed_process_is_named_again() {
    let mut renamed = proc(10, 5);
    renamed.comm = "decoder".into();
    let mut encoder = Encoder::new(START);
    let _ = encoder.encode(&snapshot(0, vec![proc(10, 5)]));
    let (idents, _) = encoder.encode(&snapshot(1, vec![renamed]));
    assert_eq!(idents.len(), 1);
    assert_eq!(idents[0].1.comm, "decoder");
}

#[test]
fn long_command_lines_are_capped_at_a_char_boundary() {
    let long = "é".repeat(MAX_CMDLINE);
    let capped = capped(&long, MAX_CMDLINE);
    assert!(capped.len() <= capped_len(MAX_CMDLINE));
    assert!(capped.ends_with('…'));
}

#[test]
fn truncated_or_extended_payloads_are_errors() {
    let mut encoder = Encoder::new(START);
    let (idents, payload) = encoder.encode(&snapshot(0, vec![proc(10, 5), proc(11, 7)]));
    for cut in 0..payload.len() {
        assert!(
            naming(&idents).decode(&payload[..cut]).is_err(),
            "a payload cut at {cut} of {} must not decode",
            payload.len()
        );
    }
    let mut longer = payload.to_vec();
    longer.push(0);
    let err = naming(&idents).decode(&longer).expect_err("trailing byte");
    assert!(err.0.contains("unexpected bytes"), "{}", err.0);
    assert!(naming(&idents).decode(&payload).is_ok());
    let err = Decoder::new(START)
        .decode(&payload)
        .expect_err("slots nobody named");
    assert!(err.0.contains("slot beyond the 0 named"), "{}", err.0);
}

/// A decoder that has read the identity records `idents`.
fn naming(idents: &[(u32, ProcIdent)]) -> Decoder {
    let mut decoder = Decoder::new(START);
    for (slot, ident) in idents {
        decoder
            .ident(&encode_ident(*slot, ident))
            .expect("identity decodes");
    }
    decoder
}

fn arb_proc(pid: u32) -> impl Strategy<Value = ProcSample> {
    (
        (0u64..1 << 22, 0u64..1 << 20, 0u64..1 << 12, 0u64..1 << 12),
        (0u64..1 << 12, any::<bool>()),
        (0u64..1 << 40, 0u64..1 << 10, 0u64..1 << 40),
        proptest::option::of(0u64..1 << 26),
        (any::<bool>(), any::<bool>()),
        0u64..3,
    )
        .prop_map(
            move |(
                (anon, file, shmem, swap),
                (extra_peak, peak_is_rss),
                counters,
                gpu_kib,
                flags,
                generation,
            )| {
                let rss = (anon + file + shmem) * PAGE;
                ProcSample {
                    pid,
                    ppid: 1,
                    comm: format!("p{pid}").into(),
                    cmdline: format!("p{pid} --clip {generation}").into(),
                    start_ticks: u64::from(pid) * 100 + generation,
                    anon_bytes: anon * PAGE,
                    file_bytes: file * PAGE,
                    shmem_bytes: shmem * PAGE,
                    swap_bytes: swap * PAGE,
                    rss_bytes: rss,
                    peak_rss_bytes: if peak_is_rss {
                        rss
                    } else {
                        rss + extra_peak * PAGE
                    },
                    faults: counters.0,
                    reclaim_count: counters.1,
                    reclaim_stall_ns: counters.2,
                    gpu_bytes: gpu_kib.map(|k| k * KIB),
                    exited: flags.0 && flags.1,
                    oom_killed: flags.0 && !flags.1,
                    ..ProcSample::default()
                }
            },
        )
}

/// Any snapshot of up to 12 of 23 processes, with system, health and GPU values the encoding
/// keeps exactly.
pub(crate) fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let procs = proptest::sample::subsequence((1u32..24).collect::<Vec<_>>(), 0..12)
        .prop_flat_map(|pids| pids.into_iter().map(arb_proc).collect::<Vec<_>>());
    let system = (0u64..1 << 26, 0u64..1 << 26, 0u64..1 << 24, 0u64..1 << 24)
        .prop_flat_map(|kib| {
            (
                Just(kib),
                proptest::option::of(0u32..10_000),
                proptest::option::of(0u32..10_000),
            )
        })
        .prop_map(|((total, available, swap_total, swap_free), some, full)| {
            let mut system = crate::collect::system::from_parts(
                &crate::host::procfs::MemInfo {
                    total: total * KIB,
                    available: available * KIB,
                    swap_total: swap_total * KIB,
                    swap_free: swap_free * KIB,
                    ..Default::default()
                },
                None,
            );
            system.psi_some_avg10 = some.map(|s| f64::from(s) / 100.0);
            system.psi_full_avg10 = full.map(|f| f64::from(f) / 100.0);
            system
        });
    let health = vec(0u64..1 << 30, 5).prop_map(|h| TracerHealth {
        kswapd_wakeups: h[0],
        map_full: h[1],
        ringbuf_drops: h[2],
        no_owner: h[3],
        reclaim_unmatched: h[4],
    });
    let gpus = proptest::sample::subsequence(vec![0u32, 1, 2], 0..3).prop_flat_map(|indexes| {
        indexes
            .into_iter()
            .map(|index| {
                (
                    0u64..1 << 27,
                    1u64..1 << 27,
                    proptest::option::of(0u32..=100),
                )
                    .prop_map(move |(used, total, utilization_percent)| {
                        GpuDevice {
                            index,
                            name: format!("GPU {index}"),
                            used_bytes: used * KIB,
                            total_bytes: total * KIB,
                            utilization_percent,
                        }
                    })
            })
            .collect::<Vec<_>>()
    });
    (0u64..1 << 40, procs, system, health, gpus).prop_map(|(t, procs, system, health, gpus)| {
        Snapshot {
            time_unix_ms: START + t,
            window_s: 1.0,
            system,
            procs,
            health,
            gpus,
            ..Snapshot::default()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any sequence of snapshots decodes to exactly what was encoded.
    #[test]
    fn any_snapshot_sequence_round_trips(snapshots in vec(arb_snapshot(), 1..12)) {
        round_trip(&snapshots)?;
    }
}

/// A small but complete trace file (header, identities, samples, events, end) of `snapshots`.
pub(crate) fn trace_file(snapshots: &[Snapshot]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.mtrace");
    let header = Header {
        start_unix_ms: START,
        interval_ms: 1000,
        scope: "proptest".into(),
        ..Header::default()
    };
    let mut writer = TraceWriter::create(&path, &header).expect("create");
    for (i, snapshot) in snapshots.iter().enumerate() {
        writer.sample(snapshot).expect("sample");
        writer
            .event(
                snapshot.time_unix_ms,
                &Event::StageBegin {
                    stage: format!("stage-{i}"),
                    clip: Some(i.to_string()),
                    source: "cli".into(),
                    timing: crate::record::trace::MarkTiming::Acknowledged,
                },
            )
            .expect("event");
    }
    writer
        .finish(&serde_json::json!({"ok": true}))
        .expect("finish");
    std::fs::read(&path).expect("read back")
}

/// Checks a damaged copy: `damage_at` is the first byte that differs from the good file (its
/// length, for a truncation). Either the reader refuses with an offset at or before it, or it
/// reads a prefix of the good samples and names the damage at or before it — or, when the
/// cut falls between records, reads a clean prefix of a trace that simply ends early.
fn check_damaged(damaged: &[u8], damage_at: usize, good: &[Sample]) -> Result<(), TestCaseError> {
    match read_bytes(damaged) {
        Err(err) => {
            let offset = err.offset();
            prop_assert!(
                offset.is_some_and(|o| o <= damage_at as u64),
                "{err} (damage at {damage_at})"
            );
        }
        Ok(trace) => {
            prop_assert!(trace.samples.len() <= good.len());
            prop_assert_eq!(&trace.samples[..], &good[..trace.samples.len()]);
            match &trace.damage {
                Some(err) => prop_assert!(
                    err.offset().is_some_and(|o| o <= damage_at as u64),
                    "{err} (damage at {damage_at})"
                ),
                None => prop_assert!(
                    damage_at >= damaged.len() && trace.end.is_none(),
                    "undamaged reading of a damaged file (damage at {damage_at})"
                ),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every truncation and every single flipped bit is reported with a byte offset at or
    /// before the damage, never a panic, and what precedes it reads back unchanged.
    #[test]
    fn damage_is_an_error_with_an_offset_never_a_panic(
        snapshots in vec(arb_snapshot(), 1..6),
        cut in any::<proptest::sample::Index>(),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let data = trace_file(&snapshots);
        let good = read_bytes(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(good.damage.is_none() && good.end.is_some());
        let cut = cut.index(data.len());
        check_damaged(&data[..cut], cut, &good.samples)?;
        let at = flip.index(data.len());
        let mut flipped = data.clone();
        flipped[at] ^= 1 << bit;
        check_damaged(&flipped, at, &good.samples)?;
    }
}

#[test]
fn every_cut_of_a_small_trace_is_handled() {
    let data = trace_file(&[
        snapshot(0, vec![proc(10, 5), proc(11, 7)]),
        snapshot(1, vec![proc(10, 6)]),
    ]);
    let good = read_bytes(&data).expect("reads");
    for cut in 0..data.len() {
        check_damaged(&data[..cut], cut, &good.samples).expect("cut");
    }
}

#[test]
fn version_errors_name_their_offset() {
    let mut data = trace_file(&[snapshot(0, vec![proc(10, 5)])]);
    data[MAGIC_LEN] ^= 2;
    let err = read_bytes(&data).expect_err("unknown version");
    assert!(matches!(err, TraceError::Version(_)));
    assert_eq!(err.offset(), Some(MAGIC_LEN as u64));
}

const MAGIC_LEN: usize = crate::record::trace::MAGIC.len();

mod hostile;
