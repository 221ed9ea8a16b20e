//! `cargo xtask bench overhead`: what tracing costs the traced.
//!
//! 1. Wall and CPU time: both workloads ([`Kind`]) run with no tracer, under `memtrace top --json
//!    --interval 1` with and without its per-fault hook (the flag that switches it, `--fault-hook`
//!    or `--no-fault-hook`, is read from `memtrace top --help`), and under the equivalent bpftrace
//!    one-liner, interleaved in rounds (the variants' order rotates every round). A tracer is
//!    started once per round and variant, runs the storm then the pipeline, and only counts as
//!    up once it printed its first line (memtrace: its first snapshot, so it is attached and
//!    sampling; bpftrace: "Attaching 1 probe", plus a second to finish attaching). The overhead
//!    is the median over rounds of each round's difference to that round's baseline, which
//!    cancels the machine's slow drifts. It is computed twice: on wall time, and on the workload
//!    process's CPU time, which holds the kernel programs' cost (they run in its context on each
//!    fault) but not the time it spent waiting for a CPU, so it stays meaningful on a busy or
//!    virtualised machine whose wall times jitter by more than the effect; the targets are
//!    judged on CPU time, with the wall-time figure next to it. The tracer's own user-space
//!    cost is measured separately (3.). `kernel.bpf_stats_enabled` is off meanwhile.
//! 2. Kernel program cost: with `kernel.bpf_stats_enabled` on, one more run of each workload
//!    under memtrace and under bpftrace; each program's run time and count are read with
//!    bpftool while the tracer is still up, before and after each workload. An empty bpftrace
//!    probe on the same tracepoint gives the floor: what the statistics' own clock reads add to
//!    every measured run (large on VMs, whose clock reads are slow).
//! 3. `memtrace top`'s own cost: with `--top-procs` idle `sleep` processes started (and killed
//!    by PID afterwards), `memtrace top --json --interval 1 > /dev/null` runs for `--top-secs`
//!    after a warm-up; its utime+stime over that span and its VmRSS/VmHWM come from /proc.
//!
//! Tables go to stdout, progress to stderr.
use std::{
    collections::HashMap,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    bpf_stats::{self, StatsEnabled},
    process::{self, Guarded, Observer, Sleepers},
    stats,
    workload::{Kind, Report},
};
use crate::{build, root, tools};

/// The bpftrace one-liner memtrace's per-fault hook is compared with.
const BPFTRACE_PROGRAM: &str = "tracepoint:exceptions:page_fault_user { @[pid] = count(); }";
/// An empty probe on the same tracepoint: the floor of the kernel's run-time statistics.
const BPFTRACE_EMPTY: &str = "tracepoint:exceptions:page_fault_user { }";
/// How long a tracer may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// bpftrace prints "Attaching" before it attaches: give it this long to finish.
const BPFTRACE_SETTLE: Duration = Duration::from_secs(1);
/// `memtrace top` start-up (BTF, load, seeding from /proc) left out of its steady-state cost.
const TOP_WARMUP: Duration = Duration::from_secs(3);
/// The workloads, in the order of the tables.
const KINDS: [Kind; 2] = [Kind::Storm, Kind::Pipeline];

/// Options of `cargo xtask bench overhead`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Interleaved rounds; each runs every workload once under every variant.
    #[arg(long, default_value_t = 8)]
    pub rounds: usize,
    /// Aimed-for duration of one storm run, seconds (sets its iteration count).
    #[arg(long, default_value_t = 1.5)]
    pub storm_secs: f64,
    /// Aimed-for duration of one pipeline run, seconds (sets its clip count).
    #[arg(long, default_value_t = 4.0)]
    pub pipeline_secs: f64,
    /// How long `memtrace top`'s own cost is measured, seconds.
    #[arg(long, default_value_t = 20)]
    pub top_secs: u64,
    /// Idle processes started for that measurement.
    #[arg(long, default_value_t = 500)]
    pub top_procs: usize,
    /// Benchmark this memtrace binary instead of building one (release) first.
    #[arg(long, value_name = "PATH")]
    pub memtrace: Option<PathBuf>,
}

