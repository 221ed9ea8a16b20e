//! Privileged tests of `memtrace guard` on the real kernel. Every hog lives in a child memory
//! cgroup with a limit, the guard watches only that cgroup (`--cgroup`), every loop is bounded
//! in time, and only processes the test started are killed (by PID).
mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use memtrace_testkit::{
    child::signal_pid,
    proc::{alive, state},
};
use rustix::process::Signal;
use support::{
    KillOnDrop, MIB,
    guard_env::{
        GuardRun, config, config_calm, holder, scenario, start_in, start_pipeline, tmp, wait_until,
    },
    memtrace, require_root, spawn, test_cgroup,
};

/// The growing pipeline is suspended before any OOM kill, chill and sshd are untouched, and the
/// tree is resumed once the test frees memory.
#[test]
fn suspends_the_growing_tree_and_resumes_it_when_memory_is_freed() {
    require_root();
    let state_file = tmp().join("guard-state-suspend.json");
    let _ = std::fs::remove_file(&state_file);
    let config = config(&tmp(), "");
    let mut s = scenario("suspend");
    let group_path = s.group.path.clone();
    let mut guard = GuardRun::start(&group_path, &config, &state_file, &[]);
    let (parent, grower) = start_pipeline(&mut s.group);
    let suspended = wait_until(Duration::from_secs(30), || {
        state(grower) == Some('T') && state(parent.pid()) == Some('T')
    });
    assert!(
        suspended,
        "pipeline and grower stopped (grower {:?})",
        state(grower)
    );
    assert!(!s.group.saw_oom_kill(), "suspended before any OOM kill");
    for (name, pid) in [("chill", s.chill.pid()), ("sshd", s.sshd.pid())] {
        assert!(
            matches!(state(pid), Some('S' | 'R')),
            "{name} untouched: {:?}",
            state(pid)
        );
    }
    assert!(
        guard.wait_log("suspend [", Duration::from_secs(2)),
        "a suspend decision is logged"
    );
    let line = guard
        .lines()
        .into_iter()
        .find(|l| l.contains("suspend ["))
        .expect("a suspend decision");
    assert!(
        line.contains(&grower.to_string()) && line.contains("candidate"),
        "{line}"
    );
    assert!(std::fs::read_to_string(&state_file).is_ok_and(|t| t.contains(&grower.to_string())));

    // Free memory: the ballast goes (by pid), the tree must be resumed.
    drop(s.ballast.take());
    let resumed = wait_until(Duration::from_secs(20), || {
        state(grower).is_some_and(|c| c != 'T')
    });
    assert!(
        resumed,
        "grower resumed after memory was freed: {:?}",
        state(grower)
    );
    assert!(guard.wait_log("resume [", Duration::from_secs(2)));
    guard.terminate();
    assert!(!state_file.exists(), "a clean exit leaves no state file");
    for pid in [grower, parent.pid(), s.chill.pid(), s.sshd.pid()] {
        assert!(
            alive(pid) && state(pid) != Some('T'),
            "{pid} alive and running after the guard"
        );
    }
}

/// When suspension does not relieve pressure and kill is allowed, only the offender tree dies.
#[test]
fn kills_only_the_offender_when_suspension_does_not_help() {
    require_root();
    let state_file = tmp().join("guard-state-kill.json");
    let _ = std::fs::remove_file(&state_file);
    let config = config(&tmp(), "");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(
            "kill_used_percent = 95",
            "kill_used_percent = 75\nkill_after = \"1s\"",
        )
        .replace(
            "drop_caches = false",
            "drop_caches = false\nkill = true\nkill_grace = \"1s\"",
        );
    std::fs::write(&config, text).expect("config");
    let mut s = scenario("kill");
    let group_path = s.group.path.clone();
    let mut guard = GuardRun::start(&group_path, &config, &state_file, &[]);
    let (parent, grower) = start_pipeline(&mut s.group);
    assert!(
        wait_until(Duration::from_secs(30), || state(grower) == Some('T')),
        "the grower is suspended first"
    );
    // More memory, from a protected process: suspension can't relieve this.
    let (more, _) = start_in(&mut s.group, "ballast", &holder("ballast", 120));
    let killed = wait_until(Duration::from_secs(30), || {
        !alive(grower) && !alive(parent.pid())
    });
    assert!(
        killed,
        "offender tree killed: grower {:?} parent {:?}",
        state(grower),
        state(parent.pid())
    );
    for (name, pid) in [
        ("chill", s.chill.pid()),
        ("sshd", s.sshd.pid()),
        ("ballast", s.ballast.as_ref().map_or(0, KillOnDrop::pid)),
        ("more", more.pid()),
    ] {
        assert!(alive(pid), "{name} ({pid}) must survive");
    }
    assert!(guard.wait_log("kill [", Duration::from_secs(2)));
    guard.terminate();
}

