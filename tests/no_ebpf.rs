//! Privileged tests of memtrace where eBPF cannot load: in a container,
//! without the capabilities eBPF needs, or as a user. Run serially, as root, by
//! `cargo xtask test`.
//!
//! Without eBPF (`setpriv` drops what a default Docker container lacks: CAP_SYS_ADMIN, CAP_BPF,
//! CAP_PERFMON, CAP_SYS_RESOURCE; or a non-root user): `top`, `record` and the guard say once
//! that they read /proc instead and work, `--require-ebpf` refuses with one line, and `doctor`
//! says which mode this host gives.
mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc::{Receiver, channel},
    thread::JoinHandle,
    time::Duration,
};

use memtrace::record::trace::MarkTiming;
use memtrace_testkit::child::signal_pid;
use rustix::process::Signal;
use serde_json::Value;
use support::{
    KillOnDrop, MIB, describe, entry, field, guard_env, memtrace, memtrace_as, memtrace_bin,
    output_within, require_root, spawn, test_cgroup, text, wait_for_line,
};

const NOBODY: u32 = 65534;

/// The start of the one INFO line of a start without eBPF.
const WITHOUT_EBPF: &str = "running without eBPF: ";

/// The capabilities a default Docker container does not have, dropped from a root process.
const DROP_CONTAINER_CAPS: [&str; 2] = [
    "--bounding-set=-sys_admin,-bpf,-perfmon,-sys_resource",
    "--inh-caps=-all",
];

/// The binary under test run by root without the capabilities eBPF needs, at the default log
/// level.
fn memtrace_without_caps() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(DROP_CONTAINER_CAPS)
        .arg("--")
        .arg(memtrace_bin())
        .env_remove("RUST_LOG");
    cmd
}

/// A python3 that holds 256 MiB of touched anonymous memory, says `ready`, and sleeps.
const HOG_256: &str = "import time\n\
     b = bytearray(256 << 20)\n\
     for i in range(0, len(b), 4096): b[i] = 1\n\
     print('ready', flush=True)\n\
     time.sleep(30)\n";

/// Exactly one INFO line says memtrace runs without eBPF, naming `why`.
fn assert_one_info_line(stderr: &str, why: &str) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(WITHOUT_EBPF))
        .collect();
    assert_eq!(lines.len(), 1, "one line about the mode: {stderr}");
    assert!(lines[0].contains(" INFO "), "an INFO line: {stderr}");
    assert!(lines[0].contains(why), "says why ({why}): {stderr}");
    for lost in ["short-lived processes", "reclaim stalls", "OOM-kill events"] {
        assert!(
            lines[0].contains(lost),
            "says what is lost ({lost}): {stderr}"
        );
    }
}