/// What runs alongside the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Variant {
    None,
    /// memtrace with its per-fault hook (`page_fault_user`) attached.
    MemtraceHook,
    /// memtrace without it.
    MemtraceNoHook,
    Bpftrace,
    /// An empty bpftrace probe (kernel program costs only).
    BpftraceEmpty,
}

const VARIANTS: [Variant; 4] = [
    Variant::None,
    Variant::MemtraceNoHook,
    Variant::MemtraceHook,
    Variant::Bpftrace,
];

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Self::None => "none (baseline)",
            Self::MemtraceHook => "memtrace, fault hook",
            Self::MemtraceNoHook => "memtrace, no fault hook",
            Self::Bpftrace => "bpftrace one-liner",
            Self::BpftraceEmpty => "empty probe (floor)",
        }
    }

    /// The signal that stops it cleanly.
    fn stop_signal(self) -> libc::c_int {
        match self {
            Self::Bpftrace | Self::BpftraceEmpty => libc::SIGINT,
            _ => libc::SIGTERM,
        }
    }

    /// The kernel program type its programs have (to tell them from anything else loaded
    /// meanwhile).
    fn program_type(self) -> &'static str {
        match self {
            Self::Bpftrace | Self::BpftraceEmpty => "tracepoint",
            _ => "tracing",
        }
    }
}

/// The binaries the benchmark runs.
#[derive(Debug)]
struct Binaries {
    memtrace: PathBuf,
    /// How this memtrace switches its per-fault hook.
    hook: HookFlags,
    /// A release build of xtask, which runs the workloads.
    workload: PathBuf,
}

impl Binaries {
    /// `memtrace top --json --interval 1`, with or without the per-fault hook.
    fn memtrace_top(&self, fault_hook: bool) -> Command {
        let mut cmd = Command::new(&self.memtrace);
        cmd.args(["top", "--json", "--interval", "1"]);
        cmd.args(self.hook.args(fault_hook));
        cmd
    }
}

/// memtrace's flag for its per-fault hook: opt-in (`--fault-hook`) or opt-out
/// (`--no-fault-hook`), as its `top --help` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HookFlags {
    OptIn,
    OptOut,
}

impl HookFlags {
    /// Reads the flag from the text of `memtrace top --help`.
    fn from_help(help: &str) -> Option<Self> {
        let words: Vec<&str> = help
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '`' | '(' | ')' | '[' | ']'))
            .collect();
        if words.contains(&"--no-fault-hook") {
            Some(Self::OptOut)
        } else if words.contains(&"--fault-hook") {
            Some(Self::OptIn)
        } else {
            None
        }
    }

    fn args(self, fault_hook: bool) -> &'static [&'static str] {
        match (self, fault_hook) {
            (Self::OptIn, true) => &["--fault-hook"],
            (Self::OptOut, false) => &["--no-fault-hook"],
            _ => &[],
        }
    }

    /// What `memtrace top` does without either flag.
    fn describe(self) -> &'static str {
        match self {
            Self::OptIn => "memtrace top attaches the fault hook with --fault-hook (default: off)",
            Self::OptOut => {
                "memtrace top detaches the fault hook with --no-fault-hook (default: on)"
            }
        }
    }
}

/// Sizes making each workload last about as long as asked.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    storm: u32,
    pipeline: u32,
}

impl Sizes {
    fn of(self, kind: Kind) -> u32 {
        match kind {
            Kind::Storm => self.storm,
            Kind::Pipeline => self.pipeline,
        }
    }
}

/// Kernel program cost measured over one workload run.
#[derive(Debug)]
struct ProgramCosts {
    variant: Variant,
    kind: Kind,
    report: Report,
    /// (program, run time ns, runs).
    programs: Vec<(String, u64, u64)>,
}

