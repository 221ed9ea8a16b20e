//! Privileged tests of the guard's notices on the real kernel: the message on a terminal and
//! the hook commands, from `memtrace guard` and from the guard inside `memtrace run` (which
//! also answers `memtrace guard --run PID`). The hog lives in a child memory cgroup with a limit, the guard watches
//! only that cgroup (`--cgroup`), every loop is bounded in time, and only processes the test
//! started are killed (by PID).
mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use memtrace_testkit::proc::{alive, held, state};
use support::{
    MIB,
    guard_env::{GuardRun, PaneHog, ThawOnDrop, config_protecting, start_in, tmp, wait_until},
    memtrace, memtrace_bin, output_within, require_root, test_cgroup,
    tmux::Tmux,
};

/// A hog that grows 4 MiB every 25 ms up to `mib`, then waits.
fn hog(mib: u64) -> String {
    format!(
        "import os, time\n\
         print(os.getpid(), flush=True)\n\
         chunks = []\n\
         while len(chunks) * 4 < {mib}:\n\
         \x20   c = bytearray(4 << 20)\n\
         \x20   for i in range(0, len(c), 4096): c[i] = 1\n\
         \x20   chunks.append(c)\n\
         \x20   time.sleep(0.025)\n\
         time.sleep(120)\n"
    )
}

/// The guard holds a hog: within a second the message is on a terminal (a tmux pane, named in
/// `notify.extra_terminals`: the test's pane is no login session), saying what, why and how to
/// resume or kill it; the `on_suspend` hook gets the decision in its environment; a resume by
/// hand is announced too.
#[test]
fn a_hold_is_told_on_the_terminal_and_to_the_hooks() {
    require_root();
    let id = std::process::id();
    let tmux = Tmux::start("t", 200, 40, "bash --norc --noprofile -i");
    let tty = tmux.pane_tty();
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    let env_file = tmp().join(format!("notify-hook-{id}.env"));
    let _ = std::fs::remove_file(&env_file);
    let hook = format!("env | grep ^MEMTRACE_ > '{}'", env_file.display());
    let states = tempfile::Builder::new()
        .prefix("memtrace-guard-state-")
        .tempdir()
        .expect("state dir");
    let state_file = states.path().join("g.json");
    let extra = format!(
        "[notify]\nterminals = false\nextra_terminals = [{tty:?}]\non_suspend = [\"sh\", \"-c\", {hook:?}]\nhook_timeout = \"5s\"\n"
    );
    let config = config_protecting(&tmp(), "guard-notify", None, &extra);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("resume_hold = \"1ms\"", "resume_hold = \"300s\"");
    std::fs::write(&config, text).expect("config");
    let mut group = test_cgroup("notify", 512 * MIB);
    let mut guard = GuardRun::start(&group.path, &config, &state_file, &[]);
    let (child, _) = start_in(&mut group, "hog", &hog(400));
    let hog = child.pid();
    // Declared after the hog: dropped first, so a failed test leaves nothing frozen.
    let _thaw = ThawOnDrop(guard.child.pid());
    assert!(
        wait_until(Duration::from_secs(30), || held(hog)),
        "the hog is held: {:?}",
        state(hog)
    );
    let held_at = Instant::now();
    let screen = || tmux.run(&["capture-pane", "-p", "-J", "-t", "t"]);
    let told = wait_until(Duration::from_secs(3), || {
        screen().contains(&format!("memtrace guard: HELD {hog} (hog, 1 process,"))
    });
    let after = held_at.elapsed();
    let shown = screen();
    eprintln!("the pane after the hold:\n{shown}");
    assert!(told, "the message reached the pane:\n{shown}");
    assert!(
        after < Duration::from_secs(1),
        "within 1 s of the hold: {after:?}"
    );
    assert!(
        shown.contains("  why: ")
            && shown.contains(&format!("resume it: sudo memtrace guard resume {hog}"))
            && shown.contains(&format!("kill it: sudo memtrace guard kill {hog}")),
        "{shown}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(
            &env_file
        )
        .is_ok_and(|t| t.contains("MEMTRACE_REASON="))),
        "the hook wrote its environment"
    );
    let env = std::fs::read_to_string(&env_file).expect("hook output");
    let get = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {env}"))
            .to_owned()
    };
    assert_eq!(get("MEMTRACE_ACTION"), "suspend");
    assert_eq!(get("MEMTRACE_ID"), hog.to_string());
    assert_eq!(get("MEMTRACE_PID"), hog.to_string());
    assert_eq!(get("MEMTRACE_PIDS"), hog.to_string());
    assert_eq!(get("MEMTRACE_COMM"), "hog");
    assert!(
        ["freeze", "freezer", "stop"].contains(&get("MEMTRACE_HOW").as_str()),
        "{env}"
    );
    assert!(
        get("MEMTRACE_HELD_BYTES")
            .parse::<u64>()
            .is_ok_and(|b| b > 100 * MIB),
        "{env}"
    );
    assert!(get("MEMTRACE_REASON").contains("victim"), "{env}");
    // A resume by hand is told too.
    let resumed = output_within(
        memtrace()
            .args(["guard", "--cgroup"])
            .arg(&group.path)
            .arg("--state-file")
            .arg(&state_file)
            .args(["resume", &hog.to_string()]),
        Duration::from_secs(20),
    );
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(3), || screen()
            .contains(&format!("memtrace guard: resumed {hog} (hog"))),
        "the resume reached the pane:\n{}",
        screen()
    );
    // Only the hog this test started, by pid (thawed first if the guard held it again).
    guard.terminate();
    assert!(
        wait_until(Duration::from_secs(5), || !held(hog)),
        "let go when the guard ends"
    );
    drop(child);
    assert!(wait_until(Duration::from_secs(5), || !alive(hog)));
    let _ = std::fs::remove_file(&env_file);
}

