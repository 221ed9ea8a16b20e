//! Which clip stage leaks: `memtrace run` with the three marking ways on a synthetic pipeline
//! (6 clips; stage X keeps 20 MiB per clip, stage Y peaks at 200 MiB and frees it), a recorder
//! killed with SIGKILL, damaged traces, the exports, the refusals, the trace size and
//! report/export speed for one hour of 100 processes at 1 Hz, and hostile inputs (FIFOs,
//! devices, oversized files, a crafted trace) to every command that reads a file. The
//! `run`/`record` tests load eBPF: run serially, as root (`cargo xtask test`); the pipeline runs
//! in a 1 GiB memory cgroup.
#[path = "stages/inputs.rs"]
mod inputs;
mod support;
#[path = "stages/synthetic.rs"]
mod synthetic;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use memtrace::record::trace;
use memtrace_testkit::child::kill_pid;
use serde_json::Value;
use support::{MIB, memtrace, memtrace_bin, require_root, spawn, test_cgroup};

/// The pipeline: per clip, stages prep, X (keeps 20 MiB), Y (200 MiB peak, freed). argv[1] picks
/// the marking way: socket, cli or regex.
const PIPELINE: &str = r#"
import os, socket, subprocess, sys, time
way = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def mark(stage, clip):
    if way == "socket":
        s.sendto(f"stage {stage} clip={clip}".encode(), os.environ["MEMTRACE_MARK_SOCKET"])
    elif way == "cli":
        subprocess.run([os.environ["MEMTRACE_BIN"], "mark", stage, "--clip", str(clip)], check=True)
    else:
        print(f"Processing clip {clip}/6: {stage}", flush=True)
    time.sleep(0.1)
def touch(b):
    for i in range(0, len(b), 4096): b[i] = 1
kept = []
for clip in range(1, 7):
    mark("prep", clip)
    time.sleep(0.2)
    mark("X", clip)
    b = bytearray(20 << 20); touch(b); kept.append(b)
    time.sleep(0.3)
    mark("Y", clip)
    b = bytearray(200 << 20); touch(b)
    time.sleep(0.5)
    del b
    time.sleep(0.2)
print("done", flush=True)
"#;

/// Runs `cmd` to completion (killing it by pid after `limit`).
fn finish(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawning {cmd:?}: {err}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("waiting for the command"),
        Err(_) => {
            // pid is the child we started.
            kill_pid(pid);
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stages");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs the pipeline under `memtrace run` with marking `way` and checks the verdicts.
fn leak_found(way: &str, extra: &[&str]) {
    require_root();
    let group = test_cgroup(&format!("stages-{way}"), 1024 * MIB);
    let out = scratch(&format!("{way}.mtrace"));
    let enter = format!(
        "echo $$ > '{}' && exec \"$0\" \"$@\"",
        group.path.join("cgroup.procs").display()
    );
    let output = finish(
        memtrace()
            .args(["run", "--out"])
            .arg(&out)
            .args(extra)
            .args(["--", "sh", "-c", &enter, "python3", "-c", PIPELINE, way])
            .env("MEMTRACE_BIN", memtrace_bin()),
        Duration::from_secs(120),
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "run failed: {stderr}");
    assert!(text(&output.stdout).contains("done") || way != "regex");
    assert!(
        stderr.contains("[Memory] clip 3 X: before"),
        "no [Memory] lines: {stderr}"
    );
    let json = finish(
        memtrace().arg("report").arg(&out).arg("--json"),
        Duration::from_secs(60),
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    let report: Value = serde_json::from_slice(&json.stdout).expect("report JSON");
    let verdict = |stage: &str| {
        report["verdicts"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["stage"] == stage))
            .cloned()
            .unwrap_or_else(|| panic!("no verdict for {stage}: {report}"))
    };
    let x = verdict("X");
    let slope = x["host"]["slope"].as_f64().expect("slope") / MIB as f64;
    assert!(
        (slope - 20.0).abs() <= 2.0,
        "X slope {slope:.2} MiB/clip ({way}): {}",
        x["text"]
    );
    assert_eq!(x["verdict"], "likely_leak", "{}", x["text"]);
    assert_eq!(x["clips"], 6);
    let y = verdict("Y");
    assert_ne!(y["verdict"], "likely_leak", "Y only peaks: {}", y["text"]);
    assert!(
        y["transient_peak"].as_u64().unwrap_or(0) >= 150 * MIB,
        "Y's peak was seen: {}",
        y["text"]
    );
    let plain = finish(memtrace().arg("report").arg(&out), Duration::from_secs(60));
    assert!(
        text(&plain.stdout).contains("X retains +"),
        "{}",
        text(&plain.stdout)
    );
}

#[test]
fn socket_marks_find_the_leaking_stage() {
    leak_found("socket", &[]);
}

#[test]
fn cli_marks_find_the_leaking_stage() {
    leak_found("cli", &[]);
}

#[test]
fn regex_marks_find_the_leaking_stage() {
    leak_found(
        "regex",
        &[
            "--stage-regex",
            r"Processing clip (?P<clip>\d+)/\d+: (?P<stage>\w+)",
        ],
    );
}

/// `kill -9` of the recorder mid-run leaves a trace that reads (at most the last second lost).
#[test]
fn trace_survives_kill_9_of_the_recorder() {
    require_root();
    let out = scratch("killed.mtrace");
    let pidfile = scratch("killed.pid");
    let code = format!(
        "import os, time\nopen('{}', 'w').write(str(os.getpid()))\nb = []\nfor i in range(60):\n    b.append(bytearray(1 << 20)); time.sleep(0.1)\n",
        pidfile.display()
    );
    let mut recorder = spawn(
        memtrace()
            .args(["record", "--interval", "200ms", "-o"])
            .arg(&out)
            .args(["--", "python3", "-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_secs(4));
    // The recorder we started.
    kill_pid(recorder.pid());
    let _ = recorder.child_mut().wait();
    if let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    {
        // The pipeline we started wrote its own pid.
        kill_pid(pid);
    }
    let data = trace::read_file(&out).expect("the killed recorder's trace reads");
    assert!(data.end.is_none(), "no end record after kill -9");
    assert!(
        data.damage.is_none(),
        "records are written whole: {:?}",
        data.damage
    );
    assert!(
        data.samples.len() >= 5,
        "samples up to the kill: {}",
        data.samples.len()
    );
    let last = data.samples.last().map_or(0, |s| s.time_unix_ms);
    let killed_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    assert!(
        killed_ms.saturating_sub(last) < 1500,
        "lost {} ms",
        killed_ms - last
    );
    let report = finish(memtrace().arg("report").arg(&out), Duration::from_secs(60));
    assert!(report.status.success(), "{}", text(&report.stderr));
    assert!(text(&report.stdout).contains("not closed by the recorder"));
}
