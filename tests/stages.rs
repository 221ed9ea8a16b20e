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
    io::{BufRead as _, Read as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use memtrace::record::trace;
use memtrace_testkit::child::kill_pid;
use serde_json::Value;
use support::{MIB, memtrace, memtrace_bin, require_root, spawn, test_cgroup, text};

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
    support::output_within(cmd, limit)
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
    let kept = x["host"]["per_clip"].as_f64().expect("per_clip") / MIB as f64;
    assert!(
        (kept - 20.0).abs() <= 2.0,
        "X keeps {kept:.2} MiB/clip ({way}): {}",
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

/// A fresh, empty scratch directory (for `TMPDIR`).
fn scratch_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// What is left in `dir`.
fn left_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("reading the scratch dir")
        .map(|entry| entry.expect("entry").path())
        .collect()
}

/// Kills (by pid) the process that wrote its own pid to `file`, on drop.
struct KillPidFile(PathBuf);

impl Drop for KillPidFile {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            // The pipeline we started wrote its own pid.
            kill_pid(pid);
        }
    }
}

/// Waits up to `limit` for `child` to exit.
fn exit_within(
    child: &mut support::KillOnDrop,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.exited() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pipeline that sends marks from a bound socket (so memtrace replies) and never reads the
/// replies, then idles: argv[1] its socket, argv[2] its pid file.
const IGNORES_REPLIES: &str = r#"
import os, socket, sys, time
me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
me.bind(sys.argv[1])
me.settimeout(0.5)
to = os.environ["MEMTRACE_MARK_SOCKET"]
for i in range(60):
    try:
        me.sendto(f"stage s{i}".encode(), to)
    except OSError:
        pass
    time.sleep(0.01)
open(sys.argv[2], "w").write(str(os.getpid()))
print("flooded", flush=True)
time.sleep(60)
"#;

/// A pipeline whose mark sender never reads memtrace's replies: `run --interval 200ms` keeps
/// sampling (no gap over 1 s), forwards SIGTERM at once, says how many replies it dropped, and
/// removes its socket directory.
#[test]
fn run_never_waits_for_a_mark_sender_that_does_not_read() {
    require_root();
    let tmpdir = scratch_dir("noreply-tmp");
    let out = scratch("noreply.mtrace");
    let sock = scratch("noreply.sock");
    let pidfile = scratch("noreply.pid");
    let _pipeline = KillPidFile(pidfile.clone());
    let mut run = spawn(
        memtrace()
            .args(["run", "--quiet", "--interval", "200ms", "--out"])
            .arg(&out)
            .args(["--", "python3", "-c", IGNORES_REPLIES])
            .arg(&sock)
            .arg(&pidfile)
            .env("TMPDIR", &tmpdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stderr = run.child_mut().stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    support::wait_for_line(&mut run, "flooded", Duration::from_secs(60));
    // The pipeline idles now, its reply queue full: memtrace must go on sampling.
    std::thread::sleep(Duration::from_secs(3));
    let sent = std::time::Instant::now();
    run.signal(rustix::process::Signal::TERM)
        .expect("SIGTERM to memtrace");
    let status = exit_within(&mut run, Duration::from_secs(5));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!("memtrace run did not forward SIGTERM: still running {took:?} after it")
    });
    let stderr = stderr.join().expect("stderr reader");
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "the pipeline ended by the forwarded SIGTERM: {stderr}"
    );
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    assert!(
        stderr.contains("mark replies were dropped") || stderr.contains("mark reply was dropped"),
        "the dropped replies are counted: {stderr}"
    );
    let data = trace::read_file(&out).expect("the trace reads");
    let times: Vec<u64> = data.samples.iter().map(|s| s.time_unix_ms).collect();
    assert!(times.len() >= 15, "{} samples", times.len());
    let worst = times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0);
    assert!(
        worst <= 1000,
        "sampling stalled for {worst} ms at a 200 ms interval: {stderr}"
    );
    assert_eq!(
        left_in(&tmpdir),
        Vec::<PathBuf>::new(),
        "socket dir removed"
    );
}

