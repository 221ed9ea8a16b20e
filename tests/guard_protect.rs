//! Privileged tests of whom the guard never holds: a hog that calls itself sshd is still held
//! (sshd is known by its executable), and a hog run in the foreground of a tmux pane is held
//! without the pane's shell or the tmux server. Hogs live in child memory cgroups with limits;
//! only processes the test started are killed (by PID).
mod support;

use std::{process::Command, time::Duration};

use memtrace_testkit::proc::{alive, held, state};
use support::{
    MIB,
    guard_env::{
        GuardRun, config_protecting, pipeline_named, start_in, state_dir, tmp, wait_until,
    },
    output_within, require_root, test_cgroup,
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
    let socket = format!("memtrace-test-{}", std::process::id());
    let pid_file = tmp().join(format!("tmux-hog-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let script = tmp().join(format!("tmux-hog-{}.py", std::process::id()));
    // Grows past the limit unless held (then the kernel kills it inside the cgroup).
    std::fs::write(
        &script,
        format!(
            "import os, time\n\
             open({pid_file:?}, 'w').write(str(os.getpid()))\n\
             chunks = []\n\
             while len(chunks) * 4 < 600:\n\
             \x20   c = bytearray(4 << 20)\n\
             \x20   for i in range(0, len(c), 4096): c[i] = 1\n\
             \x20   chunks.append(c)\n\
             \x20   time.sleep(0.025)\n\
             time.sleep(120)\n",
            pid_file = pid_file.display().to_string()
        ),
    )
    .expect("writing the hog");
    let tmux = |args: &[&str]| {
        let out = output_within(
            Command::new("tmux")
                .args(["-L", &socket, "-f", "/dev/null"])
                .args(args)
                .env("TERM", "xterm"),
            Duration::from_secs(10),
        );
        assert!(
            out.status.success(),
            "tmux {args:?} (tmux is needed by this test): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The server starts inside the cgroup (the client that forks it is moved there first).
    let started = output_within(
        group
            .command(
                "tmux",
                &[
                    "-L",
                    &socket,
                    "-f",
                    "/dev/null",
                    "new-session",
                    "-d",
                    "-s",
                    "t",
                    "-x",
                    "120",
                    "-y",
                    "30",
                    "bash --norc --noprofile -i",
                ],
            )
            .env("TERM", "xterm"),
        Duration::from_secs(10),
    );
    assert!(
        started.status.success(),
        "starting tmux (tmux is needed by this test): {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let pids = tmux(&["display-message", "-p", "-t", "t", "#{pid} #{pane_pid}"]);
    let (server, shell) = pids
        .split_once(' ')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .unwrap_or_else(|| panic!("tmux server and pane pids: {pids:?}"));
    group.track(shell);
    group.track(server);
    let mut guard = GuardRun::start(&group.path, &config, &states.path().join("g.json"), &[]);
    tmux(&[
        "send-keys",
        "-t",
        "t",
        &format!("python3 {}", script.display()),
        "Enter",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || pid_file.exists()),
        "the hog started in the pane"
    );
    let hog: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .expect("the hog's pid");
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
    let line = guard
        .lines()
        .into_iter()
        .find(|l| l.contains("suspend ["))
        .expect("a suspend decision");
    assert!(line.contains(&format!("pids [{hog}]")), "{line}");
    // Only the hog this test started, by pid; the server and the shell go with the cgroup.
    memtrace_testkit::child::kill_pid(hog);
    guard.terminate();
    tmux(&["kill-server"]);
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&script);
}
