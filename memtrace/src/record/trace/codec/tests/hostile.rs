//! Hand-made sample payloads whose numbers, counts, slots or strings are out of range: each is
//! an error naming what is wrong, never an overflow, a wrapped number or a large allocation.
use super::*;

fn zigzag(delta: i64) -> u64 {
    ((delta << 1) ^ (delta >> 63)) as u64
}

/// A sample payload written by hand: time change, system field changes (mask bit, delta), the
/// GPU part as raw varints (count first; nothing means none), then (slot step, mask, deltas)
/// per process.
fn payload(
    time: i64,
    system: &[(u64, i64)],
    gpus: &[u64],
    procs: &[(u64, u64, &[i64])],
) -> BytesMut {
    let mut out = BytesMut::new();
    put_varint(&mut out, zigzag(time));
    put_varint(&mut out, system.iter().fold(0, |m, (bit, _)| m | bit));
    for (_, delta) in system {
        put_varint(&mut out, zigzag(*delta));
    }
    put_varint(&mut out, 0); // health: no field changed
    if gpus.is_empty() {
        put_varint(&mut out, 0);
    }
    for raw in gpus {
        put_varint(&mut out, *raw);
    }
    put_varint(&mut out, procs.len() as u64);
    for (step, mask, deltas) in procs {
        put_varint(&mut out, *step);
        put_varint(&mut out, *mask);
        for delta in *deltas {
            put_varint(&mut out, zigzag(*delta));
        }
    }
    out
}

/// `n` named processes (slots 0..n).
fn named(n: u32) -> Decoder {
    let idents: Vec<(u32, ProcIdent)> = (0..n)
        .map(|slot| {
            (
                slot,
                ProcIdent {
                    pid: 100 + slot,
                    ..ProcIdent::default()
                },
            )
        })
        .collect();
    naming(&idents)
}

fn refused(decoder: &mut Decoder, payload: &[u8], want: &str) {
    let err = decoder.decode(payload).expect_err(want);
    assert!(err.0.contains(want), "want {want:?}: {}", err.0);
}

/// Numbers a crafted sample takes out of range are decode errors. In debug builds each of these
/// used to panic on an overflow (pages × 4096, KiB × 1024, the GPU and system sums) and in
/// release builds to wrap into a wrong number.
#[test]
fn numbers_out_of_range_are_errors_not_wrapped() {
    // One GPU: index 0, no new name, used and total changes, no utilisation.
    let gpu = |used_kib: i64| vec![1, 0, 0, zigzag(used_kib), zigzag(1), 0];
    let cases: Vec<(BytesMut, &str)> = vec![
        // anon grows by 2^62 pages: 2^74 bytes.
        (
            payload(0, &[], &[], &[(0, ANON, &[1 << 62])]),
            "more memory than any machine has",
        ),
        // anon shrinks below 0 (used to wrap to 2^64 − 1 pages).
        (payload(0, &[], &[], &[(0, ANON, &[-1])]), "out of range"),
        // the peak and the GPU memory past 64 PiB.
        (
            payload(0, &[], &[], &[(0, PEAK, &[1 << 45])]),
            "more memory than any machine has",
        ),
        (
            payload(0, &[], &[], &[(0, GPU, &[1 << 60])]),
            "more memory than any machine has",
        ),
        // a time before 1970 (used to wrap) and after the year 9999.
        (payload(i64::MIN, &[], &[], &[]), "out of range"),
        (payload(1 << 60, &[], &[], &[]), "after the year 9999"),
        // MemTotal of 2^60 KiB.
        (
            payload(0, &[(1, 1 << 60)], &[], &[]),
            "more memory than any machine has",
        ),
        // a GPU using 2^60 KiB.
        (
            payload(0, &[], &gpu(1 << 60), &[]),
            "more memory than any machine has",
        ),
    ];
    for (payload, want) in cases {
        refused(&mut named(1), &payload, want);
    }
    // The same shapes in range decode.
    let fine = payload(
        5,
        &[(1, 1 << 20)],
        &gpu(1 << 20),
        &[(0, ANON | GPU, &[1 << 20, 1])],
    );
    let sample = named(1).decode(&fine).expect("in range");
    assert_eq!(sample.changed[0].1.anon, 1 << 32);
    assert_eq!(sample.gpus[0].used_bytes, 1 << 30);
}

/// A sample's live processes together past 4 EiB: every value is in range, their sum is not
/// (it used to overflow the report's sum: a panic in debug, a wrong peak in release).
#[test]
fn a_sample_total_beyond_4_eib_is_an_error() {
    let max_pages = (MAX_BYTES / PAGE) as i64;
    let all = ANON | FILE | SHMEM | SWAP | GPU;
    let deltas = [
        max_pages,
        max_pages,
        max_pages,
        max_pages,
        (MAX_BYTES / KIB) as i64,
    ];
    let procs: Vec<(u64, u64, &[i64])> = (0..16)
        .map(|i| (u64::from(i > 0), all, &deltas[..]))
        .collect();
    named(16)
        .decode(&payload(0, &[], &[], &procs[..12]))
        .expect("12 × 5 × 64 PiB is below 4 EiB");
    refused(
        &mut named(16),
        &payload(0, &[], &[], &procs),
        "more than 4 EiB",
    );
}

/// Counts, slots and strings a crafted sample cannot back with bytes are refused before
/// anything is allocated.
#[test]
fn counts_slots_and_strings_are_checked_before_allocating() {
    let mut huge = BytesMut::new();
    for v in [0, 0, 0, 0, 1 << 40] {
        put_varint(&mut huge, v);
    }
    refused(&mut named(1), &huge, "cannot fit");
    let mut gpus = BytesMut::new();
    for v in [0, 0, 0, 1 << 40] {
        put_varint(&mut gpus, v);
    }
    refused(&mut named(1), &gpus, "GPUs cannot fit");
    // A slot nobody named, a slot written twice.
    refused(
        &mut named(1),
        &payload(0, &[], &[], &[(1, 0, &[])]),
        "slot beyond the 1 named",
    );
    refused(
        &mut named(2),
        &payload(0, &[], &[], &[(0, 0, &[]), (0, 0, &[])]),
        "written twice",
    );
    // A GPU name longer than any GPU's.
    let mut long = BytesMut::new();
    for v in [0, 0, 0, 1, 0, 1] {
        put_varint(&mut long, v);
    }
    put_str(&mut long, &"x".repeat(4096));
    for v in [0, 0, 0, 0] {
        put_varint(&mut long, v);
    }
    refused(&mut named(1), &long, "at most");
    // Identities must come in slot order.
    let err = Decoder::new(START)
        .ident(&encode_ident(5, &ProcIdent::default()))
        .expect_err("slot 5 first");
    assert!(err.0.contains("named before slot 0"), "{}", err.0);
}