/// `memtrace top`'s own cost.
#[derive(Debug)]
struct TopCost {
    variant: Variant,
    processes: usize,
    cpu_percent: f64,
    startup_cpu_s: f64,
    memory: process::Memory,
}

/// Runs the benchmark.
pub fn run(options: &Options) -> anyhow::Result<()> {
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    root::require("cargo xtask bench")?;
    root::mount_tracefs()?;
    tools::ensure_apt(&["bpftrace", "bpftool"])?;
    let binaries = build_binaries(options.memtrace.as_deref())?;
    let machine = machine_line();
    eprintln!("xtask: bench: {machine}");
    let started = Instant::now();

    let sizes = calibrate(&binaries, options)?;
    let samples = timed_rounds(&binaries, sizes, options.rounds)?;
    let costs = {
        let _stats = StatsEnabled::enable()?;
        let mut costs = Vec::new();
        for variant in [
            Variant::MemtraceHook,
            Variant::Bpftrace,
            Variant::BpftraceEmpty,
        ] {
            costs.extend(program_costs(&binaries, variant, sizes)?);
        }
        costs
    };
    let top = top_costs(&binaries, options)?;

    println!("{machine}, load average at the end {}", load_average());
    println!("{}", binaries.hook.describe());
    println!(
        "storm: 64 MiB mapped, touched and unmapped {} times per run; pipeline: {} clips of 12 \
         1080p frames per run; {} interleaved rounds",
        sizes.storm, sizes.pipeline, options.rounds
    );
    println!();
    print!("{}", overhead_table(&samples, Metric::Wall));
    println!();
    print!("{}", overhead_table(&samples, Metric::Cpu));
    println!(
        "(median s and ±IQR over the rounds; added ns/fault and overhead %: median over rounds \
         of the difference to that round's baseline; faults = minor faults of the workload)"
    );
    println!();
    print!("{}", program_table(&costs));
    println!();
    print!("{}", top_table(&top, options));
    println!();
    print!("{}", targets(&samples, &costs, &top));
    eprintln!(
        "xtask: bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The directory cargo builds into: `CARGO_TARGET_DIR` when set (relative to the workspace,
/// where [`tools::cargo`] runs), else `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => tools::workspace_root().join(dir),
        None => tools::workspace_root().join("target"),
    }
}

/// Builds memtrace (unless `prebuilt` is given) and xtask in release.
fn build_binaries(prebuilt: Option<&Path>) -> anyhow::Result<Binaries> {
    let memtrace = match prebuilt {
        Some(path) => {
            std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?
        }
        None => {
            eprintln!("xtask: bench: building memtrace (release)");
            let reported = build::run(&build::Options { release: true })?;
            // build::run names the binary under target/, but cargo honours CARGO_TARGET_DIR.
            if std::env::var_os("CARGO_TARGET_DIR").is_some() {
                target_dir().join("release/memtrace")
            } else {
                reported
            }
        }
    };
    eprintln!("xtask: bench: building the workloads (release xtask)");
    tools::run_checked(
        tools::cargo().args(["build", "--release", "--package", "xtask", "--bin", "xtask"]),
        "cargo build --release --package xtask",
    )?;
    let workload = target_dir().join("release/xtask");
    for path in [&memtrace, &workload] {
        if !path.is_file() {
            bail!("the build did not produce {}", path.display());
        }
    }
    let help = Command::new(&memtrace)
        .args(["top", "--help"])
        .output()
        .with_context(|| format!("running {} top --help", memtrace.display()))?;
    let hook = HookFlags::from_help(&String::from_utf8_lossy(&help.stdout)).with_context(|| {
        format!(
            "{} top --help lists neither --fault-hook nor --no-fault-hook",
            memtrace.display()
        )
    })?;
    Ok(Binaries {
        memtrace,
        hook,
        workload,
    })
}

