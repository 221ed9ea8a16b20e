//! `cargo xtask bench reaction`: how fast `memtrace guard` stops a runaway hog. A Python hog
//! grows at 100 MiB/s, 1 GiB/s or unthrottled inside a 512 MiB memory cgroup that the guard
//! watches (`--cgroup`, default thresholds, no cache dropping); an independent 10 ms sampler in
//! this process records when the cgroup's usage crosses the guard's warn threshold (the first
//! level at which it may act) and when the hog is seen held (frozen or stopped). Each trial runs
//! with the guard's default source (the rare-event programs, /proc read near pressure) and with
//! `--per-event` (the kernel counts every change), in turn in the same invocation. Also measured:
//! the guard's RSS and CPU during the trials, and its idle cost (CPU, steady and peak RSS)
//! watching the whole machine in dry-run mode.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use memtrace_host::units::to_mib;
use memtrace_testkit::{cgroup::TestCgroup, child::KillOnDrop, proc};
use rustix::process::Signal;

use crate::{
    bench::{
        ssh_guest::HOG,
        stats::{median, quantile},
    },
    build, root, tools,
};

/// Options of `bench reaction`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Trials per growth rate.
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Seconds of idle measurement (guard in dry-run mode on the whole machine).
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
}

const LIMIT: u64 = 512 << 20;
/// The guard's per-process sources compared in the same invocation: its default (the
/// rare-event programs, /proc near pressure) and `--per-event` counting.
const SOURCES: [(&str, &[&str]); 2] = [
    ("rare events (default)", &[]),
    ("per event", &["--per-event"]),
];
/// The default warn threshold of the guard (percent).
const WARN_PERCENT: f64 = 80.0;

/// One trial's outcome.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Stopped this many ms after crossing warn, at this usage percent.
    Stopped { after_ms: f64, at_percent: f64 },
    /// The kernel OOM-killed the hog first.
    OomKilled,
    /// Nothing happened within the time limit.
    TimedOut,
}

/// Starts the guard on `cgroup` and waits until it says it is guarding.
fn start_guard(
    binary: &Path,
    cgroup: &Path,
    config: &Path,
    state: &Path,
    extra: &[&str],
) -> anyhow::Result<KillOnDrop> {
    let mut cmd = Command::new(binary);
    cmd.arg("guard")
        .args(extra)
        .arg("--config")
        .arg(config)
        .arg("--state-file")
        .arg(state);
    if !cgroup.as_os_str().is_empty() {
        cmd.arg("--cgroup").arg(cgroup);
    }
    let mut guard = KillOnDrop::spawn(cmd.stderr(Stdio::piped()), "memtrace guard")?;
    let stderr = guard.child_mut().stderr.take().context("guard stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("guarding ") || line.contains("memtrace: error") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the guard did not start within 30 s")?;
    if !line.contains("guarding ") {
        bail!("the guard failed: {line}");
    }
    Ok(guard)
}

fn trial(
    binary: &Path,
    config: &Path,
    rate_mib: f64,
    index: usize,
    extra: &[&str],
) -> anyhow::Result<(Outcome, f64, u64)> {
    let mut group = TestCgroup::create(&format!("bench-reaction-{index}"), LIMIT)?;
    let state = tools::workspace_root().join("target/bench-reaction-state.json");
    let mut guard = start_guard(binary, &group.path, config, &state, extra)?;
    let cpu_before = cpu_precise(guard.pid())?;
    let mut hog = KillOnDrop::spawn(
        &mut group.command("python3", &["-c", HOG, &rate_mib.to_string()]),
        "hog",
    )?;
    group.track(hog.pid());
    let start = Instant::now();
    let mut crossed: Option<Instant> = None;
    let outcome = loop {
        let now = Instant::now();
        let percent = group.used_percent();
        if crossed.is_none() && percent >= WARN_PERCENT {
            crossed = Some(now);
        }
        // Held: frozen (the guard's default: its own or a v1 freezer cgroup) or stopped.
        if proc::held(hog.pid()) {
            let after_ms = crossed.map_or(0.0, |c| now.duration_since(c).as_secs_f64() * 1e3);
            break Outcome::Stopped {
                after_ms,
                at_percent: percent,
            };
        }
        if matches!(proc::state(hog.pid()), None | Some('Z')) || hog.exited().is_some() {
            break Outcome::OomKilled;
        }
        if start.elapsed() > Duration::from_secs(30) {
            break Outcome::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(10).saturating_sub(now.elapsed()));
    };
    let cpu = cpu_precise(guard.pid())? - cpu_before;
    let hwm = proc::memory(guard.pid())?.hwm;
    // A frozen hog dies only once thawed: the guard resumes what it holds as it stops.
    hog.signal(Signal::KILL)?;
    guard.stop(Signal::TERM, Duration::from_secs(10))?;
    let _ = hog.wait();
    Ok((outcome, cpu, hwm))
}

