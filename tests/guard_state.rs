//! Privileged tests of the guard's state across restarts and its start-up refusals: a restarted
//! guard resumes what a killed one held, a planted or unusable state file is a claim to check (or
//! a refusal), one guard per scope, a killed run's pipeline and a dead guard's frozen cgroup are
//! released, and a tree a dead guard had staged is moved back. Hogs live in child memory cgroups with limits; only processes the test started are
//! killed (by PID).
mod support;

use std::{path::Path, process::Stdio, time::Duration};

use memtrace_testkit::{
    child::signal_pid,
    proc::{alive, held},
};
use rustix::process::Signal;
use support::{
    MIB,
    guard_env::{
        GuardRun, config, config_calm, holder, scenario, start_in, start_pipeline, state_dir, tmp,
        wait_until,
    },
    memtrace, memtrace_bin, require_root, spawn, test_cgroup,
};

/// A guard killed with SIGKILL while a tree is suspended: the next start resumes it.
#[test]
fn restart_after_sigkill_resumes_what_was_suspended() {
    require_root();
    let states = state_dir();
    let state_file = states.path().join("guard-state-crash.json");
    let config = config(&tmp(), "");
    let mut s = scenario("crash");
    let group_path = s.group.path.clone();
    let guard = GuardRun::start(&group_path, &config, &state_file, &[]);
    let (_parent, grower) = start_pipeline(&mut s.group);
    assert!(wait_until(Duration::from_secs(30), || held(grower)));
    drop(guard); // SIGKILL: no chance to resume.
    std::thread::sleep(Duration::from_millis(300));
    assert!(held(grower), "still stopped after the crash");
    assert!(state_file.exists(), "the state file survived the crash");
    // A second guard with thresholds that cannot fire resumes it at start.
    let calm = config_calm(&tmp());
    let mut second = GuardRun::start(&group_path, &calm, &state_file, &[]);
    assert!(
        wait_until(Duration::from_secs(5), || alive(grower) && !held(grower)),
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

/// Start time (clock ticks after boot) of `pid`, from /proc.
fn start_ticks(pid: u32) -> u64 {
    memtrace::host::procfs::parse_pid_stat(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat"),
    )
    .expect("parse")
    .start_ticks
}

/// Runs `memtrace guard --cgroup CGROUP … --exit-after 1s` to its end: (success, stderr).
fn guard_once(cgroup: &Path, config: &Path, state_file: &Path, extra: &[&str]) -> (bool, String) {
    let out = memtrace()
        .args(["guard", "--cgroup"])
        .arg(cgroup)
        .arg("--config")
        .arg(config)
        .arg("--state-file")
        .arg(state_file)
        .args(["--exit-after", "1s"])
        .args(extra)
        .output()
        .expect("running memtrace guard");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{log}");
    (out.status.success(), log)
}

/// The one `memtrace: error:` line of a refused start.
fn one_error(log: &str) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("memtrace: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {log}");
    errors[0].to_owned()
}

/// A state file listing processes the guard never stopped is a claim, not an order: a process
/// someone else stopped outside the guarded cgroup, one whose start time does not match, a
/// running one, init and a "frozen cgroup" that is a plain directory are all left alone; a
/// dry run resumes nothing; only the stopped, unchanged, in-scope process is resumed.
#[test]
fn planted_state_file_is_a_claim_not_an_order() {
    require_root();
    let states = state_dir();
    let state_file = states.path().join("planted.json");
    let mut inside = test_cgroup("claim", 256 * MIB);
    let mut outside = test_cgroup("claim-out", 64 * MIB);
    let marker = states.path().join("got-sigcont");
    let on_cont = format!(
        "import signal, time\n\
         signal.signal(signal.SIGCONT, lambda *a: open({:?}, 'w').write('x'))\n\
         print('ready', flush=True)\n\
         time.sleep(120)\n",
        marker.display().to_string()
    );
    let (running, _) = start_in(&mut inside, "running", &on_cont);
    let (kept, _) = start_in(&mut inside, "held", &holder("held", 1));
    let (reused, _) = start_in(&mut inside, "reused", &holder("reused", 1));
    let (stranger, _) = start_in(&mut outside, "stranger", &holder("stranger", 1));
    let stopped = [kept.pid(), reused.pid(), stranger.pid()];
    for pid in stopped {
        signal_pid(pid, Signal::STOP);
    }
    assert!(wait_until(Duration::from_secs(5), || stopped
        .iter()
        .all(|&pid| held(pid))));
    let fake_cgroup = states.path().join("not-a-cgroup");
    std::fs::create_dir(&fake_cgroup).expect("mkdir");
    std::fs::write(fake_cgroup.join("cgroup.freeze"), "1").expect("write");
    let member = |pid: u32, ticks: u64, comm: &str| serde_json::json!({"pid": pid, "start_ticks": ticks, "comm": comm});
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
    let planted = serde_json::json!({
        "version": 2,
        "boot_id": boot_id.trim(),
        "suspended": [
            {"how": "stop", "cgroup": null, "members": [
                member(kept.pid(), start_ticks(kept.pid()), "held"),
                member(running.pid(), start_ticks(running.pid()), "running"),
                member(reused.pid(), start_ticks(reused.pid()) + 1, "reused"),
                member(stranger.pid(), start_ticks(stranger.pid()), "stranger"),
                member(1, start_ticks(1), "init"),
            ]},
            {"how": "freeze", "cgroup": fake_cgroup, "members": [
                member(kept.pid(), start_ticks(kept.pid()), "held"),
            ]},
        ],
    });
    std::fs::write(&state_file, planted.to_string()).expect("planting the state file");
    let calm = config_calm(&tmp());

    let (ok, log) = guard_once(&inside.path, &calm, &state_file, &["--dry-run"]);
    assert!(ok, "{log}");
    assert!(
        log.contains(&format!("would resume {} (held)", kept.pid())),
        "{log}"
    );
    assert!(held(kept.pid()), "a dry run resumes nothing");
    assert!(state_file.exists(), "a dry run keeps the state file");

    let (ok, log) = guard_once(&inside.path, &calm, &state_file, &[]);
    assert!(ok, "{log}");
    assert!(
        wait_until(Duration::from_secs(5), || alive(kept.pid())
            && !held(kept.pid())),
        "the stopped, unchanged, in-scope process is resumed"
    );
    assert!(
        held(stranger.pid()),
        "stopped by someone else outside the guarded cgroup: not resumed"
    );
    assert!(held(reused.pid()), "start time does not match: not resumed");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "a running process got a SIGCONT");
    assert_eq!(
        std::fs::read_to_string(fake_cgroup.join("cgroup.freeze")).expect("read"),
        "1",
        "nothing written outside the cgroup2 mounts"
    );
    for needle in [
        "outside the guarded scope",
        "the pid was reused",
        "not stopped (state",
        "init is never touched",
        "is not below a cgroup2 mount",
    ] {
        assert!(log.contains(needle), "{needle:?} in {log}");
    }
    assert!(!state_file.exists(), "the recovered file is removed");
}

