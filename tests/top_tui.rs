//! The interactive `memtrace top` driven as a person drives it: in a tmux pane of fixed size,
//! keys sent with `send-keys`, the screen read with `capture-pane`. A small pipeline of this
//! test's own (a root process and two children with distinctive names and sizes, in a limited
//! test cgroup) makes the assertions robust against whatever else the machine runs: the `/`
//! filter hides every other row, sorting changes the first row, the tree puts the children
//! under their root with its RSS summed, and `q` restores the terminal with exit status 0. The
//! same view works without eBPF (the /proc source). Run serially, as root, by `cargo xtask test`.
mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use support::{
    KillOnDrop, MIB, memtrace_bin, require_root, test_cgroup, tmux::Tmux, wait_for_line,
};

/// How long the view may take to show something (loading the eBPF programs included).
const START: Duration = Duration::from_secs(60);
/// How long a key may take to show its effect (the view redraws at once; a sample every 0.5 s).
const KEY: Duration = Duration::from_secs(10);

/// The pipeline: `tree.py NAME MIB [KID:MIB …]` renames itself NAME, touches MIB of memory,
/// starts its kids the same way and prints `ready` once they are all up.
const TREE_PY: &str = r#"
import os, subprocess, sys, time
name, mib, kids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
with open('/proc/self/comm', 'w') as f:
    f.write(name)
ballast = bytearray(mib << 20)
ballast[::4096] = b'\x01' * len(range(0, len(ballast), 4096))
children = []
for kid in kids:
    kid_name, kid_mib = kid.split(':')
    child = subprocess.Popen([sys.executable, __file__, kid_name, kid_mib], stdout=subprocess.PIPE)
    child.stdout.readline()
    children.append(child)
print('ready', flush=True)
time.sleep(600)
"#;

/// The pipeline, running in its own limited cgroup, killed on drop.
struct Pipeline {
    _root: KillOnDrop,
    _cgroup: support::TestCgroup,
    _dir: tempfile::TempDir,
}

fn pipeline(name: &str) -> Pipeline {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("tree.py");
    std::fs::write(&script, TREE_PY).expect("script");
    let mut cgroup = test_cgroup(name, 512 * MIB);
    let mut root = support::spawn(
        cgroup
            .command("python3", &[])
            .arg(&script)
            .args(["mtui-root", "10", "mtui-kid-big:60", "mtui-kid-small:30"])
            .stdout(Stdio::piped()),
    );
    wait_for_line(&mut root, "ready", Duration::from_secs(30));
    // The kids too are killed (by pid) when the cgroup is dropped.
    let procs = std::fs::read_to_string(cgroup.path.join("cgroup.procs")).expect("cgroup.procs");
    for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
        cgroup.track(pid);
    }
    Pipeline {
        _root: root,
        _cgroup: cgroup,
        _dir: dir,
    }
}

/// The table's rows on `screen`: the lines under the header line (`PID … COMMAND …`) down to the
/// footer, blank ones left out.
fn rows(screen: &str) -> Vec<&str> {
    let lines: Vec<&str> = screen.lines().collect();
    let Some(header) = lines
        .iter()
        .position(|l| l.trim_start().starts_with("PID") && l.contains("COMMAND"))
    else {
        return Vec::new();
    };
    lines
        .iter()
        .skip(header + 1)
        .take_while(|l| !l.contains("q quit"))
        .filter(|l| !l.trim().is_empty())
        .copied()
        .collect()
}

/// The command and RSS columns of a row.
fn command_and_rss(row: &str) -> (String, f64) {
    let fields: Vec<&str> = row.split_whitespace().collect();
    let command = fields.get(1).copied().unwrap_or("").to_owned();
    let rss = fields
        .get(2)
        .and_then(|f| f.parse().ok())
        .unwrap_or(f64::NAN);
    (command, rss)
}

/// `memtrace top` in a 200×50 pane, after which the pane prints `mtui-exit=STATUS`.
fn start_top(name: &str, prefix: &str) -> Tmux {
    let command = format!(
        "{prefix} {} top --interval 0.5; echo mtui-exit=$?; sleep 600",
        memtrace_bin().display()
    );
    let tmux = Tmux::start(name, 200, 50, &command);
    tmux.wait_for("the table", START, |s| rows(s).len() > 3);
    tmux
}