/// CPUs, kernel, THP mode and bpftrace's version, on one line.
fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned())
    };
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    let bpftrace = Command::new("bpftrace")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "bpftrace ?".to_owned());
    format!(
        "machine: {cpus} CPUs ({model}), kernel {}, THP {}, {bpftrace}",
        read("/proc/sys/kernel/osrelease"),
        read("/sys/kernel/mm/transparent_hugepage/enabled"),
    )
}

/// /proc/loadavg's three averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            s.split_ascii_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_owned())
}

/// Runs one workload in a child process and returns its report.
fn run_workload(binary: &Path, kind: Kind, size: u32) -> anyhow::Result<Report> {
    let size = size.to_string();
    let mut child = Guarded::spawn(
        Command::new(binary)
            .args(["bench", "workload", kind.name(), "--size", &size])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
        kind.name(),
    )?;
    let mut out = String::new();
    if let Some(mut stdout) = child.child_mut().stdout.take() {
        stdout
            .read_to_string(&mut out)
            .context("reading the workload's report")?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("workload {} failed ({status})", kind.name());
    }
    Report::parse(out.trim())
        .with_context(|| format!("unexpected workload output {:?}", out.trim()))
}

/// Starts the tracer of `variant` and waits until it is up; `None` for the baseline.
fn start_tracer(binaries: &Binaries, variant: Variant) -> anyhow::Result<Option<Observer>> {
    let mut observer = match variant {
        Variant::None => return Ok(None),
        Variant::MemtraceHook | Variant::MemtraceNoHook => {
            let mut cmd = binaries.memtrace_top(variant == Variant::MemtraceHook);
            Observer::spawn(&mut cmd, "memtrace top", |l| l.starts_with('['), false)?
        }
        Variant::Bpftrace | Variant::BpftraceEmpty => {
            let program = if variant == Variant::Bpftrace {
                BPFTRACE_PROGRAM
            } else {
                BPFTRACE_EMPTY
            };
            Observer::spawn(
                Command::new("bpftrace").args(["-e", program]),
                "bpftrace",
                |l| l.contains("Attaching"),
                false,
            )?
        }
    };
    observer.wait_ready(READY_TIMEOUT)?;
    if matches!(variant, Variant::Bpftrace | Variant::BpftraceEmpty) {
        std::thread::sleep(BPFTRACE_SETTLE);
    }
    Ok(Some(observer))
}

/// Stops a tracer, making sure it survived the run.
fn stop_tracer(observer: Option<Observer>, variant: Variant) -> anyhow::Result<()> {
    if let Some(mut observer) = observer {
        observer.check_alive()?;
        observer.stop(variant.stop_signal())?;
    }
    Ok(())
}

/// One tracer session: the tracer of `variant` up, then each workload once.
fn traced_session(
    binaries: &Binaries,
    variant: Variant,
    sizes: Sizes,
) -> anyhow::Result<Vec<(Kind, Report)>> {
    let observer = start_tracer(binaries, variant)?;
    let mut reports = Vec::new();
    for kind in KINDS {
        reports.push((
            kind,
            run_workload(&binaries.workload, kind, sizes.of(kind))?,
        ));
    }
    stop_tracer(observer, variant)?;
    Ok(reports)
}

/// Picks workload sizes from one short run of each (which also warms caches up).
fn calibrate(binaries: &Binaries, options: &Options) -> anyhow::Result<Sizes> {
    let scale = |report: Report, size: u32, target: f64| -> u32 {
        let per_unit = report.secs() / f64::from(size.max(1));
        let units = if per_unit > 0.0 {
            (target / per_unit).round()
        } else {
            1.0
        };
        units.clamp(1.0, 10_000.0) as u32
    };
    let storm_probe = 8;
    let storm = scale(
        run_workload(&binaries.workload, Kind::Storm, storm_probe)?,
        storm_probe,
        options.storm_secs,
    );
    let pipeline_probe = 2;
    let pipeline = scale(
        run_workload(&binaries.workload, Kind::Pipeline, pipeline_probe)?,
        pipeline_probe,
        options.pipeline_secs,
    );
    eprintln!("xtask: bench: storm {storm} iterations, pipeline {pipeline} clips per run");
    Ok(Sizes { storm, pipeline })
}