/// One guard per scope: a second guard on the same cgroup refuses with one line naming the
/// first one's pid (whatever its state file), a guard of another scope refuses the first one's
/// state file, and once the first one ends the scope is free again.
#[test]
fn second_guard_on_one_scope_refuses() {
    require_root();
    let states = state_dir();
    let group = test_cgroup("two", 64 * MIB);
    let other = test_cgroup("two-other", 64 * MIB);
    let calm = config_calm(&tmp());
    let mut first = GuardRun::start(&group.path, &calm, &states.path().join("first.json"), &[]);
    let first_pid = format!("pid {}", first.child.pid());
    for (state_file, cgroup, needle) in [
        ("second.json", &group.path, "already guards cgroup"),
        ("first.json", &group.path, "already guards cgroup"),
        ("first.json", &other.path, "first.json is in use"),
    ] {
        let (ok, log) = guard_once(cgroup, &calm, &states.path().join(state_file), &[]);
        assert!(!ok, "a second guard must not start: {log}");
        let line = one_error(&log);
        assert!(
            line.contains(needle) && line.contains(&first_pid),
            "{state_file}: {line}"
        );
    }
    first.terminate();
    let (ok, log) = guard_once(&group.path, &calm, &states.path().join("second.json"), &[]);
    assert!(ok, "free again once the first guard ended: {log}");
}