/// The mark socket lives in a private (0700, root's) directory with an unpredictable name under
/// $TMPDIR, a new one each run, removed when `run` ends — also when the command cannot start.
#[test]
fn mark_socket_dir_is_private_and_unpredictable() {
    require_root();
    let tmpdir = scratch_dir("sockdir-tmp");
    let out = scratch("sockdir.mtrace");
    let show = r#"d=$(dirname "$MEMTRACE_MARK_SOCKET"); echo "SOCKDIR $(stat -c '%a %u %F' "$d") $PPID $d""#;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let output = finish(
            memtrace()
                .args(["run", "--quiet", "--out"])
                .arg(&out)
                .args(["--", "sh", "-c", show])
                .env("TMPDIR", &tmpdir)
                .stdin(Stdio::null()),
            Duration::from_secs(60),
        );
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("SOCKDIR "))
            .unwrap_or_else(|| panic!("no SOCKDIR line: {stdout}"));
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[..3], ["700", "0", "directory"], "{line}");
        let memtrace_pid = words[3];
        let dir = Path::new(words[4]);
        assert_eq!(
            dir.parent(),
            Some(tmpdir.as_path()),
            "under $TMPDIR: {line}"
        );
        let name = dir.file_name().and_then(|n| n.to_str()).expect("name");
        assert_ne!(
            name,
            format!("memtrace-run-{memtrace_pid}"),
            "not predictable from the pid"
        );
        assert!(name.len() >= "memtrace-run-".len() + 12, "{name}");
        seen.push(dir.to_owned());
        assert_eq!(
            left_in(&tmpdir),
            Vec::<PathBuf>::new(),
            "removed at the end"
        );
    }
    assert_ne!(seen[0], seen[1], "a new name each run");
    let failed = finish(
        memtrace()
            .args(["run", "--quiet", "--out"])
            .arg(&out)
            .args(["--", "/nonexistent/memtrace-test-command"])
            .env("TMPDIR", &tmpdir)
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert!(!failed.status.success());
    assert_eq!(
        left_in(&tmpdir),
        Vec::<PathBuf>::new(),
        "removed when the command cannot start"
    );
}

/// A 200 MiB output line without a newline under --stage-regex passes through unchanged while
/// memtrace's own peak memory stays small, and the next line still marks a stage.
#[test]
fn endless_output_line_keeps_memory_bounded() {
    require_root();
    // Without the cap memtrace would hold the whole line: let it hit a limit, not the machine.
    let mut group = test_cgroup("endless-line", 768 * MIB);
    let out = scratch("endless.mtrace");
    const LINE: u64 = 200 * MIB;
    let pipeline = format!(
        "head -c {LINE} /dev/zero | tr '\\0' x; echo; echo 'Processing clip 1/1: tail'; sleep 2"
    );
    let bin = memtrace_bin().display().to_string();
    let out_arg = out.display().to_string();
    let mut run = spawn(
        group
            .command(
                &bin,
                &[
                    "run",
                    "--quiet",
                    "--out",
                    &out_arg,
                    "--stage-regex",
                    r"Processing clip (?P<clip>\d+)/\d+: (?P<stage>\w+)",
                    "--",
                    "sh",
                    "-c",
                    &pipeline,
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    group.track(run.pid());
    let stdout = run.child_mut().stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = std::io::BufReader::with_capacity(1 << 20, stdout);
        // The first line: its length and whether it is all x.
        let mut first = (0u64, true);
        let mut lines = 0;
        let mut line = Vec::new();
        loop {
            let chunk = stdout.fill_buf().expect("reading stdout");
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            for &b in chunk {
                if b == b'\n' {
                    lines += 1;
                    if lines == 2 && line == b"Processing clip 1/1: tail" {
                        let _ = tx.send(());
                    }
                    line.clear();
                } else if lines == 0 {
                    first.0 += 1;
                    first.1 &= b == b'x';
                } else if line.len() < 64 {
                    line.push(b);
                }
            }
            stdout.consume(n);
        }
        first
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the line after the long one came through");
    // The pipeline sleeps now: memtrace has seen the whole line.
    let peak = memtrace_testkit::proc::memory(run.pid())
        .expect("memtrace's memory")
        .hwm;
    let status = exit_within(&mut run, Duration::from_secs(30)).expect("run ends");
    let mut stderr = String::new();
    if let Some(mut pipe) = run.child_mut().stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    assert!(status.success(), "{stderr}");
    assert_eq!(
        reader.join().expect("reader"),
        (LINE, true),
        "the long line passed through unchanged"
    );
    assert!(!group.saw_oom_kill(), "no OOM kill");
    assert!(
        peak < 100 * MIB,
        "memtrace peaked at {} MiB passing a {} MiB line",
        peak / MIB,
        LINE / MIB
    );
    let data = trace::read_file(&out).expect("the trace reads");
    assert!(
        data.events.iter().any(|e| matches!(
            &e.event,
            trace::Event::StageBegin { stage, .. } if stage == "tail"
        )),
        "the line after the long one marked its stage"
    );
}