/// Reports per (workload, variant), in round order.
type Samples = HashMap<(Kind, Variant), Vec<Report>>;

/// The interleaved rounds.
fn timed_rounds(binaries: &Binaries, sizes: Sizes, rounds: usize) -> anyhow::Result<Samples> {
    let mut samples = Samples::new();
    for round in 0..rounds {
        let mut order = VARIANTS;
        order.rotate_left(round % VARIANTS.len());
        for variant in order {
            for (kind, report) in traced_session(binaries, variant, sizes)? {
                eprintln!(
                    "xtask: bench: round {}/{rounds}: {} under {}: {:.3} s, {:.3} CPU s, {} faults",
                    round + 1,
                    kind.name(),
                    variant.label(),
                    report.secs(),
                    report.cpu_secs(),
                    report.faults
                );
                samples.entry((kind, variant)).or_default().push(report);
            }
        }
    }
    Ok(samples)
}

/// Each workload once under `variant` with the kernel's program statistics on (the floor
/// variant: the storm only).
fn program_costs(
    binaries: &Binaries,
    variant: Variant,
    sizes: Sizes,
) -> anyhow::Result<Vec<ProgramCosts>> {
    eprintln!(
        "xtask: bench: kernel program cost under {}",
        variant.label()
    );
    let before = bpf_stats::programs()?;
    let observer = start_tracer(binaries, variant)?.context("the baseline loads no program")?;
    let loaded = bpf_stats::programs()?;
    let ours: Vec<bpf_stats::Program> = bpf_stats::loaded_since(&before, &loaded, observer.pid())
        .into_iter()
        .filter(|p| p.kind == variant.program_type())
        .collect();
    if ours.is_empty() {
        bail!("found no program loaded by {}", variant.label());
    }
    let kinds: &[Kind] = if variant == Variant::BpftraceEmpty {
        &[Kind::Storm]
    } else {
        &KINDS
    };
    let mut out = Vec::new();
    for &kind in kinds {
        let start = bpf_stats::programs()?;
        let report = run_workload(&binaries.workload, kind, sizes.of(kind))?;
        let end = bpf_stats::programs()?;
        out.push(ProgramCosts {
            variant,
            kind,
            report,
            programs: bpf_stats::delta(&ours, &start, &end),
        });
    }
    stop_tracer(Some(observer), variant)?;
    Ok(out)
}

/// `memtrace top`'s CPU and memory with many processes to track.
fn top_costs(binaries: &Binaries, options: &Options) -> anyhow::Result<Vec<TopCost>> {
    eprintln!(
        "xtask: bench: starting {} idle processes for memtrace top's own cost",
        options.top_procs
    );
    let mut sleepers = Sleepers::spawn(options.top_procs)?;
    let mut out = Vec::new();
    for variant in [Variant::MemtraceNoHook, Variant::MemtraceHook] {
        eprintln!(
            "xtask: bench: {} top, {} s after {} s of warm-up",
            variant.label(),
            options.top_secs,
            TOP_WARMUP.as_secs()
        );
        let mut cmd = binaries.memtrace_top(variant == Variant::MemtraceHook);
        let mut observer = Observer::spawn(&mut cmd, "memtrace top", |_| false, true)?;
        let pid = observer.pid();
        std::thread::sleep(TOP_WARMUP);
        observer.check_alive()?;
        let cpu_start = process::cpu_seconds(pid)?;
        let wall = Instant::now();
        std::thread::sleep(Duration::from_secs(options.top_secs));
        observer.check_alive()?;
        let cpu_end = process::cpu_seconds(pid)?;
        let elapsed = wall.elapsed().as_secs_f64();
        let memory = process::memory(pid)?;
        let processes = process::process_count();
        observer.stop(libc::SIGTERM)?;
        out.push(TopCost {
            variant,
            processes,
            cpu_percent: (cpu_end - cpu_start) / elapsed * 100.0,
            startup_cpu_s: cpu_start,
            memory,
        });
    }
    let alive = sleepers.alive();
    if alive != options.top_procs {
        bail!(
            "only {alive} of the {} idle processes survived",
            options.top_procs
        );
    }
    Ok(out)
}