/// A state file the guard could not write, or that another user could change, is refused at
/// start with one line (before, the guard ran and every suspension failed).
#[test]
fn unusable_state_file_is_refused_at_start() {
    require_root();
    let group = test_cgroup("refuse", 64 * MIB);
    let calm = config_calm(&tmp());
    let nobodys = state_dir();
    std::os::unix::fs::chown(nobodys.path(), Some(65534), Some(65534)).expect("chown");
    let linked = state_dir();
    let target = linked.path().join("target");
    std::fs::write(&target, "precious").expect("write");
    std::os::unix::fs::symlink(&target, linked.path().join("guard.json")).expect("symlink");
    assert_eq!(
        std::fs::metadata("/tmp")
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o1777)
            .ok(),
        Some(0o1777),
        "/tmp is the world-writable directory of this test"
    );
    for (state_file, needle) in [
        (
            Path::new("/proc/memtrace-guard-test.json").to_path_buf(),
            "cannot be written",
        ),
        (
            Path::new("/tmp/memtrace-guard-test.json").to_path_buf(),
            "/tmp is writable by group or others",
        ),
        (nobodys.path().join("guard.json"), "owned by uid 65534"),
        (linked.path().join("guard.json"), "not a regular file"),
    ] {
        let (ok, log) = guard_once(&group.path, &calm, &state_file, &[]);
        assert!(!ok, "{}: must be refused: {log}", state_file.display());
        let line = one_error(&log);
        assert!(line.contains(needle), "{}: {line}", state_file.display());
    }
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "precious");
}

/// `memtrace run` killed with SIGKILL while its guard holds the pipeline: the pipeline stays
/// stopped until the next guard, which finds the dead run's state file and resumes it.
#[test]
fn pipeline_of_a_killed_run_is_resumed_by_the_next_guard() {
    require_root();
    let config = tmp().join("guard-run-killed.toml");
    std::fs::write(
        &config,
        "[thresholds]\nresume_used_percent = 0.5\nwarn_used_percent = 1\nreclaim_used_percent = 1\n\
         suspend_used_percent = 2\nkill_used_percent = 99\n[actions]\ndrop_caches = false\n",
    )
    .expect("config");
    let grow = "import time\nchunks = []\nfor _ in range(16):\n    chunks.append(bytearray(4 << 20))\n    for i in range(0, 4 << 20, 4096): chunks[-1][i] = 1\n    time.sleep(0.05)\nprint('grown', flush=True)\ntime.sleep(60)\n";
    let group = test_cgroup("run-killed", 512 * MIB);
    let trace = tmp().join("guard-run-killed.mtrace");
    let bin = memtrace_bin().display().to_string();
    let (trace_arg, config_arg) = (trace.display().to_string(), config.display().to_string());
    let mut run = spawn(
        group
            .command(
                &bin,
                &[
                    "run",
                    "--out",
                    &trace_arg,
                    "--config",
                    &config_arg,
                    "--",
                    "python3",
                    "-c",
                    grow,
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let run_pid = run.pid();
    let children = || -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{run_pid}/task/{run_pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let mut pipeline = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            pipeline = children().into_iter().find(|&c| held(c));
            pipeline.is_some()
        }),
        "the run's guard suspended its pipeline"
    );
    let pipeline = pipeline.expect("found above");
    let pipeline_ref = memtrace::host::pidfd::ProcRef {
        pid: pipeline,
        start_ticks: start_ticks(pipeline),
        comm: "python3".into(),
    };
    let run_file = Path::new("/run/memtrace").join(format!("run-{run_pid}-suspended.json"));
    assert!(run_file.exists(), "{} is written", run_file.display());
    // Only the memtrace run this test started; SIGKILL: no chance to resume.
    signal_pid(run_pid, Signal::KILL);
    let _ = run.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert!(held(pipeline), "still held after the run died");
    assert!(run_file.exists(), "the dead run's state file stays");

    let states = state_dir();
    let (ok, log) = guard_once(
        &group.path,
        &config_calm(&tmp()),
        &states.path().join("g.json"),
        &[],
    );
    assert!(ok, "{log}");
    let resumed = wait_until(Duration::from_secs(5), || {
        alive(pipeline) && !held(pipeline)
    });
    // The pipeline this test's run started, through a pidfd checked against its start time.
    let _ = pipeline_ref
        .open(Path::new("/proc"))
        .and_then(|fd| fd.signal(Signal::KILL));
    assert!(resumed, "the next guard resumed the dead run's pipeline");
    // The run's pipeline ran in its own freezer cgroup (a v1 host) or was stopped by a signal.
    assert!(
        log.contains(&format!(
            "recovered from a dead `memtrace run`: run {run_pid}: resumed {pipeline}"
        )) || log.contains(&format!(
            "recovered from a dead `memtrace run`: run {run_pid}: thawed cgroup /sys/fs/cgroup/freezer/memtrace-run-{run_pid}"
        )),
        "{log}"
    );
    assert!(!run_file.exists(), "the recovered file is removed");
    // The killed run's (now empty) cgroups: what its next run would remove.
    wait_until(Duration::from_secs(5), || !alive(pipeline));
    for dir in [
        group.path.join(format!("memtrace-run-{run_pid}")),
        Path::new("/sys/fs/cgroup/freezer").join(format!("memtrace-run-{run_pid}")),
    ] {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Removes a v2 cgroup made by a test: thawed, emptied by the caller (its processes are killed
/// first: declare this before them), then removed.
struct RemoveCgroup(std::path::PathBuf);

impl Drop for RemoveCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.freeze"), "0");
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Where a test makes a v2 cgroup of its own: below the test cgroup where it is v2 itself; on
/// a v1 memory hierarchy, in the unified one.
fn v2_parent(group: &support::TestCgroup) -> std::path::PathBuf {
    if group.version == memtrace_host::cgroup::Version::V2 {
        group.path.clone()
    } else {
        memtrace_host::cgroup::v2_mount(Path::new("/proc")).expect("a cgroup2 mount")
    }
}

/// The checks do not stop a true claim: a dead guard's record of a real, frozen v2 cgroup
/// holding the recorded process is thawed by the next guard.
#[test]
fn frozen_cgroup_of_a_dead_guard_is_thawed() {
    require_root();
    let mut group = test_cgroup("thaw", 64 * MIB);
    let parent = v2_parent(&group);
    let frozen = RemoveCgroup(parent.join(format!("memtrace-test-thaw-{}", std::process::id())));
    let _ = std::fs::create_dir(&frozen.0);
    let (held, _) = start_in(&mut group, "frozen", &holder("frozen", 1));
    std::fs::write(frozen.0.join("cgroup.procs"), held.pid().to_string()).expect("move");
    std::fs::write(frozen.0.join("cgroup.freeze"), "1").expect("freeze");
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(frozen.0.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|l| l == "frozen 1"))
    }));
    let states = state_dir();
    let state_file = states.path().join("guard.json");
    let planted = serde_json::json!({
        "version": 2,
        "suspended": [{"how": "freeze", "cgroup": frozen.0, "members": [
            {"pid": held.pid(), "start_ticks": start_ticks(held.pid()), "comm": "frozen"},
        ]}],
    });
    std::fs::write(&state_file, planted.to_string()).expect("planting the state file");
    let (ok, log) = guard_once(&group.path, &config_calm(&tmp()), &state_file, &[]);
    assert!(ok, "{log}");
    assert!(
        log.contains(&format!("thawed cgroup {}", frozen.0.display())),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(frozen.0.join("cgroup.freeze"))
            .expect("read")
            .trim(),
        "0"
    );
    drop(held);
}

