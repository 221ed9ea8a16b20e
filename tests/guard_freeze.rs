//! Privileged tests of freezing instead of SIGSTOP, and of `memtrace run`'s own cgroup, on the
//! real kernel. Every hog lives in a child memory cgroup with a limit, the guard watches only
//! that cgroup (`--cgroup`), every loop is bounded in time, and only processes the test started
//! are killed (by PID).
mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use memtrace::host::{
    cgroup::{Version, procs_of, v2_mount},
    freezer::v1_freezer_mount,
};
use memtrace_testkit::proc::{alive, held, state};
use support::{
    MIB,
    guard_env::{GuardRun, PaneHog, ThawOnDrop, config_protecting, held_below, tmp, wait_until},
    memtrace, memtrace_bin, output_within, require_root, spawn, test_cgroup,
    tmux::Tmux,
};

/// Fields 5 (process group) and 8 (the terminal's foreground process group) of
/// `/proc/PID/stat`.
fn pgrp_and_tpgid(pid: u32) -> Option<(i64, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // After the comm: state ppid pgrp session tty_nr tpgid.
    Some((fields.get(2)?.parse().ok()?, fields.get(5)?.parse().ok()?))
}

/// Where the guard makes the cgroup it moves a foreground job into.
#[derive(Clone, Copy, PartialEq)]
enum Below {
    /// The v1 freezer's root (a hybrid host).
    V1Freezer,
    /// The v2 cgroup the job shares with its shell (an ssh session's scope on a pure v2 host):
    /// the guard runs where no v1 freezer is mounted.
    SharedV2,
}

/// A v2 cgroup standing for an ssh session's scope on a hybrid host (the test's memory cgroup
/// is v1 there): what is left in it goes back to the v2 root, and it is removed, on drop.
struct V2Session(PathBuf);

