//! `cargo xtask bench top`: what the interactive `memtrace top` costs. N idle processes (`sleep`
//! children in a limited test cgroup) are added to the host's; `memtrace top --interval 1` runs
//! for S seconds as the plain table to /dev/null (sampling and printing), as `--json` to
//! /dev/null (what `bench overhead` times) and as the interactive view in a 200×50 tmux pane;
//! its CPU time (utime + stime from /proc) is read over the S seconds after a warm-up, and in the
//! pane what it writes to the terminal, in bytes per refresh: ratatui sends only the cells that
//! changed. With `$MEMTRACE_BASE_BIN` (another build, e.g. main's) both binaries are measured in
//! R interleaved rounds (the order alternates each round), with the same processes.
//!
//! Usage: `bench_top [PROCESSES] [SECONDS] [ROUNDS]` (default 500 30 1). Needs root, tmux and
//! `$MEMTRACE_BIN` (the xtask sets both). Prints its table; no assertions.
mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use memtrace_testkit::proc::cpu_seconds;
use support::{KillOnDrop, MIB, memtrace_bin, spawn, test_cgroup, tmux::Tmux};

/// Let the view start (eBPF programs loaded, first samples taken) before measuring.
const WARM_UP: Duration = Duration::from_secs(5);

/// How `top` is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Plain,
    Json,
    View,
}

impl Variant {
    const ALL: [Self; 3] = [Self::Plain, Self::Json, Self::View];

    fn label(self) -> &'static str {
        match self {
            Self::Plain => "plain table to /dev/null",
            Self::Json => "--json to /dev/null",
            Self::View => "interactive view, tmux 200x50",
        }
    }
}

/// CPU of `pid` over `seconds`, percent of one core.
fn cpu_percent(pid: u32, seconds: u64) -> f64 {
    let before = cpu_seconds(pid).expect("cpu before");
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let used = cpu_seconds(pid).expect("cpu after") - before;
    used * 100.0 / start.elapsed().as_secs_f64()
}

/// One measurement of `binary` as `variant`: CPU % and, for the view, bytes per refresh.
fn measure(binary: &Path, variant: Variant, seconds: u64) -> (f64, Option<f64>) {
    match variant {
        Variant::Plain | Variant::Json => {
            let flag = if variant == Variant::Plain {
                "--plain"
            } else {
                "--json"
            };
            let mut top = spawn(
                Command::new(binary)
                    .args(["top", flag, "--interval", "1"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            std::thread::sleep(WARM_UP);
            let cpu = cpu_percent(top.pid(), seconds);
            top.kill();
            (cpu, None)
        }
        Variant::View => {
            let tmux = Tmux::start(
                "bench-top",
                200,
                50,
                &format!("{} top --interval 1 2>/dev/null", binary.display()),
            );
            tmux.wait_for("the table", Duration::from_secs(60), |s| {
                s.contains("COMMAND")
            });
            std::thread::sleep(WARM_UP);
            let pid =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", tmux.pane_pid()))
                    .ok()
                    .and_then(|c| c.split_whitespace().next()?.parse::<u32>().ok())
                    .unwrap_or_else(|| tmux.pane_pid());
            let dir = tempfile::tempdir().expect("tempdir");
            let written = dir.path().join("pane-output");
            tmux.record_output(&written);
            let cpu = cpu_percent(pid, seconds);
            let bytes = std::fs::metadata(&written).map_or(0, |m| m.len());
            (cpu, Some(bytes as f64 / seconds as f64))
        }
    }
}

/// Median and (min, max) of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    };
    (median, sorted[0], sorted[sorted.len() - 1])
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let processes = args.first().copied().unwrap_or(500) as usize;
    let seconds = args.get(1).copied().unwrap_or(30);
    let rounds = args.get(2).copied().unwrap_or(1).max(1) as usize;
    support::require_root();
    let mut binaries: Vec<(&str, PathBuf)> = vec![("this build", memtrace_bin().to_owned())];
    if let Some(base) = std::env::var_os("MEMTRACE_BASE_BIN") {
        binaries.push(("base", PathBuf::from(base)));
    }

    let cgroup = test_cgroup("bench-top", 1024 * MIB);
    let _sleepers: Vec<KillOnDrop> = (0..processes)
        .map(|_| spawn(cgroup.command("sleep", &["3600"]).stdout(Stdio::null())))
        .collect();
    let total = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();

    // cpu[binary][variant]: one value per round.
    let mut cpu = vec![vec![Vec::new(); Variant::ALL.len()]; binaries.len()];
    let mut bytes = vec![Vec::new(); binaries.len()];
    for round in 0..rounds {
        for turn in 0..binaries.len() {
            // The binaries' order alternates, so a drift of the machine hits both alike.
            let b = (turn + round) % binaries.len();
            let (name, binary) = &binaries[b];
            for (v, &variant) in Variant::ALL.iter().enumerate() {
                let (percent, written) = measure(binary, variant, seconds);
                // Let the stopped top detach and exit before the next one starts.
                std::thread::sleep(Duration::from_secs(1));
                eprintln!(
                    "bench top: round {}, {name}, {}: {percent:.2} %",
                    round + 1,
                    variant.label()
                );
                cpu[b][v].push(percent);
                bytes[b].extend(written);
            }
        }
    }

    println!(
        "memtrace top --interval 1, {processes} idle processes added ({total} on the host), \
         {seconds} s each after a {WARM_UP:?} warm-up, {rounds} round(s) (median, min–max)"
    );
    println!(
        "{:<12} {:<32} {:>14} {:>16}",
        "binary", "variant", "CPU (% core)", "min–max"
    );
    for (b, (name, _)) in binaries.iter().enumerate() {
        for (v, variant) in Variant::ALL.iter().enumerate() {
            let (median, low, high) = spread(&cpu[b][v]);
            println!(
                "{name:<12} {:<32} {median:>14.2} {:>16}",
                variant.label(),
                format!("{low:.2}–{high:.2}")
            );
        }
    }
    for (b, (name, _)) in binaries.iter().enumerate() {
        let (median, _, _) = spread(&bytes[b]);
        println!(
            "{name}: interactive view: {median:.0} bytes written to the terminal per refresh \
             (a full 200x50 screen is ≥ 10000)"
        );
    }
    let (view, _, _) = spread(&cpu[0][2]);
    println!(
        "target: interactive view ≤ 1 % of a core (this build): {}",
        if view <= 1.0 { "met" } else { "NOT met" }
    );
}