/// `memtrace run` typed at an interactive shell whose run's guard holds the pipeline: the
/// message is on the shell's terminal (the run's own, no login session) and names
/// `memtrace guard --run PID`, which shows the hold and kills the pipeline by hand; the kill is
/// told too and the run ends with its pipeline.
#[test]
fn a_runs_guard_tells_its_terminal_and_answers_guard_run() {
    require_root();
    let id = std::process::id();
    let config = tmp().join(format!("run-notify-{id}.toml"));
    std::fs::write(
        &config,
        "[thresholds]\nresume_used_percent = 0.5\nwarn_used_percent = 1\nreclaim_used_percent = 1\n\
         suspend_used_percent = 2\nkill_used_percent = 99\n[actions]\ndrop_caches = false\n\
         [notify]\nterminals = false\n",
    )
    .expect("config");
    let hog_script = PaneHog::write("run-notify", 96);
    let trace = tmp().join(format!("run-notify-{id}.mtrace"));
    let mut group = test_cgroup("run-notify", 512 * MIB);
    let (tmux, _server, _shell) = Tmux::start_shell_in(&mut group, "rn", 220, 50);
    tmux.send(
        &format!(
            "{} run --quiet -o {} --config {} -- {}",
            memtrace_bin().display(),
            trace.display(),
            config.display(),
            hog_script.command_line()
        ),
        true,
    );
    tmux.send("Enter", false);
    let hog = hog_script.pid();
    group.track(hog);
    let run = memtrace::host::procfs::read(Path::new(&format!("/proc/{hog}/stat")))
        .ok()
        .and_then(|text| memtrace::host::procfs::parse_pid_stat(&text))
        .expect("the run's pid (the hog's parent)")
        .ppid;
    group.track(run);
    assert!(
        wait_until(Duration::from_secs(30), || held(hog)),
        "the run's guard held its pipeline: {:?}",
        state(hog)
    );
    let screen = || tmux.run(&["capture-pane", "-p", "-J", "-t", "rn"]);
    let told = wait_until(Duration::from_secs(3), || {
        screen().contains(&format!(
            "memtrace run {run}'s guard: HELD {hog} (python3, 1 process,"
        ))
    });
    let shown = screen();
    eprintln!("the pane after the hold:\n{shown}");
    assert!(told, "the message reached the run's terminal:\n{shown}");
    assert!(
        shown.contains(&format!(
            "resume it: sudo memtrace guard --run {run} resume {hog}"
        )),
        "{shown}"
    );
    let ask = |words: &[&str]| {
        let out = output_within(
            memtrace()
                .args(["guard", "--run", &run.to_string()])
                .args(words),
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "guard --run {run} {words:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = ask(&["status"]);
    assert!(
        status.contains(&format!("held {hog} (python3)")) && status.contains("1 tree(s) held"),
        "{status}"
    );
    ask(&["kill", &hog.to_string()]);
    assert!(
        wait_until(Duration::from_secs(10), || !alive(hog)),
        "killed by hand"
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let shown = screen();
            shown.contains(&format!(
                "memtrace run {run}'s guard: KILLED {hog} (python3"
            )) && shown.contains("[memtrace] pipeline was killed by signal ")
        }),
        "the kill was told and the run ended:\n{}",
        screen()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !alive(run)),
        "the run ended with its pipeline"
    );
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&trace);
}