/// A guard killed while a tree was staged (moved ahead into a thawed cgroup of its own, near
/// warn): the next guard moves the tree back where it came from and removes the cgroup.
#[test]
fn a_tree_a_dead_guard_staged_is_moved_back() {
    require_root();
    let mut group = test_cgroup("staged", 64 * MIB);
    let parent = v2_parent(&group);
    // Named as a guard names it, for a guard pid that is no live process.
    let staged = RemoveCgroup(parent.join(format!("memtrace-held-{}-1", u32::MAX - 7)));
    let _ = std::fs::create_dir(&staged.0);
    let (tree, _) = start_in(&mut group, "staged", &holder("staged", 1));
    std::fs::write(staged.0.join("cgroup.procs"), tree.pid().to_string()).expect("move");
    let states = state_dir();
    let state_file = states.path().join("guard.json");
    let planted = serde_json::json!({
        "version": 2,
        "suspended": [],
        "staged": {"how": "freeze", "cgroup": staged.0, "moved_from": parent, "members": [
            {"pid": tree.pid(), "start_ticks": start_ticks(tree.pid()), "comm": "staged"},
        ]},
    });
    std::fs::write(&state_file, planted.to_string()).expect("planting the state file");
    let (ok, log) = guard_once(&group.path, &config_calm(&tmp()), &state_file, &[]);
    assert!(ok, "{log}");
    assert!(
        log.contains(&format!(
            "moved the staged tree {} (staged) back from {} to {}",
            tree.pid(),
            staged.0.display(),
            parent.display()
        )),
        "{log}"
    );
    assert!(!staged.0.exists(), "its cgroup is removed");
    assert!(
        memtrace_host::cgroup::procs_of(&parent)
            .expect("the parent's procs")
            .contains(&tree.pid()),
        "back in {}",
        parent.display()
    );
    assert!(
        alive(tree.pid()) && !held(tree.pid()),
        "running, never frozen"
    );
    drop(tree);
}
