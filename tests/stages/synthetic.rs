//! Tests on synthetic traces written through the real writer (no root needed): CSV/JSONL round
//! trips, the Perfetto tracks, damaged traces, refusals, and the one-hour size.
use std::time::Duration;

use memtrace::{
    analyze::{
        export::{self, Format},
        report,
    },
    record::trace::{self},
};
use serde_json::Value;

use super::{
    finish, scratch,
    support::{
        memtrace,
        synthetic_trace::{proc, synthetic},
    },
    text,
};

/// CSV and JSONL carry a sample's values unchanged.
#[test]
fn csv_and_jsonl_round_trip_a_sample() {
    let path = scratch("round.mtrace");
    synthetic(&path, 5, 3, 3);
    let data = trace::read_file(&path).expect("reads");
    let original = proc(
        101,
        (64 << 20) + 4 * 4096 * 3 + ((4 * 2_654_435_761 + 1) % 97) * 4096,
        4,
    );
    let mut csv = Vec::new();
    export::write(&data, Format::Csv, &mut csv).expect("csv");
    let csv = text(&csv);
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let row = csv
        .lines()
        .find(|l| l.starts_with("1700000004000,101,"))
        .expect("row of pid 101 at t=4");
    let get = |name: &str| {
        let at = header.iter().position(|h| *h == name).expect("column");
        row.split(',').nth(at).expect("field").to_owned()
    };
    assert_eq!(get("anon_bytes"), original.anon_bytes.to_string());
    assert_eq!(get("rss_bytes"), original.rss_bytes.to_string());
    assert_eq!(get("faults"), original.faults.to_string());
    assert_eq!(get("comm"), "worker-101");
    assert_eq!(get("stage"), "decode");
    let mut jsonl = Vec::new();
    export::write(&data, Format::Jsonl, &mut jsonl).expect("jsonl");
    let line = text(&jsonl)
        .lines()
        .filter(|l| l.contains("\"sample\""))
        .nth(4)
        .expect("5th sample")
        .to_owned();
    let parsed: export::jsonl::Line = serde_json::from_str(&line).expect("JSONL line parses");
    let export::jsonl::Line::Sample {
        procs,
        time_unix_ms,
        ..
    } = parsed
    else {
        panic!("not a sample")
    };
    assert_eq!(time_unix_ms, 1_700_000_004_000);
    let back = procs.into_iter().find(|p| p.pid == 101).expect("pid 101");
    assert_eq!(back, original);
}

/// The Perfetto export is JSON with process counter tracks, stage slices and process names.
#[test]
fn perfetto_export_has_the_tracks() {
    let path = scratch("perfetto.mtrace");
    synthetic(&path, 40, 4, 2);
    let out = scratch("perfetto.json");
    let result = finish(
        memtrace()
            .arg("export")
            .arg(&path)
            .args(["--format", "perfetto", "-o"])
            .arg(&out),
        Duration::from_secs(60),
    );
    assert!(result.status.success(), "{}", text(&result.stderr));
    let json: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("written")).expect("valid JSON");
    let events = json["traceEvents"].as_array().expect("traceEvents");
    let has = |ph: &str, name: &str| {
        events
            .iter()
            .any(|e| e["ph"] == ph && e["name"].as_str().is_some_and(|n| n.contains(name)))
    };
    assert!(has("C", "memory MiB"), "per-process counters");
    assert!(has("C", "tree memory MiB"), "tree total");
    assert!(has("X", "matte clip 0"), "stage slices");
    assert!(has("M", "process_name"));
    let pids: std::collections::HashSet<u64> = events
        .iter()
        .filter(|e| e["ph"] == "C")
        .filter_map(|e| e["pid"].as_u64())
        .collect();
    assert!(
        pids.len() >= 5,
        "a counter track per process plus the tree: {pids:?}"
    );
}

/// Damage: one error line with the byte offset, and the report of everything before it.
#[test]
fn corrupt_trace_names_the_offset_and_still_reports() {
    let path = scratch("corrupt.mtrace");
    synthetic(&path, 30, 3, 3);
    let mut data = std::fs::read(&path).expect("read");
    let at = data.len() * 2 / 3;
    data[at] ^= 0xff;
    std::fs::write(&path, &data).expect("write");
    let result = finish(memtrace().arg("report").arg(&path), Duration::from_secs(60));
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("corrupt at byte "), "{stderr}");
    assert!(
        text(&result.stdout).contains("samples over"),
        "report before the damage"
    );
    std::fs::write(&path, &data[..data.len() / 2]).expect("truncate");
    let result = finish(memtrace().arg("report").arg(&path), Duration::from_secs(60));
    assert!(!result.status.success());
    assert!(
        text(&result.stderr).contains("at byte "),
        "{}",
        text(&result.stderr)
    );
    std::fs::write(&path, b"not a trace").expect("write");
    let result = finish(memtrace().arg("report").arg(&path), Duration::from_secs(60));
    assert!(
        text(&result.stderr).contains("not a memtrace trace"),
        "{}",
        text(&result.stderr)
    );
}

/// Unknown format, unwritable output and a mark outside `run` are clear one-line errors.
#[test]
fn bad_input_is_refused_clearly() {
    let path = scratch("refusals.mtrace");
    synthetic(&path, 3, 2, 2);
    let mut unknown = memtrace();
    unknown
        .arg("export")
        .arg(&path)
        .args(["--format", "xml", "-o", "/tmp/x"]);
    let mut unwritable = memtrace();
    unwritable
        .arg("export")
        .arg(&path)
        .args(["--format", "csv", "-o", "/nonexistent/dir/x.csv"]);
    let mut mark = memtrace();
    mark.args(["mark", "composite"])
        .env_remove("MEMTRACE_MARK_SOCKET");
    let cases = [
        (unknown, "unknown export format"),
        (unwritable, "cannot write /nonexistent/dir/x.csv"),
        (mark, "memtrace run"),
    ];
    for (mut cmd, want) in cases {
        let result = finish(&mut cmd, Duration::from_secs(30));
        let stderr = text(&result.stderr);
        assert!(!result.status.success(), "{want}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "want {want:?}: {stderr}");
    }
}

/// One hour of 100 processes at 1 Hz fits in 1 MiB and reads back whole; report and exports
/// handle it. (Their speed is measured by `cargo xtask bench trace`, not asserted here.)
#[test]
fn one_hour_trace_fits_in_a_mebibyte_and_reads_back() {
    let path = scratch("hour.mtrace");
    synthetic(&path, 3600, 100, 10);
    let size = std::fs::metadata(&path).expect("written").len();
    assert!(size <= 1 << 20, "{size} bytes per hour");
    let data = trace::read_file(&path).expect("reads");
    assert_eq!(data.samples.len(), 3600);
    assert!(data.damage.is_none() && data.end.is_some());
    let analysis = report::analyze(&data);
    assert!(report::text::render(&analysis, "hour").contains("samples over"));
    assert!(report::html::render(&analysis).contains("<svg"));
    for format in [Format::Perfetto, Format::Csv, Format::Jsonl] {
        let mut out = Vec::new();
        export::write(&data, format, &mut out).expect("export");
        assert!(!out.is_empty());
    }
}
