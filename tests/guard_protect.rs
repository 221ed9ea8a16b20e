//! Privileged tests of whom the guard never holds: a hog that calls itself sshd is still held
//! (sshd is known by its executable), and a hog run in the foreground of a tmux pane is held
//! without the pane's shell or the tmux server. Hogs live in child memory cgroups with limits;
//! only processes the test started are killed (by PID).
mod support;

use std::time::Duration;

use memtrace_testkit::proc::{alive, held, state};
use support::{
    MIB,
    guard_env::{
        GuardRun, PaneHog, config_protecting, pipeline_named, start_in, state_dir, tmp, wait_until,
    },
    require_root, test_cgroup,
    tmux::Tmux,
};

/// A hog that calls itself "sshd" is no sshd: with the default protected names it is suspended
/// like any other (sshd is known by its executable).
#[test]
fn hog_renamed_sshd_is_suspended() {
    require_root();
    let states = state_dir();
    let config = config_protecting(&tmp(), "guard-sshd-hog", None, "");
    let mut group = test_cgroup("sshd-hog", 512 * MIB);
    let mut guard = GuardRun::start(&group.path, &config, &states.path().join("g.json"), &[]);
    // Grows past the limit unless suspended (then the kernel kills it inside the cgroup).
    let (_parent, line) = start_in(&mut group, "pipeline", &pipeline_named("sshd", 4, 600));
    let hog: u32 = line
        .strip_prefix("child ")
        .and_then(|pid| pid.trim().parse().ok())
        .expect("the pipeline prints its child's pid");
    group.track(hog);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{hog}/comm")).is_ok_and(|c| c.trim() == "sshd")
    }));
    assert!(
        wait_until(Duration::from_secs(30), || held(hog)),
        "the hog named sshd is suspended: {:?}",
        state(hog)
    );
    assert!(!group.saw_oom_kill(), "suspended before any OOM kill");
    assert!(guard.wait_log("suspend [", Duration::from_secs(2)));
    guard.terminate();
    assert!(alive(hog) && !held(hog), "resumed when the guard ends");
}

/// A bash in a tmux pane runs a hog in the foreground, as a user at a terminal would: the guard
/// holds the hog alone — never the pane's shell (it would print "Stopped" and take the terminal)
/// nor the tmux server (every pane would freeze).
#[test]
fn hog_in_a_tmux_pane_is_held_without_its_shell_or_tmux() {
    require_root();
    let states = state_dir();
    let config = config_protecting(&tmp(), "guard-tmux", None, "");
    let mut group = test_cgroup("tmux", 512 * MIB);
    // Grows past the limit unless held (then the kernel kills it inside the cgroup).
    let hog_script = PaneHog::write("tmux", 600);
    // The server starts inside the cgroup (the client that forks it is moved there first).
    let (tmux, server, shell) = Tmux::start_shell_in(&mut group, "t", 120, 30);
    let mut guard = GuardRun::start(&group.path, &config, &states.path().join("g.json"), &[]);
    tmux.run(&["send-keys", "-t", "t", &hog_script.command_line(), "Enter"]);
    let hog = hog_script.pid();
    group.track(hog);
    assert!(
        wait_until(Duration::from_secs(30), || held(hog)),
        "the hog is held: {:?}",
        state(hog)
    );
    assert!(!group.saw_oom_kill(), "held before any OOM kill");
    // Give any signal to the shell or the server time to land, then look at them.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        state(shell),
        Some('S'),
        "the pane's shell waits at its prompt, not held"
    );
    assert!(
        matches!(state(server), Some('S' | 'R')),
        "the tmux server runs: {:?}",
        state(server)
    );
    assert!(guard.wait_log("suspend [", Duration::from_secs(2)));
    let line = guard.line_with("suspend [").expect("a suspend decision");
    assert!(line.contains(&format!("pids [{hog}]")), "{line}");
    // Only the hog this test started, by pid; the server and the shell go with the cgroup.
    memtrace_testkit::child::kill_pid(hog);
    guard.terminate();
    drop(tmux);
}
