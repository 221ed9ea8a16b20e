//! `cargo xtask bench trace`: size and speed of one hour of 100 processes at 1 Hz, written
//! through the real writer — the memtrace trace against the same data as JSON lines (its own
//! export, the baseline any tool could write), over several rounds in one invocation.
//!
//! Usage: `bench_trace [ROUNDS]` (default 3). Prints one table; no assertions.
#[path = "support/synthetic_trace.rs"]
mod synthetic_trace;

use std::{
    io::{BufRead as _, BufWriter},
    path::Path,
    time::{Duration, Instant},
};

use memtrace::{
    analyze::{
        export::{self, Format},
        report,
    },
    record::trace,
};
use synthetic_trace::synthetic;

/// Median of `values` (which it sorts).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Spread of `values`: max − min, as a percentage of the median.
fn spread_percent(values: &[f64], median: f64) -> f64 {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    (max - min) / median * 100.0
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// One round on a trace of `busy` busy processes: every timing in ms.
fn round(dir: &Path, busy: u32) -> Vec<(&'static str, f64)> {
    let path = dir.join(format!("hour-{busy}.mtrace"));
    let write_cpu = synthetic(&path, 3600, 100, busy);
    let began = Instant::now();
    let data = trace::read_file(&path).expect("reads");
    let read = began.elapsed();
    let began = Instant::now();
    let analysis = report::analyze(&data);
    let text = report::text::render(&analysis, "hour");
    let html = report::html::render(&analysis);
    let analyze = began.elapsed();
    assert!(!text.is_empty() && !html.is_empty());
    let mut out = vec![
        ("write (writer CPU, 3600 samples)", ms(write_cpu)),
        ("read", ms(read)),
        ("report (text + HTML)", ms(analyze)),
    ];
    for (format, name) in [
        (Format::Perfetto, "export perfetto"),
        (Format::Csv, "export csv"),
    ] {
        let began = Instant::now();
        let mut sink = BufWriter::new(std::io::sink());
        export::write(&data, format, &mut sink).expect("export");
        out.push((name, ms(began.elapsed())));
    }
    // The baseline: the same data as JSON lines, written and parsed back.
    let jsonl = dir.join(format!("hour-{busy}.jsonl"));
    let began = Instant::now();
    let mut file = BufWriter::new(std::fs::File::create(&jsonl).expect("create jsonl"));
    export::write(&data, Format::Jsonl, &mut file).expect("jsonl");
    drop(file);
    out.push(("baseline: write JSON lines", ms(began.elapsed())));
    let began = Instant::now();
    let reader = std::io::BufReader::new(std::fs::File::open(&jsonl).expect("open jsonl"));
    let mut lines = 0usize;
    for line in reader.lines() {
        let line = line.expect("line");
        let _: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        lines += 1;
    }
    assert!(lines > 3600);
    out.push(("baseline: parse JSON lines", ms(began.elapsed())));
    out
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("temp dir");
    for busy in [10, 100] {
        let mut timings: Vec<(&'static str, Vec<f64>)> = Vec::new();
        for _ in 0..rounds {
            for (i, (name, value)) in round(dir.path(), busy).into_iter().enumerate() {
                match timings.get_mut(i) {
                    Some((_, values)) => values.push(value),
                    None => timings.push((name, vec![value])),
                }
            }
        }
        let size = |ext: &str| {
            std::fs::metadata(dir.path().join(format!("hour-{busy}.{ext}"))).map_or(0, |m| m.len())
        };
        let (ours, jsonl) = (size("mtrace"), size("jsonl"));
        println!(
            "\none hour, 100 processes at 1 Hz, {busy} changing every second ({rounds} rounds)"
        );
        println!(
            "size: trace {:.1} KiB, JSON lines {:.1} KiB (trace / JSON lines = {:.3})",
            ours as f64 / 1024.0,
            jsonl as f64 / 1024.0,
            ours as f64 / jsonl as f64
        );
        println!("{:<34} {:>12} {:>10}", "step", "median ms", "spread %");
        let mut medians = std::collections::HashMap::new();
        for (name, values) in &mut timings {
            let m = median(values);
            medians.insert(*name, m);
            println!("{name:<34} {m:>12.1} {:>10.1}", spread_percent(values, m));
        }
        if let (Some(read), Some(parse)) = (
            medians.get("read"),
            medians.get("baseline: parse JSON lines"),
        ) {
            println!("read / parse JSON lines = {:.3}", read / parse);
        }
    }
}