/// Runs the benchmark and prints its tables.
pub fn run(options: &Options) -> anyhow::Result<()> {
    root::require("cargo xtask bench reaction")?;
    let binary = build::run(&build::Options { release: true })?;
    let config = tools::workspace_root().join("target/bench-reaction.toml");
    // Defaults, except: no machine-wide cache dropping from inside a benchmark.
    std::fs::write(&config, "[actions]\ndrop_caches = false\n")
        .context("writing the guard config")?;
    println!(
        "bench reaction: hog in a {} MiB cgroup; onset = usage crosses warn ({WARN_PERCENT} %), action = hog held (frozen or stopped); independent 10 ms sampler",
        LIMIT >> 20
    );
    println!(
        "{:<14} {:<20} {:<21} {:>6} {:>10} {:>9} {:>9} {:>13} {:>9}",
        "growth",
        "wake-up",
        "guard source",
        "trials",
        "median ms",
        "p99 ms",
        "max ms",
        "stopped at %",
        "OOM/none"
    );
    let mut hwm_max = [0u64; SOURCES.len()];
    let mut cpu_per_trial: [Vec<f64>; SOURCES.len()] = Default::default();
    let modes: [(&str, &[&str]); 2] = [
        ("v1 usage events", &[]),
        ("polling (v2/machine)", &["--no-usage-events"]),
    ];
    for (label, rate) in [
        ("100 MiB/s", 100.0),
        ("1 GiB/s", 1024.0),
        ("unthrottled", 0.0),
    ] {
        for (mode, mode_flags) in modes {
            // The sources alternate trial by trial, so a change in the machine's load hits both.
            let mut reactions: [Vec<f64>; SOURCES.len()] = Default::default();
            let mut at: [Vec<f64>; SOURCES.len()] = Default::default();
            let mut failed = [0usize; SOURCES.len()];
            for i in 0..options.trials {
                for (index, (_, source_flags)) in SOURCES.iter().enumerate() {
                    let extra: Vec<&str> =
                        mode_flags.iter().chain(*source_flags).copied().collect();
                    let (outcome, cpu, hwm) = trial(&binary, &config, rate, i, &extra)?;
                    hwm_max[index] = hwm_max[index].max(hwm);
                    cpu_per_trial[index].push(cpu);
                    match outcome {
                        Outcome::Stopped {
                            after_ms,
                            at_percent,
                        } => {
                            reactions[index].push(after_ms);
                            at[index].push(at_percent);
                        }
                        Outcome::OomKilled | Outcome::TimedOut => failed[index] += 1,
                    }
                }
            }
            let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
            for (index, (source, _)) in SOURCES.iter().enumerate() {
                let reactions = &reactions[index];
                println!(
                    "{:<14} {:<20} {:<21} {:>6} {:>10} {:>9} {:>9} {:>13} {:>9}",
                    label,
                    mode,
                    source,
                    options.trials,
                    fmt(median(reactions)),
                    fmt(quantile(reactions, 0.99)),
                    fmt(reactions.iter().copied().reduce(f64::max)),
                    fmt(median(&at[index])),
                    failed[index]
                );
            }
        }
    }
    println!("(0.0 ms: the hog was already stopped when the 10 ms sampler first saw warn crossed)");
    for (index, (source, _)) in SOURCES.iter().enumerate() {
        println!(
            "guard ({source}) during trials: peak RSS {:.1} MiB, CPU {:.1} ms per trial (median)",
            to_mib(hwm_max[index]),
            median(&cpu_per_trial[index]).unwrap_or(0.0) * 1e3
        );
    }
    for (source, flags) in SOURCES {
        idle(&binary, options.idle_seconds, source, flags)?;
    }
    Ok(())
}

/// CPU time of `pid` in seconds with nanosecond resolution (`/proc/PID/schedstat`; the
/// clock-tick counters of `stat` are too coarse for an idle process).
fn cpu_precise(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/schedstat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("parsing {path}"))?;
    Ok(ns as f64 / 1e9)
}

/// The guard watching the whole machine, dry run (it sends nothing), with no pressure.
fn idle(binary: &Path, seconds: u64, source: &str, flags: &[&str]) -> anyhow::Result<()> {
    let state = tools::workspace_root().join("target/bench-reaction-idle-state.json");
    let config = tools::workspace_root().join("target/bench-reaction-idle.toml");
    std::fs::write(&config, "").context("writing the idle config")?;
    let extra: Vec<&str> = ["--dry-run"].iter().chain(flags).copied().collect();
    let mut guard = start_guard(binary, &PathBuf::new(), &config, &state, &extra)?;
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_precise(guard.pid())?;
    std::thread::sleep(Duration::from_secs(seconds));
    let used = cpu_precise(guard.pid())? - before;
    let mem = proc::memory(guard.pid())?;
    guard.stop(Signal::TERM, Duration::from_secs(10))?;
    println!(
        "guard ({source}) idle (whole machine, {} processes, {seconds} s): CPU {:.3} % of one core, steady RSS {:.1} MiB, peak RSS {:.1} MiB (VmHWM, eBPF load included)",
        proc::process_count(),
        used / seconds as f64 * 100.0,
        to_mib(mem.rss()),
        to_mib(mem.hwm)
    );
    Ok(())
}