/// What is compared between runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    /// Wall time of the workload.
    Wall,
    /// CPU time (user + system) of the workload process: includes the kernel programs that
    /// run in its context, not the time it waited for a CPU.
    Cpu,
}

impl Metric {
    fn of(self, report: &Report) -> f64 {
        match self {
            Self::Wall => report.secs(),
            Self::Cpu => report.cpu_secs(),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Wall => "wall time",
            Self::Cpu => "CPU time (user + system) of the workload process",
        }
    }
}

/// Seconds of each report.
fn secs(reports: &[Report], metric: Metric) -> Vec<f64> {
    reports.iter().map(|r| metric.of(r)).collect()
}

/// Median faults per run.
fn faults(reports: &[Report]) -> u64 {
    let faults: Vec<f64> = reports.iter().map(|r| r.faults as f64).collect();
    stats::median(&faults).map_or(0, |f| f.round() as u64)
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn fmt_signed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:+.decimals$}"))
}

/// Paired overhead of `variant` on `kind`: (added ns per fault, percent).
fn overhead(
    samples: &Samples,
    kind: Kind,
    variant: Variant,
    metric: Metric,
) -> (Option<f64>, Option<f64>) {
    let (Some(base), Some(runs)) = (
        samples.get(&(kind, Variant::None)),
        samples.get(&(kind, variant)),
    ) else {
        return (None, None);
    };
    let (base_s, runs_s) = (secs(base, metric), secs(runs, metric));
    let base_faults = faults(base);
    (
        stats::paired_median(&base_s, &runs_s, |b, v| {
            stats::added_ns_per_event(b, v, base_faults)
        }),
        stats::paired_median(&base_s, &runs_s, stats::overhead_percent),
    )
}

/// The baseline's own spread (IQR in % of its median), to tell an overhead from noise.
fn noise(samples: &Samples, kind: Kind, metric: Metric) -> Option<f64> {
    let base = secs(samples.get(&(kind, Variant::None))?, metric);
    Some(stats::iqr(&base)? / stats::median(&base)? * 100.0)
}

fn overhead_table(samples: &Samples, metric: Metric) -> String {
    let mut out = format!("{}:\n", metric.title());
    out.push_str(&format!(
        "{:<9} {:<25} {:>4} {:>9} {:>8} {:>11} {:>15} {:>11}\n",
        "workload",
        "variant",
        "runs",
        "median s",
        "±IQR s",
        "faults/run",
        "added ns/fault",
        "overhead %"
    ));
    for kind in KINDS {
        for variant in VARIANTS {
            let Some(reports) = samples.get(&(kind, variant)) else {
                continue;
            };
            let s = secs(reports, metric);
            let (added, percent) = if variant == Variant::None {
                (None, None)
            } else {
                overhead(samples, kind, variant, metric)
            };
            out.push_str(&format!(
                "{:<9} {:<25} {:>4} {:>9} {:>8} {:>11} {:>15} {:>11}\n",
                kind.name(),
                variant.label(),
                reports.len(),
                fmt(stats::median(&s), 3),
                fmt(stats::iqr(&s), 3),
                faults(reports),
                fmt_signed(added, 1),
                fmt_signed(percent, 2),
            ));
        }
    }
    out
}