/// Dry run logs the decision and sends nothing.
#[test]
fn dry_run_sends_nothing() {
    require_root();
    let state_file = tmp().join("guard-state-dry.json");
    let config = config(&tmp(), "");
    let mut s = scenario("dry");
    let group_path = s.group.path.clone();
    let mut guard = GuardRun::start(&group_path, &config, &state_file, &["--dry-run"]);
    let (_parent, grower) = start_pipeline(&mut s.group);
    assert!(
        guard.wait_log("dry run, nothing sent", Duration::from_secs(30)),
        "a dry-run decision is logged"
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_ne!(state(grower), Some('T'), "dry run must not stop anything");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!state_file.exists(), "dry run writes no state");
    guard.terminate();
}

/// A load that stays under the thresholds triggers nothing.
#[test]
fn load_under_thresholds_triggers_nothing() {
    require_root();
    let state_file = tmp().join("guard-state-calm.json");
    let config = config(&tmp(), "");
    let mut group = test_cgroup("calm", 512 * MIB);
    let group_path = group.path.clone();
    let mut guard = GuardRun::start(&group_path, &config, &state_file, &[]);
    // Rises to 64 MiB (12 % of the limit) and falls back, twice.
    let code = "import time\nfor _ in range(2):\n    c = [bytearray(8 << 20) for _ in range(8)]\n    time.sleep(0.5)\n    del c\n    time.sleep(0.5)\nprint('done', flush=True)\n";
    let (mut load, line) = start_in(&mut group, "load", code);
    assert_eq!(line, "done");
    let _ = load.child_mut().wait();
    std::thread::sleep(Duration::from_millis(500));
    let acted: Vec<String> = guard
        .lines()
        .into_iter()
        .filter(|l| {
            ["warn [", "reclaim [", "suspend [", "kill [", "resume ["]
                .iter()
                .any(|a| l.contains(a))
        })
        .collect();
    assert!(acted.is_empty(), "nothing may be acted on: {acted:?}");
    guard.terminate();
}

/// A guard killed with SIGKILL while a tree is suspended: the next start resumes it.
#[test]
fn restart_after_sigkill_resumes_what_was_suspended() {
    require_root();
    let state_file = tmp().join("guard-state-crash.json");
    let _ = std::fs::remove_file(&state_file);
    let config = config(&tmp(), "");
    let mut s = scenario("crash");
    let group_path = s.group.path.clone();
    let guard = GuardRun::start(&group_path, &config, &state_file, &[]);
    let (_parent, grower) = start_pipeline(&mut s.group);
    assert!(wait_until(Duration::from_secs(30), || state(grower) == Some('T')));
    drop(guard); // SIGKILL: no chance to resume.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(grower), Some('T'), "still stopped after the crash");
    assert!(state_file.exists(), "the state file survived the crash");
    // A second guard with thresholds that cannot fire resumes it at start.
    let calm = config_calm(&tmp());
    let mut second = GuardRun::start(&group_path, &calm, &state_file, &[]);
    assert!(
        wait_until(Duration::from_secs(5), || state(grower)
            .is_some_and(|c| c != 'T')),
        "resumed by the next guard"
    );
    assert!(
        second
            .lines()
            .iter()
            .any(|l| l.contains("recovered from an earlier guard"))
    );
    second.terminate();
}

/// Bad config, missing PSI and no root each end with one clear line and a non-zero exit.
#[test]
fn bad_config_missing_psi_and_no_root_are_clear_errors() {
    require_root();
    let bad = tmp().join("guard-bad.toml");
    std::fs::write(&bad, "[thresholds]\nwarn_used_percnt = 50\n").expect("config");
    let cases: Vec<(Vec<String>, Option<u32>, &str)> = vec![
        (
            vec!["--config".into(), bad.display().to_string()],
            None,
            "warn_used_percnt",
        ),
        (
            vec![
                "--psi-file".into(),
                "/nonexistent/pressure".into(),
                "--cgroup".into(),
                "/sys/fs/cgroup/memory".into(),
            ],
            None,
            "PSI is not available",
        ),
        (vec![], Some(65534), "needs root"),
        (
            vec!["--cgroup".into(), "/proc".into()],
            None,
            "is not a memory cgroup",
        ),
    ];
    for (args, uid, needle) in cases {
        let mut cmd = uid.map_or_else(memtrace, support::memtrace_as);
        cmd.arg("guard").args(&args).arg("--dry-run");
        let out = cmd.output().expect("running memtrace guard");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "one error line for {args:?}: {stderr}");
        assert!(errors[0].contains(needle), "{args:?}: {stderr}");
    }
    let out = memtrace()
        .args(["guard", "--print-config"])
        .output()
        .expect("print-config");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[thresholds]"));
}