/// A running command whose stdout lines arrive on a channel and whose stderr is collected.
struct Running {
    child: KillOnDrop,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    fn start(cmd: &mut Command) -> Self {
        let mut child = spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
        let stdout = child.child_mut().stdout.take().expect("piped stdout");
        let mut stderr = child.child_mut().stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Forgets the snapshots printed so far.
    fn skip_printed(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// The next stdout line as a `top --json` snapshot.
    fn snapshot(&self, timeout: Duration) -> Vec<Value> {
        let line = self
            .lines
            .recv_timeout(timeout)
            .expect("a snapshot per interval");
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON: {line:?}: {err}"))
    }

    /// Ends it with SIGTERM; its exit status and stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        // Only the process this test started.
        signal_pid(self.child.pid(), Signal::TERM);
        let status = self.child.wait().expect("waiting for memtrace");
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        (status, stderr)
    }
}

/// With the container's capabilities only, `top` reads /proc and attributes ≥ 95 % of a
/// 256 MiB hog (in a test cgroup) by pid in the snapshot after it is ready: within one interval.
#[test]
fn without_ebpf_top_attributes_a_hog_within_one_interval() {
    require_root();
    let mut group = test_cgroup("noebpf-top", 512 * MIB);
    let top = Running::start(memtrace_without_caps().args(["top", "--json", "--interval", "1"]));
    top.snapshot(Duration::from_secs(20));
    let mut hog = spawn(
        group
            .command("python3", &["-c", HOG_256])
            .stdout(Stdio::piped()),
    );
    group.track(hog.pid());
    wait_for_line(&mut hog, "ready", Duration::from_secs(20));
    // Only snapshots printed after "ready" count.
    top.skip_printed();
    let mut anon = 0;
    let mut faults = 0;
    for _ in 0..2 {
        let snapshot = top.snapshot(Duration::from_secs(5));
        if let Some(e) = entry(&snapshot, hog.pid()) {
            anon = anon.max(field(e, "anon_bytes"));
            faults = faults.max(field(e, "faults"));
            assert_eq!(e["exited"], false, "{e}");
        }
    }
    let want = 256 * MIB * 95 / 100;
    assert!(
        anon >= want,
        "anon attributed to {}: {} MiB, want ≥ {} MiB",
        hog.pid(),
        anon / MIB,
        want / MIB
    );
    assert!(faults >= 65536 * 95 / 100, "faults from /proc: {faults}");
    let (status, stderr) = top.terminate();
    assert!(status.success(), "exits 0 on SIGTERM: {status:?} {stderr}");
    assert_one_info_line(&stderr, "without CAP_BPF and CAP_PERFMON");
}

/// As a user, `top --once --json` reads /proc: the hog (root's process) is there with ≥ 95 % of
/// its 256 MiB.
#[test]
fn without_ebpf_top_once_as_a_user() {
    require_root();
    let mut group = test_cgroup("noebpf-once", 512 * MIB);
    let mut hog = spawn(
        group
            .command("python3", &["-c", HOG_256])
            .stdout(Stdio::piped()),
    );
    group.track(hog.pid());
    wait_for_line(&mut hog, "ready", Duration::from_secs(20));
    let out = output_within(
        memtrace_as(NOBODY)
            .args(["top", "--once", "--json", "--interval", "1"])
            .env_remove("RUST_LOG"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let procs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let e = entry(&procs, hog.pid()).expect("the hog is listed");
    assert!(
        field(e, "anon_bytes") >= 256 * MIB * 95 / 100,
        "anon of the hog: {e}"
    );
    assert!(field(e, "peak_rss_bytes") >= field(e, "rss_bytes"), "{e}");
    assert_one_info_line(&text(&out.stderr), "not root (effective uid 65534)");
}

/// Without eBPF (no capabilities, and as a user), `record -- CMD` writes a trace of the
/// command's tree that `report` reads, saying it was read from /proc.
#[test]
fn without_ebpf_record_writes_a_trace_that_report_reads() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("memtrace-noebpf-")
        .tempdir_in("/tmp")
        .expect("scratch");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // A parent that starts a child holding 64 MiB: the tree is found through the parent.
    let code = "import subprocess, sys\n\
                subprocess.run([sys.executable, '-c', \
                'import time; b = bytearray(64 << 20); time.sleep(1.5)'], check=True)\n";
    let runs: [(&str, Command, &str); 2] = [
        (
            "caps",
            memtrace_without_caps(),
            "without CAP_BPF and CAP_PERFMON",
        ),
        ("user", memtrace_as(NOBODY), "not root"),
    ];
    for (name, mut cmd, why) in runs {
        let trace = dir.path().join(format!("{name}.mtrace"));
        let out = output_within(
            cmd.env_remove("RUST_LOG")
                .arg("record")
                .arg("-o")
                .arg(&trace)
                .args(["--interval", "200ms", "--", "python3", "-c", code]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{name}: {}", describe(&out));
        assert_one_info_line(&text(&out.stderr), why);
        let report = output_within(
            memtrace().arg("report").arg(&trace).arg("--json"),
            Duration::from_secs(30),
        );
        assert!(report.status.success(), "{name}: {}", describe(&report));
        let json: Value = serde_json::from_slice(&report.stdout).expect("report JSON");
        let scope = json["header"]["scope"].as_str().unwrap_or_default();
        assert!(
            scope.contains("read from /proc without eBPF"),
            "{name}: the trace says how it was read: {scope:?}"
        );
        let printed = output_within(
            memtrace().arg("report").arg(&trace),
            Duration::from_secs(30),
        );
        let printed = text(&printed.stdout);
        let pythons = printed.lines().filter(|l| l.contains("python3")).count();
        assert!(
            pythons >= 2,
            "{name}: parent and child in the report: {printed}"
        );
        assert!(
            printed.contains("Peak host memory"),
            "{name}: a peak: {printed}"
        );
    }
}

/// Without eBPF, `run --stage-regex` still marks stages, at the moment memtrace reads each line:
/// the trace records every mark as read-time and the report says they are approximate (with
/// eBPF the same pipeline's marks are exact: `exact_marks.rs`).
#[test]
fn without_ebpf_stdout_marks_are_recorded_and_reported_as_approximate() {
    require_root();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("read-time-marks.mtrace");
    let run = support::alloc_after_mark::run(memtrace_without_caps(), &out, "read-marks");
    assert_eq!(
        run.timings,
        vec![MarkTiming::Read; 9],
        "no mark claims to be exact"
    );
    assert!(
        run.report
            .contains("9 approximate (sampled when memtrace read the mark)")
            && run
                .report
                .contains("Marks taken at read time are approximate"),
        "{}",
        run.report
    );
    let _ = std::fs::remove_file(&out);
}

/// `--require-ebpf` turns the fallback back into the refusal: one error line, non-zero exit,
/// for each command that collects.
#[test]
fn without_ebpf_require_ebpf_refuses_with_one_line() {
    require_root();
    let group = test_cgroup("noebpf-require", 64 * MIB);
    let states = guard_env::state_dir();
    let out = std::env::temp_dir().join(format!("memtrace-require-{}.mtrace", std::process::id()));
    let out = out.display().to_string();
    let cgroup = group.path.display().to_string();
    let state = states.path().join("state.json").display().to_string();
    let cases: [&[&str]; 4] = [
        &["top", "--once", "--require-ebpf"],
        &["record", "-o", &out, "--require-ebpf", "--", "true"],
        &["run", "-o", &out, "--require-ebpf", "--", "true"],
        &[
            "guard",
            "--cgroup",
            &cgroup,
            "--state-file",
            &state,
            "--dry-run",
            "--require-ebpf",
        ],
    ];
    for args in cases {
        let result = output_within(memtrace_without_caps().args(args), Duration::from_secs(30));
        assert!(!result.status.success(), "{args:?} must fail");
        let stderr = text(&result.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "one error line for {args:?}: {stderr}");
        assert!(
            errors[0]
                .starts_with("memtrace: error: --require-ebpf: the eBPF tracer cannot start: "),
            "{args:?}: {stderr}"
        );
        assert!(
            errors[0].contains("Operation not permitted"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(WITHOUT_EBPF), "no fallback: {stderr}");
        assert!(!Path::new(&out).exists(), "{args:?}: no trace written");
    }
    let result = output_within(
        memtrace_as(NOBODY).args(["top", "--once", "--require-ebpf"]),
        Duration::from_secs(30),
    );
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
}

/// With the container's capabilities only, the guard starts on a cgroup, reads its processes
/// from /proc, and its dry run logs the decisions it would take, naming the growing process —
/// never the bystander, and nothing is stopped.
#[test]
fn without_ebpf_the_guard_starts_and_its_dry_run_logs_decisions() {
    require_root();
    let states = guard_env::state_dir();
    let config = guard_env::config(&guard_env::tmp(), "");
    let mut group = test_cgroup("noebpf-guard", 512 * MIB);
    let (bystander, _) =
        guard_env::start_in(&mut group, "bystander", &guard_env::holder("bystander", 16));
    let guard = Running::start(
        memtrace_without_caps()
            .args(["guard", "--cgroup"])
            .arg(&group.path)
            .arg("--config")
            .arg(&config)
            .arg("--state-file")
            .arg(states.path().join("guard.json"))
            .arg("--dry-run"),
    );
    // The guard logs on stderr; give it time to start before the load.
    std::thread::sleep(Duration::from_secs(2));
    let (_parent, grower) = guard_env::start_pipeline(&mut group);
    // The pipeline grows to 240 MiB of the 512 (with the bystander: past suspend at 65 % of
    // the scaled thresholds) and holds; watch it for 8 s.
    let mut stopped = false;
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        stopped |= memtrace_testkit::proc::held(grower);
        std::thread::sleep(Duration::from_millis(25));
    }
    let (status, stderr) = guard.terminate();
    assert!(status.success(), "exits 0 on SIGTERM: {status:?} {stderr}");
    assert_one_info_line(&stderr, "without CAP_BPF and CAP_PERFMON");
    assert!(stderr.contains("guarding cgroup"), "{stderr}");
    let would: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("dry run, nothing sent") && l.contains("suspend ["))
        .collect();
    assert!(!would.is_empty(), "a suspend it would send: {stderr}");
    let bystander = bystander.pid().to_string();
    let acted_on = |line: &str| -> Vec<String> {
        line.split_once("| pids [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| list.split(", ").map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert!(
        would.iter().all(|l| {
            let pids = acted_on(l);
            pids.contains(&grower.to_string()) && !pids.contains(&bystander)
        }),
        "the grower's tree, never the bystander: {would:?}"
    );
    assert!(!stopped, "a dry run stops nothing");
}

/// `doctor` says which mode this host gives, and why.
#[test]
fn without_ebpf_doctor_shows_the_mode() {
    require_root();
    let collection = |cmd: &mut Command| -> (String, String) {
        let out = output_within(cmd.args(["doctor", "--json"]), Duration::from_secs(60));
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|err| panic!("doctor JSON: {err}: {}", describe(&out)));
        let check = json["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == "collection"))
            .unwrap_or_else(|| panic!("a collection check: {json}"))
            .clone();
        (
            check["level"].as_str().unwrap_or_default().to_owned(),
            check["detail"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (level, detail) = collection(&mut memtrace());
    assert_eq!(
        (level.as_str(), detail.as_str()),
        (
            "OK",
            "eBPF: privileges, kernel BTF and tracepoints are all there"
        )
    );
    let (level, detail) = collection(&mut memtrace_without_caps());
    assert_eq!(level, "INFO");
    assert!(
        detail.starts_with(
            "/proc, without eBPF: root without CAP_BPF and CAP_PERFMON (nor CAP_SYS_ADMIN)"
        ),
        "{detail}"
    );
    let (level, detail) = collection(&mut memtrace_as(NOBODY));
    assert_eq!(level, "INFO");
    assert!(
        detail.starts_with("/proc, without eBPF: not root (effective uid 65534)"),
        "{detail}"
    );
}