#[test]
fn tui_filter_sort_tree_and_quit_in_tmux() {
    require_root();
    let _pipeline = pipeline("top-tui");
    let tmux = start_top("tui", "");
    let screen = tmux.screen();
    assert!(screen.contains("RAM "), "{screen}");
    assert!(screen.contains("PSI "), "{screen}");
    assert!(screen.contains("Tracer: eBPF"), "{screen}");
    assert!(screen.contains("Guard: "), "{screen}");
    assert!(
        screen.contains("q quit  / filter"),
        "the keys in the footer: {screen}"
    );
    assert!(
        rows(&screen).iter().any(|r| !r.contains("mtui-")),
        "other processes are listed before filtering: {screen}"
    );

    // The filter hides every row but the pipeline's three.
    tmux.send("/", true);
    tmux.send("^mtui-", true);
    tmux.wait_for("the prompt", KEY, |s| s.contains("/^mtui-▏"));
    tmux.send("Enter", false);
    let screen = tmux.wait_for("the filter", KEY, |s| {
        let rows = rows(s);
        rows.len() == 3 && rows.iter().all(|r| r.contains("mtui-"))
    });
    assert!(screen.contains("filter /^mtui-/"), "{screen}");

    // Sorting changes the first row: by RSS the big kid, by pid the root (started first).
    tmux.send("m", true);
    tmux.wait_for("RSS order", KEY, |s| {
        rows(s).first().is_some_and(|r| r.contains("mtui-kid-big")) && s.contains("RSS MiB▼")
    });
    tmux.send("p", true);
    tmux.wait_for("pid order", KEY, |s| {
        rows(s).first().is_some_and(|r| r.contains("mtui-root")) && s.contains("PID▲")
    });
    tmux.send("m", true);
    tmux.send("m", true);
    let screen = tmux.wait_for("RSS order, smallest first", KEY, |s| {
        rows(s).first().is_some_and(|r| r.contains("mtui-root")) && s.contains("RSS MiB▲")
    });
    let flat: Vec<(String, f64)> = rows(&screen).iter().map(|r| command_and_rss(r)).collect();

    // The tree: the kids under the root, whose row sums the three.
    tmux.send("t", true);
    let screen = tmux.wait_for("the tree", KEY, |s| {
        let rows = rows(s);
        rows.len() == 3
            && rows[0].contains(" mtui-root ")
            && rows[1].contains("├─mtui-kid-small")
            && rows[2].contains("└─mtui-kid-big")
    });
    let tree: Vec<(String, f64)> = rows(&screen).iter().map(|r| command_and_rss(r)).collect();
    let own: f64 = flat.iter().map(|(_, rss)| rss).sum();
    assert!(
        (tree[0].1 - own).abs() <= own * 0.05 + 2.0,
        "the root's row sums its tree ({own:.1} MiB in the flat view): {tree:?}\n{screen}"
    );
    assert!(tree[0].1 >= tree[1].1 + tree[2].1 + 10.0, "{tree:?}");
    assert!(screen.contains("tree  │"), "the footer says so: {screen}");

    // A resize is followed.
    tmux.resize(160, 30);
    tmux.wait_for("the footer on the smaller screen", KEY, |s| {
        s.lines().count() <= 30 && s.contains("mtui-root") && s.contains("q quit")
    });

    // q leaves the alternate screen and exits 0.
    tmux.send("q", true);
    let screen = tmux.wait_for("the exit", KEY, |s| s.contains("mtui-exit="));
    assert!(screen.contains("mtui-exit=0"), "{screen}");
    assert!(!screen.contains("q quit"), "the view is gone: {screen}");
}

#[test]
fn tui_ctrl_c_and_sigterm_restore_the_terminal() {
    require_root();
    let tmux = start_top("tui-ctrl-c", "");
    tmux.send("C-c", false);
    let screen = tmux.wait_for("the exit", KEY, |s| s.contains("mtui-exit="));
    assert!(screen.contains("mtui-exit=0"), "{screen}");
    assert!(!screen.contains("q quit"), "{screen}");
    assert_eq!(stty_raw(&tmux), None, "raw mode is off again");
    drop(tmux);

    let tmux = start_top("tui-term", "");
    let top = child_of(tmux.pane_pid()).expect("memtrace top runs in the pane");
    memtrace_testkit::child::signal_pid(top, rustix::process::Signal::TERM);
    let screen = tmux.wait_for("the exit", KEY, |s| s.contains("mtui-exit="));
    assert!(screen.contains("mtui-exit=0"), "{screen}");
    assert!(!screen.contains("q quit"), "{screen}");
}

#[test]
fn tui_without_ebpf_reads_proc() {
    require_root();
    let _pipeline = pipeline("top-tui-noebpf");
    let tmux = start_top(
        "tui-noebpf",
        "setpriv --bounding-set=-sys_admin,-bpf,-perfmon,-sys_resource --inh-caps=-all",
    );
    tmux.wait_for("the /proc source line", KEY, |s| {
        s.contains("Source: /proc (no eBPF)")
    });
    tmux.send("/", true);
    // Anchored: the root's command line names its kids too.
    tmux.send("^mtui-kid", true);
    tmux.send("Enter", false);
    tmux.wait_for("the filter", KEY, |s| {
        let rows = rows(s);
        rows.len() == 2 && rows.iter().all(|r| r.contains("mtui-kid"))
    });
    tmux.send("q", true);
    let screen = tmux.wait_for("the exit", KEY, |s| s.contains("mtui-exit="));
    assert!(screen.contains("mtui-exit=0"), "{screen}");
}

/// The first child of `pid` (from /proc/PID/task/PID/children).
fn child_of(pid: u32) -> Option<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(Path::new(&path))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether the pane's terminal is still in raw mode (`stty -a` says `-icanon` or `-echo`):
/// the offending setting, `None` when the modes are restored.
fn stty_raw(tmux: &Tmux) -> Option<String> {
    let out = Command::new("stty")
        .args(["-a", "-F", &tmux.pane_tty()])
        .stdin(Stdio::null())
        .output()
        .expect("stty");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|s| *s == "-icanon" || *s == "-echo")
        .map(str::to_owned)
}
