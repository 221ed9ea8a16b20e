//! Exact stdout marks: under `memtrace run --stage-regex` with eBPF, a mark's boundary sample
//! describes the moment the pipeline wrote the mark line, so an allocation the pipeline makes
//! the instant after printing it belongs to the stage that begins, not to the one before.
//! (Without eBPF the same marks fall back to read time: `no_ebpf.rs` checks that the trace and
//! the report say so.) Needs root; `cargo xtask test` runs it.
mod support;

use std::path::Path;

use memtrace::record::trace::MarkTiming;
use support::{MIB, alloc_after_mark, memtrace, require_root};

/// The most a `load` run may retain: it keeps nothing, and the 128 MiB `work` takes right
/// after its own mark must not show up in `load`'s end.
const LOAD_KEEPS_AT_MOST: i64 = 3 * MIB as i64 / 2;

#[test]
fn an_allocation_right_after_a_stdout_mark_belongs_to_the_stage_it_begins() {
    require_root();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exact-marks.mtrace");
    let run = alloc_after_mark::run(memtrace(), &out, "exact-marks");
    let loads: Vec<i64> = run
        .retained
        .iter()
        .filter(|(stage, _)| stage == "load")
        .map(|(_, bytes)| *bytes)
        .collect();
    assert_eq!(loads.len(), 4, "{:?}", run.retained);
    assert!(
        loads.iter().all(|b| b.abs() <= LOAD_KEEPS_AT_MOST),
        "load runs retained {:?} MiB: the boundary sample caught work's allocation\n{}",
        loads.iter().map(|b| b / MIB as i64).collect::<Vec<_>>(),
        run.report
    );
    let works: Vec<i64> = run
        .retained
        .iter()
        .filter(|(stage, _)| stage == "work")
        .map(|(_, bytes)| *bytes)
        .collect();
    assert!(
        works.iter().all(|b| b.abs() <= LOAD_KEEPS_AT_MOST),
        "work runs take and free their 128 MiB within the stage: {works:?}"
    );
    assert_eq!(
        run.timings,
        vec![MarkTiming::Write; 9],
        "every mark matched to its write"
    );
    assert!(
        run.report
            .contains("9 exact (sampled at the pipeline's write of the mark line)"),
        "{}",
        run.report
    );
    assert!(!run.report.contains("approximate"), "{}", run.report);
    let _ = std::fs::remove_file(&out);
}
