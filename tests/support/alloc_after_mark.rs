//! A pipeline that allocates 128 MiB the instant after it prints a stage mark (no sleep in
//! between) and frees it before the next one, run under `memtrace run --stage-regex`: the
//! boundary sample of an exact mark (taken at the write of the line) must not include that
//! allocation; one taken when memtrace reads the line does.
use std::{path::Path, process::Command, time::Duration};

use memtrace::record::trace::{self, Event, MarkTiming};
use serde_json::Value;

use super::{MIB, output_within, test_cgroup, text};

/// The marks it prints.
pub const REGEX: &str = r"clip (?P<clip>\d+)/\d+: (?P<stage>\w+)";

/// `load` keeps nothing; `work` takes 128 MiB (every page written, by one memset) right after
/// its mark and frees it before the next `load`.
const PIPELINE: &str = r#"import time
for clip in range(1, 5):
    print(f'clip {clip}/4: load', flush=True)
    time.sleep(0.2)
    print(f'clip {clip}/4: work', flush=True)
    buf = b'\x01' * (128 << 20)
    time.sleep(0.2)
    del buf
    time.sleep(0.1)
print('clip 4/4: end', flush=True)
time.sleep(0.1)
"#;

/// What one run gave: each mark's timing and each stage run's (stage, retained bytes).
#[derive(Debug)]
pub struct Run {
    /// The timing of every stage-begin mark, in order.
    pub timings: Vec<MarkTiming>,
    /// (stage, retained bytes) of every stage run.
    pub retained: Vec<(String, i64)>,
    /// The report's text.
    pub report: String,
}

/// Runs the pipeline with `memtrace` (a `Command` for the binary, possibly wrapped) in a
/// 512 MiB memory cgroup, writing the trace to `out`.
pub fn run(mut memtrace: Command, out: &Path, name: &str) -> Run {
    let group = test_cgroup(name, 512 * MIB);
    let _ = std::fs::remove_file(out);
    let enter = format!(
        "echo $$ > '{}' && exec \"$0\" \"$@\"",
        group.path.join("cgroup.procs").display()
    );
    let output = output_within(
        memtrace
            .args(["run", "--interval", "1s", "--out"])
            .arg(out)
            .args(["--stage-regex", REGEX, "--", "sh", "-c", &enter, "python3"])
            .args(["-c", PIPELINE]),
        Duration::from_secs(60),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let data = trace::read_file(out).expect("the trace reads");
    let timings = data
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::StageBegin { timing, .. } => Some(*timing),
            _ => None,
        })
        .collect();
    let json = output_within(
        super::memtrace().arg("report").arg(out).arg("--json"),
        Duration::from_secs(30),
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    let report: Value = serde_json::from_slice(&json.stdout).expect("report JSON");
    let retained = report["stages"]
        .as_array()
        .expect("stage runs")
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap_or_default().to_owned(),
                r["host_retained"].as_i64().unwrap_or(i64::MAX),
            )
        })
        .collect();
    let plain = output_within(
        super::memtrace().arg("report").arg(out),
        Duration::from_secs(30),
    );
    Run {
        timings,
        retained,
        report: text(&plain.stdout),
    }
}
