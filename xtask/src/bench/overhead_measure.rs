//! The measurements of `cargo xtask bench overhead`: workload sizes calibrated to a duration,
//! the interleaved timed rounds, the kernel programs' run time per workload, and the own CPU
//! and memory of `memtrace top` (each mode) and of the idle guard.
use std::{
    collections::HashMap,
    io::Read as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use memtrace_host::procfs::PidMemory;
use memtrace_testkit::{child::KillOnDrop, proc};
use rustix::process::Signal;

use super::{
    bpf_stats,
    overhead::Options,
    overhead_tracers::{Binaries, VARIANTS, Variant, start_tracer, stop_tracer},
    process::{Observer, Sleepers},
    workload::{Kind, Report},
};

/// `memtrace top` start-up (BTF, load, seeding from /proc) left out of its steady-state cost.
pub const TOP_WARMUP: Duration = Duration::from_secs(3);
/// The workloads, in the order of the tables.
pub const KINDS: [Kind; 2] = [Kind::Storm, Kind::Pipeline];

/// Sizes making each workload last about as long as asked.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub storm: u32,
    pub pipeline: u32,
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
pub struct ProgramCosts {
    pub variant: Variant,
    pub kind: Kind,
    pub report: Report,
    /// (program, run time ns, runs).
    pub programs: Vec<(String, u64, u64)>,
}

/// The own cost of `memtrace top` in one of its modes, or of the idle guard.
#[derive(Debug)]
pub struct TopCost {
    pub variant: Variant,
    pub processes: usize,
    pub cpu_percent: f64,
    pub startup_cpu_s: f64,
    pub memory: PidMemory,
}

/// Runs one workload in a child process and returns its report.
fn run_workload(binary: &Path, kind: Kind, size: u32) -> anyhow::Result<Report> {
    let size = size.to_string();
    let mut child = KillOnDrop::spawn(
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
pub fn calibrate(binaries: &Binaries, options: &Options) -> anyhow::Result<Sizes> {
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
pub type Samples = HashMap<(Kind, Variant), Vec<Report>>;

/// The interleaved rounds.
pub fn timed_rounds(binaries: &Binaries, sizes: Sizes, rounds: usize) -> anyhow::Result<Samples> {
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
pub fn program_costs(
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

/// The CPU and memory of `memtrace top` in each of its modes and of the idle guard, with many
/// processes to track.
pub fn top_costs(binaries: &Binaries, options: &Options) -> anyhow::Result<Vec<TopCost>> {
    eprintln!(
        "xtask: bench: starting {} idle processes for memtrace top's own cost",
        options.top_procs
    );
    let mut sleepers = Sleepers::spawn(options.top_procs)?;
    let mut out = Vec::new();
    for variant in [
        Variant::TopDefault,
        Variant::TopPerEvent,
        Variant::TopPerEventHook,
        Variant::Guard,
    ] {
        let secs = if variant == Variant::Guard {
            options.guard_secs
        } else {
            options.top_secs
        };
        eprintln!(
            "xtask: bench: {}, {secs} s after {} s of warm-up",
            variant.label(),
            TOP_WARMUP.as_secs()
        );
        let mut observer = match variant.top_mode() {
            Some(mode) => {
                let mut cmd = binaries.memtrace_top(mode);
                Observer::spawn(&mut cmd, "memtrace top", |_| false, true)?
            }
            None => Observer::spawn(
                &mut binaries.memtrace_guard()?,
                "memtrace guard",
                |_| false,
                true,
            )?,
        };
        let pid = observer.pid();
        std::thread::sleep(TOP_WARMUP);
        observer.check_alive()?;
        let cpu_start = proc::cpu_seconds(pid)?;
        let wall = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        observer.check_alive()?;
        let cpu_end = proc::cpu_seconds(pid)?;
        let elapsed = wall.elapsed().as_secs_f64();
        let memory = proc::memory(pid)?;
        let processes = proc::process_count();
        observer.stop(Signal::TERM)?;
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
