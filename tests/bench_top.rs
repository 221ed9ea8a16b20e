//! `cargo xtask bench top`: what the interactive `memtrace top` costs. N idle processes (`sleep`
//! children in a limited test cgroup) are added to the host's; `memtrace top --interval 1` runs
//! for S seconds as the plain table to /dev/null (the baseline: sampling and printing) and as the
//! interactive view in a 200×50 tmux pane; its CPU time (utime + stime from /proc) is read over
//! the S seconds after a warm-up, and in the pane what it writes to the terminal, in bytes per
//! refresh: ratatui sends only the cells that changed.
//!
//! Usage: `bench_top [PROCESSES] [SECONDS]` (default 500 30). Needs root, tmux and
//! `$MEMTRACE_BIN` (the xtask sets both). Prints its table; no assertions.
mod support;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use memtrace_testkit::proc::cpu_seconds;
use support::{KillOnDrop, MIB, memtrace, memtrace_bin, spawn, test_cgroup, tmux::Tmux};

/// Let the view start (eBPF programs loaded, first samples taken) before measuring.
const WARM_UP: Duration = Duration::from_secs(5);

/// CPU of `pid` over `seconds`, percent of one core.
fn cpu_percent(pid: u32, seconds: u64) -> f64 {
    let before = cpu_seconds(pid).expect("cpu before");
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let used = cpu_seconds(pid).expect("cpu after") - before;
    used * 100.0 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let processes = args.first().copied().unwrap_or(500) as usize;
    let seconds = args.get(1).copied().unwrap_or(30);
    support::require_root();

    let cgroup = test_cgroup("bench-top", 1024 * MIB);
    let _sleepers: Vec<KillOnDrop> = (0..processes)
        .map(|_| spawn(cgroup.command("sleep", &["3600"]).stdout(Stdio::null())))
        .collect();
    let total = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();

    let plain = {
        let mut top = spawn(
            memtrace()
                .args(["top", "--plain", "--interval", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        std::thread::sleep(WARM_UP);
        let cpu = cpu_percent(top.pid(), seconds);
        top.kill();
        cpu
    };

    let (view, bytes_per_refresh) = {
        let tmux = Tmux::start(
            "bench-top",
            200,
            50,
            &format!("{} top --interval 1 2>/dev/null", memtrace_bin().display()),
        );
        tmux.wait_for("the table", Duration::from_secs(60), |s| {
            s.contains("COMMAND")
        });
        std::thread::sleep(WARM_UP);
        let pid = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", tmux.pane_pid()))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or_else(|| tmux.pane_pid());
        let dir = tempfile::tempdir().expect("tempdir");
        let written = dir.path().join("pane-output");
        tmux.record_output(&written);
        let cpu = cpu_percent(pid, seconds);
        let bytes = std::fs::metadata(&written).map_or(0, |m| m.len());
        (cpu, bytes as f64 / seconds as f64)
    };

    println!(
        "memtrace top --interval 1, {processes} idle processes added ({total} on the host), \
         {seconds} s each after a {WARM_UP:?} warm-up"
    );
    println!("{:<44} {:>14}", "variant", "CPU (% core)");
    println!(
        "{:<44} {:>14.2}",
        "plain table to /dev/null (baseline)", plain
    );
    println!("{:<44} {:>14.2}", "interactive view, tmux 200x50", view);
    println!(
        "interactive view: {bytes_per_refresh:.0} bytes written to the terminal per refresh \
         (a full 200x50 screen is ≥ 10000)"
    );
    println!(
        "target: ≤ 1 % of a core: {}",
        if view <= 1.0 { "met" } else { "NOT met" }
    );
}
