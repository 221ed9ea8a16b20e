//! The verdict corpus: small pipelines under `tests/corpus/`, each run under the real
//! `memtrace run --stage-regex …` (the demo through its socket marks) in its own 1 GiB memory
//! cgroup, [`RUNS`] times, and every run's report held to the verdicts written in the
//! pipeline's `# expect` lines:
//!
//! * `# expect STAGE no_leak` — the stage's host verdict is `no_leak`;
//! * `# expect STAGE leak MIB` — `likely_leak`, exactly (a `possible_leak` — found, but noisy —
//!   is a miss), at MIB per clip within ±20 % or ±1 MiB, whichever is larger (`tree` names the
//!   whole tree's growth per clip);
//! * `# expect STAGE gpu_no_leak` / `# expect STAGE gpu_leak MIB` — the same for GPU memory;
//!   such a pipeline runs with the replay GPU source (`MEMTRACE_GPU_REPLAY`, a file it appends
//!   `0 PID BYTES` lines to as it "allocates"), so no GPU is needed;
//! * `# expect peak_within_cgroup PCT` — the tree's peak host memory is within PCT % of the
//!   cgroup's own peak (copy-on-write pages of forked workers counted once).
//!
//! A verdict that flips between runs fails the run where it is wrong. Needs root (eBPF, the
//! cgroup); `cargo xtask test` runs it.
mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use memtrace_host::cgroup::Version;
use serde_json::Value;
use support::{MIB, memtrace, memtrace_bin, require_root, test_cgroup};

/// Runs per pipeline (`MEMTRACE_CORPUS_RUNS` overrides).
const RUNS: usize = 5;
/// The marks every corpus pipeline prints.
const REGEX: &str = r"clip (?P<clip>\d+)/\d+: (?P<stage>\w+)";

/// What a pipeline's `# expect` lines ask.
#[derive(Debug, PartialEq)]
enum Expect {
    NoLeak(String),
    Leak(String, f64),
    GpuNoLeak(String),
    GpuLeak(String, f64),
    PeakWithinCgroup(f64),
}

impl Expect {
    /// (stage, verdict key, judgement key, wanted verdict, MiB per clip) of a verdict check.
    fn verdict(&self) -> Option<(&str, &str, &str, &str, Option<f64>)> {
        match self {
            Self::NoLeak(s) => Some((s, "verdict", "host", "no_leak", None)),
            Self::Leak(s, mib) => Some((s, "verdict", "host", "likely_leak", Some(*mib))),
            Self::GpuNoLeak(s) => Some((s, "gpu_verdict", "gpu", "no_leak", None)),
            Self::GpuLeak(s, mib) => Some((s, "gpu_verdict", "gpu", "likely_leak", Some(*mib))),
            Self::PeakWithinCgroup(_) => None,
        }
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn expectations(script: &Path) -> Vec<Expect> {
    let text = std::fs::read_to_string(script).expect("read the pipeline");
    text.lines()
        .filter_map(|line| line.strip_prefix("# expect "))
        .map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [stage, "no_leak"] => Expect::NoLeak((*stage).to_owned()),
                [stage, "leak", mib] => {
                    Expect::Leak((*stage).to_owned(), mib.parse().expect("MiB per clip"))
                }
                [stage, "gpu_no_leak"] => Expect::GpuNoLeak((*stage).to_owned()),
                [stage, "gpu_leak", mib] => {
                    Expect::GpuLeak((*stage).to_owned(), mib.parse().expect("MiB per clip"))
                }
                ["peak_within_cgroup", pct] => {
                    Expect::PeakWithinCgroup(pct.parse().expect("percent"))
                }
                _ => panic!("{}: bad expect line {rest:?}", script.display()),
            }
        })
        .collect()
}

/// The cgroup's own peak usage.
fn cgroup_peak(path: &Path, version: Version) -> u64 {
    let file = match version {
        Version::V2 => "memory.peak",
        Version::V1 => "memory.max_usage_in_bytes",
    };
    std::fs::read_to_string(path.join(file))
        .unwrap_or_else(|err| panic!("{file}: {err}"))
        .trim()
        .parse()
        .expect("a number")
}