/// PID reuse: the victim exits and its pid is recycled before the action — nothing is sent.
#[test]
fn recycled_pid_is_never_signalled() {
    require_root();
    let mut first = Command::new("sleep").arg("60").spawn().expect("sleep");
    let pid = first.id();
    let start_ticks = memtrace::host::procfs::parse_pid_stat(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat"),
    )
    .expect("parse")
    .start_ticks;
    let victim = memtrace::host::pidfd::ProcRef {
        pid,
        start_ticks,
        comm: "sleep".into(),
    };
    // The guard only acts on processes seen in an earlier sample: at least one clock tick
    // (10 ms, the resolution of /proc start times) separates their birth from a reuse.
    std::thread::sleep(Duration::from_millis(50));
    let _ = first.kill();
    let _ = first.wait();
    // Recycle the pid: the next fork in this (root) pid namespace gets ns_last_pid + 1.
    let mut reused = None;
    for _ in 0..20 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("ns_last_pid");
        let child = spawn(Command::new("sleep").arg("60"));
        if child.pid() == pid {
            reused = Some(child);
            break;
        }
    }
    let reused = reused.expect("the pid was recycled within 20 tries");
    std::thread::sleep(Duration::from_millis(100));
    let err = victim
        .open(Path::new("/proc"))
        .expect_err("a recycled pid must be refused");
    assert!(err.to_string().contains("reused"), "{err}");
    assert_ne!(state(reused.pid()), Some('T'), "nothing was signalled");
}

/// `memtrace run` guards its own process tree: with thresholds set below the machine's current
/// use, the growing pipeline is suspended (an unrelated growing process is not), and it is
/// resumed when the run ends.
#[test]
fn run_guards_only_its_own_tree() {
    require_root();
    let config = tmp().join("guard-run.toml");
    std::fs::write(
        &config,
        "[thresholds]\nresume_used_percent = 0.5\nwarn_used_percent = 1\nreclaim_used_percent = 1\n\
         suspend_used_percent = 2\nkill_used_percent = 99\n[actions]\ndrop_caches = false\n",
    )
    .expect("config");
    let grow = "import time\nchunks = []\nfor _ in range(16):\n    chunks.append(bytearray(4 << 20))\n    for i in range(0, 4 << 20, 4096): chunks[-1][i] = 1\n    time.sleep(0.05)\nprint('grown', flush=True)\ntime.sleep(30)\n";
    let mut outsider = spawn(
        Command::new("python3")
            .args(["-c", grow])
            .stdout(Stdio::null()),
    );
    let trace = tmp().join("guard-run.mtrace");
    let mut run = spawn(
        memtrace()
            .args(["run", "--out"])
            .arg(&trace)
            .arg("--config")
            .arg(&config)
            .args(["--", "python3", "-c", grow])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let stopped = wait_until(Duration::from_secs(30), || {
        children(run.pid())
            .iter()
            .any(|&child| state(child) == Some('T'))
    });
    assert!(stopped, "the pipeline under `memtrace run` was suspended");
    assert_ne!(
        state(outsider.pid()),
        Some('T'),
        "a process outside the run's tree is never touched"
    );
    // Only the memtrace run this test started.
    signal_pid(run.pid(), Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while run.child_mut().try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = run.child_mut().try_wait().ok().flatten();
    assert!(status.is_some(), "memtrace run ended after SIGTERM");
    let mut out = String::new();
    if let Some(mut stdout) = run.child_mut().stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    let mut err = String::new();
    if let Some(mut stderr) = run.child_mut().stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
    }
    assert!(
        format!("{out}{err}").contains("the guard suspended"),
        "the run says the guard suspended the pipeline ({status:?}):\n{out}\n{err}"
    );
    let report = memtrace()
        .arg("report")
        .arg(&trace)
        .output()
        .expect("report");
    assert!(
        String::from_utf8_lossy(&report.stdout).contains("suspend"),
        "the trace carries the guard decision"
    );
    let _ = outsider.child_mut().kill();
}