impl V2Session {
    fn create(v2_root: &Path) -> Self {
        let dir = v2_root.join(format!("memtrace-test-session-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("the session's v2 cgroup");
        Self(dir)
    }
}

impl Drop for V2Session {
    fn drop(&mut self) {
        let root = self.0.parent().expect("below the root").to_owned();
        for held in held_below(&self.0, "") {
            let _ = std::fs::write(self.0.join(&held).join("cgroup.freeze"), "0");
            for pid in procs_of(&self.0.join(&held)).unwrap_or_default() {
                let _ = std::fs::write(root.join("cgroup.procs"), pid.to_string());
            }
            let _ = std::fs::remove_dir(self.0.join(held));
        }
        for pid in procs_of(&self.0).unwrap_or_default() {
            let _ = std::fs::write(root.join("cgroup.procs"), pid.to_string());
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A bash in a tmux pane runs a hog in the foreground; the guard holds it by moving it into a
/// freezer cgroup of its own (ahead, near warn: staged) and freezing that (no SIGSTOP): the pane never shows "Stopped",
/// the hog stays the terminal's foreground job while held and after it is let go, and Ctrl-C in
/// the pane then ends it.
#[test]
fn a_foreground_job_is_frozen_not_stopped_and_ctrl_c_still_reaches_it() {
    require_root();
    if v1_freezer_mount(Path::new("/proc")).is_none() {
        panic!("this test needs the v1 freezer mounted (a hybrid host)");
    }
    foreground_job_is_frozen(Below::V1Freezer);
}

/// The same with no v1 freezer, as on a pure v2 host: the hog shares a v2 cgroup with its shell
/// (an ssh session's scope), so the guard makes a child of that cgroup (no controllers of its
/// own: accounting and limits unchanged), moves the hog there, freezes it, and on exit thaws it
/// and moves it back into the shared cgroup. Here the guard runs in a mount namespace without
/// the v1 freezer.
#[test]
fn a_foreground_job_sharing_a_v2_cgroup_with_its_shell_is_moved_below_it_and_frozen() {
    require_root();
    foreground_job_is_frozen(Below::SharedV2);
}

fn foreground_job_is_frozen(below: Below) {
    // Both run at once in this test process: names of their own.
    let tag = match below {
        Below::V1Freezer => "freeze-v1",
        Below::SharedV2 => "freeze-v2",
    };
    let states = tempfile::Builder::new()
        .prefix("memtrace-guard-state-")
        .tempdir()
        .expect("state dir");
    // No resume while the test looks (resume_hold), then the guard's exit lets it go.
    let config = config_protecting(&tmp(), &format!("guard-{tag}"), None, "");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("resume_hold = \"1ms\"", "resume_hold = \"300s\"");
    std::fs::write(&config, text).expect("config");
    let mut group = test_cgroup(tag, 512 * MIB);
    // Grows to 400 MiB (past the suspend line at 65 % of 512 MiB) unless held, then waits.
    let hog_script = PaneHog::write(tag, 400);
    let (tmux, _server, shell) = Tmux::start_shell_in(&mut group, tag, 120, 30);
    let v1_freezer = v1_freezer_mount(Path::new("/proc"));
    let mut session = None;
    // The cgroup the guard makes its own below, and the hog's cgroup line there after the thaw.
    let (parent, home_line) = match below {
        Below::V1Freezer => (
            v1_freezer.clone().expect("the v1 freezer"),
            ":freezer:/".to_owned(),
        ),
        Below::SharedV2 => {
            let v2_root = v2_mount(Path::new("/proc")).expect("this test needs a cgroup2 mount");
            let shared = if group.version == Version::V2 {
                group.path.clone()
            } else {
                let made = V2Session::create(&v2_root);
                std::fs::write(made.0.join("cgroup.procs"), shell.to_string())
                    .expect("moving the shell into its session's v2 cgroup");
                let path = made.0.clone();
                session = Some(made);
                path
            };
            let relative = shared.strip_prefix(&v2_root).expect("below the root");
            (shared.clone(), format!("0::/{}", relative.display()))
        }
    };
    let state_file = states.path().join("g.json");
    let mut guard = match (below, &v1_freezer) {
        (Below::SharedV2, Some(freezer)) => GuardRun::spawn(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(format!(
                    "umount {} && exec \"$0\" \"$@\"",
                    freezer.display()
                ))
                .arg(memtrace_bin())
                .args(["guard", "--cgroup"])
                .arg(&group.path)
                .arg("--config")
                .arg(&config)
                .arg("--state-file")
                .arg(&state_file),
        ),
        _ => GuardRun::start(&group.path, &config, &state_file, &[]),
    };
    let guard_pid = guard.child.pid();
    let _thaw = ThawOnDrop(guard_pid);
    tmux.run(&["send-keys", "-t", tag, &hog_script.command_line(), "Enter"]);
    let hog = hog_script.pid();
    group.track(hog);
    assert!(
        wait_until(Duration::from_secs(30), || held(hog)),
        "the hog is held: {:?}",
        state(hog)
    );
    assert_ne!(state(hog), Some('T'), "frozen, not stopped by a signal");
    assert!(!group.saw_oom_kill(), "held before any OOM kill");
    assert!(guard.wait_log("suspend [", Duration::from_secs(2)));
    let line = guard.line_with("suspend [").expect("a suspend decision");
    let made = parent.join(format!("memtrace-held-{guard_pid}-{hog}"));
    // Near warn the hog was moved ahead into a thawed cgroup of its own: the hold was one write.
    let staged = guard
        .line_with("staged ")
        .expect("the hog was staged before the hold");
    assert!(
        staged.contains(&format!("staged {hog} (python3)"))
            && staged.contains(&format!("in the thawed cgroup {}", made.display())),
        "{staged}"
    );
    assert!(
        line.contains(&format!("froze cgroup {}", made.display()))
            && line.contains(&format!(
                "moved there from {} when it was staged)",
                parent.display()
            )),
        "{line}"
    );
    assert_eq!(
        held_below(&parent, &guard_pid.to_string()).len(),
        1,
        "one freezer cgroup made"
    );
    if below == Below::SharedV2 {
        assert_eq!(
            procs_of(&made).expect("the held cgroup's procs"),
            vec![hog],
            "the hog alone was moved: its shell stays where it was"
        );
        assert!(
            procs_of(&parent)
                .expect("the shared cgroup's procs")
                .contains(&shell),
            "the shell is still in the shared cgroup"
        );
        assert_eq!(
            std::fs::read_to_string(made.join("cgroup.controllers"))
                .expect("controllers")
                .trim(),
            "",
            "no controller of its own: accounted and limited as before"
        );
    }
    // Give a "Stopped" (a SIGCHLD to the shell) time to show, then look.
    std::thread::sleep(Duration::from_millis(700));
    let (pgrp, tpgid) = pgrp_and_tpgid(hog).expect("the hog's stat");
    assert_eq!(
        tpgid, pgrp,
        "held, the hog is still the terminal's foreground job"
    );
    let screen = tmux.run(&["capture-pane", "-p", "-t", tag]);
    assert!(!screen.contains("Stopped"), "the shell noticed:\n{screen}");
    // The guard ends: it thaws the hog and moves it back where it was.
    guard.terminate();
    assert!(
        wait_until(Duration::from_secs(5), || alive(hog) && !held(hog)),
        "thawed when the guard ends: {:?}",
        state(hog)
    );
    assert!(
        held_below(&parent, &guard_pid.to_string()).is_empty(),
        "the freezer cgroup is removed: {:?}",
        held_below(&parent, &guard_pid.to_string())
    );
    let cgroups = std::fs::read_to_string(format!("/proc/{hog}/cgroup")).expect("cgroup");
    assert!(
        cgroups.lines().any(|l| l.ends_with(&home_line)),
        "moved back ({home_line}): {cgroups}"
    );
    let (pgrp, tpgid) = pgrp_and_tpgid(hog).expect("the hog's stat");
    assert_eq!(tpgid, pgrp, "let go, the hog is still the foreground job");
    // Let it finish growing, then Ctrl-C in the pane reaches it.
    std::thread::sleep(Duration::from_millis(500));
    tmux.run(&["send-keys", "-t", tag, "C-c"]);
    assert!(
        wait_until(Duration::from_secs(10), || !alive(hog)),
        "Ctrl-C ended the hog: {:?}",
        state(hog)
    );
    let screen = tmux.run(&["capture-pane", "-p", "-t", tag]);
    assert!(
        screen.contains("KeyboardInterrupt") && !screen.contains("Stopped"),
        "{screen}"
    );
    assert_eq!(state(shell), Some('S'), "the shell waits at its prompt");
    drop(tmux);
    drop(session);
}

/// `memtrace run --memory-max 64M` starts the pipeline in a cgroup of its own: the hog is
/// OOM-killed there at 64 MiB (the summary says so) while a bystander beside memtrace lives on,
/// and the cgroup is gone when the run ends.
#[test]
fn run_with_memory_max_hits_its_own_limit_and_nothing_else() {
    require_root();
    let mut group = test_cgroup("run-max", 512 * MIB);
    let mut bystander = spawn(&mut group.command("sleep", &["60"]));
    group.track(bystander.pid());
    let out = output_within(
        group
            .command(
                memtrace_bin().to_str().expect("utf-8 path"),
                &[
                    "run",
                    "--quiet",
                    "--memory-max",
                    "64M",
                    "-o",
                    tmp()
                        .join(format!("run-max-{}.mtrace", std::process::id()))
                        .to_str()
                        .expect("utf-8 path"),
                    "--",
                    "python3",
                    "-c",
                    "x = []\nwhile True: x.append(bytearray(1 << 20))",
                ],
            )
            .current_dir(tmp()),
        Duration::from_secs(60),
    );
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(137), "killed by SIGKILL: {said}");
    let own = said
        .lines()
        .find_map(|l| l.strip_prefix("[memtrace] the pipeline runs in its own cgroup "))
        .unwrap_or_else(|| panic!("the run says where: {said}"));
    let memory_dir = own.split(" and ").next().expect("a directory");
    assert!(
        memory_dir.starts_with(&group.path.display().to_string()),
        "below memtrace's own memory cgroup (the test's): {memory_dir}"
    );
    assert!(
        said.lines().any(
            |l| l.starts_with(&format!("[memtrace] cgroup {memory_dir}: peak "))
                && l.contains("of --memory-max 64.0 MiB, 1 OOM kill inside it")
        ),
        "{said}"
    );
    for dir in own.split(" and ") {
        assert!(!Path::new(dir).exists(), "{dir} removed after the run");
    }
    assert!(
        alive(bystander.pid()),
        "the bystander beside memtrace lives"
    );
    bystander.kill();
}

/// A bad size is a one-line error.
#[test]
fn a_bad_memory_limit_is_a_one_line_error() {
    require_root();
    let out = output_within(
        memtrace().args(["run", "--memory-max", "64Q", "--", "true"]),
        Duration::from_secs(20),
    );
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with("memtrace: error: --memory-max: invalid size \"64Q\""),
        "{said}"
    );
}

/// A run killed with SIGKILL leaves its (then empty) cgroups behind; the next run removes them.
#[test]
fn the_next_run_removes_the_cgroups_a_killed_run_left() {
    require_root();
    let mut group = test_cgroup("run-leftover", 256 * MIB);
    let trace = tmp()
        .join(format!("run-leftover-{}.mtrace", std::process::id()))
        .display()
        .to_string();
    let mut run = spawn(
        group
            .command(
                memtrace_bin().to_str().expect("utf-8 path"),
                &["run", "--quiet", "-o", &trace, "--", "sleep", "60"],
            )
            .current_dir(tmp())
            .stderr(std::process::Stdio::null()),
    );
    group.track(run.pid());
    let name = format!("memtrace-run-{}", run.pid());
    let dir = group.path.join(&name);
    assert!(
        wait_until(Duration::from_secs(20), || {
            memtrace::host::cgroup::procs_of(&dir).is_ok_and(|p| !p.is_empty())
        }),
        "the pipeline is in {}",
        dir.display()
    );
    let sleeper = memtrace::host::cgroup::procs_of(&dir).expect("procs")[0];
    group.track(sleeper);
    // memtrace dies without cleaning up, then its pipeline ends (this test's processes, by pid).
    run.kill();
    memtrace_testkit::child::kill_pid(sleeper);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(sleeper)),
        "the sleeper ended"
    );
    assert!(dir.exists(), "left behind by the killed run");
    let next = output_within(
        group
            .command(
                memtrace_bin().to_str().expect("utf-8 path"),
                &["run", "--quiet", "-o", &trace, "--", "true"],
            )
            .current_dir(tmp()),
        Duration::from_secs(30),
    );
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert!(!dir.exists(), "{} removed by the next run", dir.display());
    assert!(
        !Path::new("/sys/fs/cgroup/freezer").join(&name).exists(),
        "its freezer cgroup too"
    );
}
