//! The GPU path through the built binary on machines without a GPU (or without NVML): `top` and
//! `status` exit 0, say "no NVML" in exactly one info line, show no GPU lines or columns and carry
//! no GPU keys in their JSON, also after many intervals (no retry storm) and for non-root
//! `status`. On a machine where NVML loads, each test checks the "GPU: NVML sees" line instead;
//! the allocation check on a real GPU is `scripts/gpu-check.sh` (`cargo xtask gpu-check`).
mod support;

use std::{
    io::Read as _,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use memtrace_testkit::child::signal_pid;
use rustix::process::Signal;
use serde_json::Value;
use support::{memtrace, require_root};

const NOBODY: u32 = 65534;

/// Whether NVML can work here at all; when it cannot, the "no NVML" path must be taken.
fn nvml_present() -> bool {
    memtrace::collect::gpu::nvml_loadable()
}

/// `memtrace ARGS` with the default log level (info), to completion.
fn run_memtrace(args: &[&str], uid: Option<u32>) -> Output {
    let mut cmd = uid.map_or_else(memtrace, support::memtrace_as);
    cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|err| panic!("running memtrace {args:?}: {err}"))
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks the one GPU info line on stderr: "no NVML: …, GPU columns hidden" without NVML.
/// Returns whether GPUs are in use.
fn check_gpu_line(stderr: &str) -> bool {
    let no_nvml: Vec<&str> = stderr.lines().filter(|l| l.contains("no NVML")).collect();
    let sees: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("GPU: NVML sees"))
        .collect();
    if nvml_present() && sees.len() == 1 {
        eprintln!("NVML works here: {}", sees[0]);
        return true;
    }
    assert_eq!(no_nvml.len(), 1, "exactly one no-NVML line: {stderr:?}");
    assert!(no_nvml[0].contains(" INFO "), "an info line: {stderr:?}");
    assert!(
        no_nvml[0].ends_with(", GPU columns hidden"),
        "says what it means: {stderr:?}"
    );
    if !nvml_present() {
        assert!(
            no_nvml[0].contains("libnvidia-ml.so.1 not found"),
            "names the missing library: {stderr:?}"
        );
    }
    assert!(!stderr.contains("error"), "no error: {stderr:?}");
    false
}

/// Without a GPU the keys are still there (JSON outputs keep their keys): `gpu_bytes` is null.
fn assert_null_gpu_keys(procs: &[Value]) {
    for p in procs {
        assert!(
            p.get("gpu_bytes").is_some_and(Value::is_null),
            "gpu_bytes is null without a GPU: {p}"
        );
    }
}

#[test]
fn top_once_json_without_gpu_exits_0_with_one_info_line() {
    require_root();
    let out = run_memtrace(&["top", "--once", "--json", "--interval", "0.5"], None);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let procs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("one JSON array");
    assert!(!procs.is_empty());
    if !check_gpu_line(&stderr) {
        assert_null_gpu_keys(&procs);
    }
}

#[test]
fn top_table_without_gpu_has_no_gpu_lines_or_column() {
    require_root();
    let out = run_memtrace(&["top", "--once", "--interval", "0.5"], None);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PEAK MiB"), "{text}");
    if !check_gpu_line(&stderr) {
        assert!(!text.contains("GPU"), "no GPU line or column: {text}");
    } else {
        assert!(
            text.contains("GPU MiB") && text.contains("GPU0: "),
            "{text}"
        );
    }
}

/// Many intervals later there is still one line: NVML is tried once, not every interval.
#[test]
fn top_without_gpu_does_not_retry() {
    require_root();
    let mut child = memtrace()
        .args(["top", "--json", "--interval", "0.1"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting memtrace top");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // Tracer start, then ≥ 10 intervals.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    // pid is our own, not yet reaped, child.
    signal_pid(pid, Signal::TERM);
    let status = child.wait().expect("waiting for memtrace top");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let stdout = reader.join().expect("reader thread");
    assert!(status.success(), "exits 0 on SIGTERM: {status:?} {stderr}");
    let snapshots: Vec<Vec<Value>> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert!(
        snapshots.len() >= 5,
        "{} snapshots in {:?}",
        snapshots.len(),
        started.elapsed()
    );
    if !check_gpu_line(&stderr) {
        snapshots.iter().for_each(|s| assert_null_gpu_keys(s));
    }
}

#[test]
fn status_json_without_gpu_keeps_its_gpu_keys_empty_as_root_and_nobody() {
    require_root();
    for uid in [None, Some(NOBODY)] {
        let out = run_memtrace(&["status", "--json"], uid);
        let stderr = stderr_of(&out);
        assert!(out.status.success(), "uid {uid:?}: {stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        assert!(report["system"]["mem_total_bytes"].as_u64().unwrap_or(0) > 0);
        let top = report["top"].as_array().expect("top array");
        assert!(!top.is_empty());
        if check_gpu_line(&stderr) {
            assert!(report["gpus"].as_array().is_some_and(|g| !g.is_empty()));
        } else {
            assert_eq!(report["gpus"], serde_json::json!([]), "{report}");
            assert_eq!(report["gpu_processes"], serde_json::json!([]), "{report}");
            assert_null_gpu_keys(top);
        }
    }
}

#[test]
fn status_text_without_gpu_has_no_gpu_lines() {
    require_root();
    let out = run_memtrace(&["status"], Some(NOBODY));
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("RAM:"), "{text}");
    if !check_gpu_line(&stderr) {
        assert!(!text.contains("GPU"), "{text}");
    }
}
