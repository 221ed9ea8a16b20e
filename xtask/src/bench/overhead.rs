//! `cargo xtask bench overhead`: what tracing costs the traced.
//!
//! 1. Wall and CPU time: both workloads ([`Kind`]) run with no tracer, under an idle `memtrace
//!    guard --machine --dry-run` (far from its thresholds: what it costs all day), under
//!    `memtrace top --json --interval 1` in its three modes, and under the equivalent bpftrace
//!    one-liner. The `top` modes: its default (`top (default)`: nothing on the page-fault path,
//!    only the programs of rare events, each process's memory read from /proc at every
//!    interval), `--per-event` (`rss_stat` on every change of every process's resident memory)
//!    and `--per-event --fault-hook` (that plus the per-fault hook). The flags that select them
//!    are read from `memtrace top --help`: an older memtrace (`--memtrace PATH`) lists
//!    `--rare-events` and no `--per-event`, and there per-event counting is the default and
//!    `--rare-events` the mode without programs on the page-fault path. The runs are
//!    interleaved in rounds (the variants' order rotates every round). A tracer is started once
//!    per round and variant, runs the storm then the pipeline, and only counts as up once it
//!    printed its first line (memtrace: its first snapshot, so it is attached and sampling;
//!    bpftrace: "Attaching 1 probe", plus a second to finish attaching). The overhead is the
//!    median over rounds of each round's difference to that round's baseline, which cancels the
//!    machine's slow drifts. It is computed twice: on wall time, and on the workload process's
//!    CPU time, which holds the kernel programs' cost (they run in its context on each fault)
//!    but not the time it spent waiting for a CPU, so it stays meaningful on a busy or
//!    virtualised machine whose wall times jitter by more than the effect; the targets are
//!    judged on CPU time, with the wall-time figure next to it. The targets are the default
//!    `top`'s: the `--per-event` modes are opt-in with a known per-fault cost, their overhead
//!    printed with the verdict "opt-in". The tracer's own user-space cost is measured
//!    separately (3.). `kernel.bpf_stats_enabled` is off meanwhile.
//! 2. Kernel program cost: with `kernel.bpf_stats_enabled` on, one more run of each workload
//!    under `memtrace top --per-event --fault-hook`, the guard, the default `top` and bpftrace
//!    (for the guard and the default `top`, their program runs per 100 page faults of the storm
//!    are a target); each program's run time and count are read with bpftool while the tracer
//!    is still up, before and after each workload. An empty bpftrace probe on the same
//!    tracepoint gives the floor: what the statistics' own clock reads add to every measured
//!    run (large on VMs, whose clock reads are slow).
//! 3. The own cost of `memtrace top` (each mode) and of the idle guard: with `--top-procs` idle
//!    `sleep` processes started (and killed by PID afterwards), `memtrace top --json --interval
//!    1 > /dev/null` runs for `--top-secs` and the guard for `--guard-secs` after a warm-up;
//!    their utime+stime over that span and VmRSS/VmHWM come from /proc.
//!
//! Tables go to stdout, progress to stderr.
//!
//! This module holds the options and the orchestration; the rest lives beside it:
//! `overhead_tracers` (the variants, building the binaries, starting and stopping the tracers),
//! `overhead_measure` (calibration, the timed rounds, kernel program and `memtrace top` costs)
//! and `overhead_tables` (the tables and the targets' verdicts).
use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::bail;

use super::{
    bpf_stats::StatsEnabled,
    overhead_measure::{calibrate, program_costs, timed_rounds, top_costs},
    overhead_tables::{Metric, overhead_table, program_table, targets, top_table},
    overhead_tracers::{Variant, build_binaries, remove_guard_state_dir},
};
use crate::{root, tools};

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
    /// How long the own cost of each `memtrace top` mode is measured, seconds.
    #[arg(long, default_value_t = 20)]
    pub top_secs: u64,
    /// How long the idle guard's own cost is measured, seconds.
    #[arg(long, default_value_t = 60)]
    pub guard_secs: u64,
    /// Idle processes started for that measurement.
    #[arg(long, default_value_t = 500)]
    pub top_procs: usize,
    /// Benchmark this memtrace binary instead of building one (release) first.
    #[arg(long, value_name = "PATH")]
    pub memtrace: Option<PathBuf>,
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
            Variant::TopPerEventHook,
            Variant::Guard,
            Variant::TopDefault,
            Variant::Bpftrace,
            Variant::BpftraceEmpty,
        ] {
            costs.extend(program_costs(&binaries, variant, sizes)?);
        }
        costs
    };
    let top = top_costs(&binaries, options);
    remove_guard_state_dir();
    let top = top?;

    println!("{machine}, load average at the end {}", load_average());
    println!("{}", binaries.top_flags.describe());
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