/// The floor of the run-time statistics: ns per event of the empty probe.
fn floor_ns(costs: &[ProgramCosts]) -> Option<f64> {
    let floor = costs.iter().find(|c| c.variant == Variant::BpftraceEmpty)?;
    let (_, time, count) = floor.programs.first()?;
    stats::ns_per_event(*time, *count)
}

fn program_table(costs: &[ProgramCosts]) -> String {
    let floor = floor_ns(costs);
    let mut out = format!(
        "{:<21} {:<9} {:<16} {:>9} {:>9} {:>11} {:>12}\n",
        "variant", "workload", "program", "events", "ns/event", "above floor", "ns/wl fault"
    );
    for cost in costs {
        let mut total_ns = 0;
        for (name, time, count) in &cost.programs {
            total_ns += time;
            if *count == 0 {
                continue;
            }
            let per_event = stats::ns_per_event(*time, *count);
            let above = match (per_event, floor) {
                (Some(ns), Some(floor)) if cost.variant != Variant::BpftraceEmpty => {
                    Some(ns - floor)
                }
                _ => None,
            };
            out.push_str(&format!(
                "{:<21} {:<9} {:<16} {:>9} {:>9} {:>11} {:>12}\n",
                cost.variant.label(),
                cost.kind.name(),
                name,
                count,
                fmt(per_event, 1),
                fmt(above, 1),
                "",
            ));
        }
        if cost.variant != Variant::BpftraceEmpty {
            out.push_str(&format!(
                "{:<21} {:<9} {:<16} {:>9} {:>9} {:>11} {:>12}\n",
                cost.variant.label(),
                cost.kind.name(),
                "(all programs)",
                cost.programs.iter().map(|p| p.2).sum::<u64>(),
                "",
                "",
                fmt(stats::ns_per_event(total_ns, cost.report.faults), 1),
            ));
        }
    }
    out.push_str(
        "(kernel.bpf_stats_enabled: run_time_ns / run_cnt over one run of the workload, every \
         process's events included. Each measured run includes the statistics' own clock reads: \
         the empty probe's ns/event is that floor, \"above floor\" subtracts it. ns/wl fault: all \
         of the tracer's program time per minor fault of the workload)\n",
    );
    out
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn top_table(top: &[TopCost], options: &Options) -> String {
    let mut out = format!(
        "{:<34} {:>9} {:>10} {:>11} {:>8} {:>9} {:>9} {:>9}\n",
        "memtrace top --json --interval 1",
        "processes",
        "CPU % core",
        "start-up s",
        "RSS MiB",
        "anon MiB",
        "file MiB",
        "peak MiB"
    );
    for cost in top {
        let label = match cost.variant {
            Variant::MemtraceHook => "  fault hook",
            _ => "  no fault hook",
        };
        let m = &cost.memory;
        out.push_str(&format!(
            "{:<34} {:>9} {:>10.2} {:>11.2} {:>8.1} {:>9.1} {:>9.1} {:>9.1}\n",
            label,
            cost.processes,
            cost.cpu_percent,
            cost.startup_cpu_s,
            mib(m.rss),
            mib(m.anon),
            mib(m.file),
            mib(m.hwm),
        ));
    }
    out.push_str(&format!(
        "(CPU: utime+stime over {} s after {} s of start-up, whose CPU time is start-up s; {} \
         idle processes of ours among the processes; RSS = VmRSS (anon = RssAnon, file = \
         RssFile), peak = VmHWM, at the end)\n",
        options.top_secs,
        TOP_WARMUP.as_secs(),
        options.top_procs
    ));
    out
}

/// The project's targets against what was measured.
fn targets(samples: &Samples, costs: &[ProgramCosts], top: &[TopCost]) -> String {
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "n/a",
    };
    let mut out = format!(
        "{:<48} {:>9} {:>10}  {:<7} note\n",
        "target", "limit", "measured", "verdict"
    );
    let mut line =
        |what: String, limit: &str, measured: String, met: Option<bool>, note: String| {
            out.push_str(&format!(
                "{what:<48} {limit:>9} {measured:>10}  {:<7} {note}\n",
                verdict(met)
            ));
        };
    for (kind, limit, text) in [
        (Kind::Storm, 2.0, "≤ 2 %"),
        (Kind::Pipeline, 0.1, "< 0.1 %"),
    ] {
        let spread = noise(samples, kind, Metric::Cpu);
        let resolution = if spread.is_some_and(|n| n > limit) {
            " (wider than the target)"
        } else {
            ""
        };
        for variant in [Variant::MemtraceNoHook, Variant::MemtraceHook] {
            let (_, percent) = overhead(samples, kind, variant, Metric::Cpu);
            let (_, wall) = overhead(samples, kind, variant, Metric::Wall);
            line(
                format!("{} overhead (CPU), {}", kind.name(), variant.label()),
                text,
                fmt_signed(percent, 2) + " %",
                percent.map(|p| {
                    if kind == Kind::Storm {
                        p <= limit
                    } else {
                        p < limit
                    }
                }),
                format!(
                    "baseline CPU IQR {} %{resolution}; wall time {} % (IQR {} %)",
                    fmt(spread, 2),
                    fmt_signed(wall, 2),
                    fmt(noise(samples, kind, Metric::Wall), 2)
                ),
            );
        }
    }
    let floor = floor_ns(costs);
    for cost in costs
        .iter()
        .filter(|c| c.variant == Variant::MemtraceHook && c.kind == Kind::Storm)
    {
        // The per-fault hooks; the rest fire per process exit or reclaim, not per fault.
        for (name, time, count) in cost
            .programs
            .iter()
            .filter(|p| p.0 == "rss_stat" || p.0 == "page_fault_user")
        {
            let per_event = stats::ns_per_event(*time, *count);
            line(
                format!("kernel run time per event, {name}"),
                "≤ 40 ns",
                fmt(per_event, 1) + " ns",
                per_event.map(|ns| ns <= 40.0),
                format!(
                    "{} ns above the {} ns floor of the statistics",
                    fmt(per_event.zip(floor).map(|(ns, f)| ns - f), 1),
                    fmt(floor, 1)
                ),
            );
        }
    }
    for cost in top {
        let hook = if cost.variant == Variant::MemtraceHook {
            ", fault hook"
        } else {
            ", no fault hook"
        };
        line(
            format!("top{hook}: CPU, 1 s interval"),
            "< 1 %",
            format!("{:.2} %", cost.cpu_percent),
            Some(cost.cpu_percent < 1.0),
            format!("{} processes", cost.processes),
        );
        let peak = mib(cost.memory.hwm);
        line(
            format!("top{hook}: RSS (peak, VmHWM)"),
            "< 20 MiB",
            format!("{peak:.1} MiB"),
            Some(peak < 20.0),
            format!(
                "VmRSS {:.1} MiB at the end, {:.1} MiB of it anonymous",
                mib(cost.memory.rss),
                mib(cost.memory.anon)
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    //! Reading memtrace's fault-hook flag from its help.
    use super::*;

    #[test]
    fn hook_flags_from_help() {
        let opt_in = "      --fault-hook           Also count faults with a per-fault eBPF hook\n";
        let opt_out = "      --no-fault-hook   Don't attach the per-fault hook (`--fault-hook`)\n";
        assert_eq!(HookFlags::from_help(opt_in), Some(HookFlags::OptIn));
        assert_eq!(HookFlags::from_help(opt_out), Some(HookFlags::OptOut));
        assert_eq!(HookFlags::from_help("  --json  JSON\n"), None);
        assert_eq!(HookFlags::OptIn.args(true), ["--fault-hook"]);
        assert!(HookFlags::OptIn.args(false).is_empty());
        assert_eq!(HookFlags::OptOut.args(false), ["--no-fault-hook"]);
        assert!(HookFlags::OptOut.args(true).is_empty());
    }
}