/// One run of `name`: its report checked against its expectations; the problems found.
fn run_once(name: &str, run: usize, expect: &[Expect]) -> Vec<String> {
    let script = corpus_dir().join(format!("{name}.py"));
    let group = test_cgroup(&format!("corpus-{name}-{run}"), 1024 * MIB);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let out = dir.join(format!("{name}-{run}.mtrace"));
    let _ = std::fs::remove_file(&out);
    // A pipeline with GPU expectations writes what it holds to a replay file memtrace reads.
    let replay = dir.join(format!("{name}-{run}.replay"));
    let gpu = expect
        .iter()
        .any(|e| matches!(e, Expect::GpuLeak(..) | Expect::GpuNoLeak(_)));
    let mut cmd = memtrace();
    if gpu {
        std::fs::write(&replay, "total 25769803776\n").expect("replay file");
        cmd.env("MEMTRACE_GPU_REPLAY", &replay);
    }
    let enter = format!(
        "echo $$ > '{}' && exec \"$0\" \"$@\"",
        group.path.join("cgroup.procs").display()
    );
    let output = support::output_within(
        cmd.args(["run", "--out"])
            .arg(&out)
            .args(["--stage-regex", REGEX, "--", "sh", "-c", &enter, "python3"])
            .arg(&script)
            .env("MEMTRACE_BIN", memtrace_bin()),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} run {run} failed: {stderr}");
    let cgroup_peak = cgroup_peak(&group.path, group.version);
    let json = support::output_within(
        memtrace().arg("report").arg(&out).arg("--json"),
        Duration::from_secs(60),
    );
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let report: Value = serde_json::from_slice(&json.stdout).expect("report JSON");
    let lines: Vec<String> = std::iter::once(report["tree"]["text"].to_string())
        .chain(
            report["verdicts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v["text"].to_string()),
        )
        .collect();
    eprintln!("{name} run {run}:\n  {}", lines.join("\n  "));
    let judged = |stage: &str| -> Option<&Value> {
        if stage == "tree" {
            return report.get("tree");
        }
        report["verdicts"]
            .as_array()?
            .iter()
            .find(|v| v["stage"] == stage)
    };
    let mut wrong = Vec::new();
    for e in expect {
        match e.verdict() {
            Some((stage, key, judgement, want, mib)) => {
                let Some(v) = judged(stage) else {
                    wrong.push(format!("{name} run {run}: no verdict for {stage}"));
                    continue;
                };
                // Exact: a leak must be called `likely_leak` (a noisy `possible_leak` is a
                // miss), a stage that keeps nothing `no_leak` (not even possible).
                if v[key] != want {
                    wrong.push(format!(
                        "{name} run {run}: {stage} {key} is {} (want {want}): {}",
                        v[key], v["text"]
                    ));
                }
                if let Some(mib) = mib {
                    let got = v[judgement]["per_clip"].as_f64().unwrap_or(f64::NAN) / MIB as f64;
                    // NaN (no number) is never within.
                    let within = (got - mib).abs() <= (0.2 * mib).max(1.0);
                    if !within {
                        wrong.push(format!(
                            "{name} run {run}: {stage} keeps {got:.2} MiB/clip of {judgement}, \
                             not {mib}: {}",
                            v["text"]
                        ));
                    }
                }
            }
            None => check_peak(name, run, e, &report, cgroup_peak, &mut wrong),
        }
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&replay);
    wrong
}

/// `# expect peak_within_cgroup PCT`.
fn check_peak(
    name: &str,
    run: usize,
    e: &Expect,
    report: &Value,
    cgroup_peak: u64,
    wrong: &mut Vec<String>,
) {
    let Expect::PeakWithinCgroup(pct) = e else {
        return;
    };
    let peak = report["peak_footprint"].as_u64().unwrap_or(0) as f64;
    let off = (peak - cgroup_peak as f64).abs() * 100.0 / cgroup_peak.max(1) as f64;
    let line = format!(
        "{name} run {run}: tree peak {:.1} MiB ({}), the cgroup's {:.1} MiB: {off:.1} % apart",
        peak / MIB as f64,
        report["host_measure"],
        cgroup_peak as f64 / MIB as f64
    );
    eprintln!("{line}");
    if off > *pct {
        wrong.push(line);
    }
}

/// Runs `name` [`RUNS`] times; fails with every wrong verdict of every run.
fn run_pipeline(name: &str) {
    require_root();
    let script = corpus_dir().join(format!("{name}.py"));
    let expect = expectations(&script);
    assert!(!expect.is_empty(), "{name} has no expect lines");
    let runs = std::env::var("MEMTRACE_CORPUS_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(RUNS);
    let wrong: Vec<String> = (1..=runs)
        .flat_map(|run| run_once(name, run, &expect))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?; ignored: $($slow:ident: $why:literal),* $(,)?) => {
        /// One test per pipeline, named `corpus::NAME`.
        mod corpus {
            $(
                #[test]
                fn $name() {
                    super::run_pipeline(stringify!($name));
                }
            )*

            $(
                #[test]
                #[ignore = $why]
                fn $slow() {
                    super::run_pipeline(stringify!($slow));
                }
            )*

            /// Every pipeline in the folder has its test (a new one cannot be forgotten).
            #[test]
            fn every_pipeline_is_run() {
                let listed = [$(stringify!($name),)* $(stringify!($slow),)*];
                for entry in std::fs::read_dir(super::corpus_dir()).expect("corpus dir") {
                    let path = entry.expect("entry").path();
                    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                        continue;
                    };
                    if path.extension().is_some_and(|e| e == "py") && stem != "common" {
                        assert!(listed.contains(&stem), "tests/corpus/{stem}.py has no test");
                    }
                }
            }
        }
    };
}

corpus_tests!(
    alloc_after_mark,
    progress_bars,
    warm_up,
    worker_pool,
    hand_off,
    late_leak,
    gpu_leak,
    demo,
    big_process;
    ignored:
);
