//! `memtrace report FILE [--json] [--html OUT]`: which stage leaks, how much per clip, host or
//! GPU.
//!
//! Definitions (also in the README):
//! * **host memory** of the traced tree = anon + shmem + swap of its live processes (what the
//!   processes own and the kernel cannot drop as cache; RSS is shown alongside), counted
//!   proportionally (PSS, recorded with each sample of a process tree) so that copy-on-write
//!   pages shared by forked workers count once, or summed per process in traces without PSS
//!   ([`HostMeasure`]; the report says which). **GPU memory**
//!   = Σ per-process GPU memory where the GPU source knows it, else the devices' use.
//! * A **stage run** is one stage on one clip, from its begin mark to the next mark (or its end
//!   mark). Every mark takes a fresh sample, so start and end are measured at the marks, not at
//!   the nearest tick. **Peak** is the highest sample in between; **retained** = end − start:
//!   what the stage left behind after it ended.
//! * Runs are grouped by clip ([`clips`]); memory a stage keeps that a later stage frees is a
//!   hand-off and is netted out ([`handoff`]); each stage is then judged on what it retained on
//!   each clip ([`judge`]): mean per clip with a 95 % confidence interval, noise and effect
//!   size, clip 1 left out as warm-up, and only the clips after a clear change of level
//!   judged. Mean ≥ 1 MiB/clip with the interval above 0 is a leak: *likely* when the mean is
//!   ≥ 2 noise deviations, else *possible*. Memory taken and given back within the stage (a
//!   transient peak) retains ≈ 0 and is not one. The tree's own growth per clip is judged the
//!   same way beside the stages ([`verdicts`]).
pub mod clips;
#[cfg(test)]
mod fuzz;
pub mod handoff;
pub mod html;
pub mod judge;
pub mod stages;
pub mod substages;
pub mod text;
pub mod verdicts;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use serde::Serialize;
pub use stages::{HostMeasure, StageRun, TreePoint};
pub use verdicts::{StageVerdict, TreeGrowth};

use crate::record::trace::{self, Event, MarkTiming, TraceData, codec::ProcValues, decision};

/// Raw arguments of `memtrace report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The trace (`memtrace record -o FILE` or `memtrace run --out FILE`).
    pub file: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report (chart + tables) to this file.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
}

/// An event worth listing, with its time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Moment {
    /// Seconds since the trace start.
    pub t_s: f64,
    /// What happened, in words.
    pub text: String,
}

/// A process's totals over the trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcTotal {
    /// pid.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// Highest host memory (anon + shmem + swap).
    pub peak_footprint: u64,
    /// Highest resident set.
    pub peak_rss: u64,
    /// Highest GPU memory.
    pub peak_gpu: Option<u64>,
    /// Time stalled in direct reclaim, ns.
    pub reclaim_stall_ns: u64,
    /// Direct-reclaim stalls.
    pub reclaim_count: u64,
}

/// Everything the report says.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The trace header.
    pub header: trace::Header,
    /// Trace size, bytes.
    pub bytes: u64,
    /// Samples read.
    pub samples: usize,
    /// Seconds covered.
    pub duration_s: f64,
    /// The recorder closed the trace.
    pub complete: bool,
    /// Damage found, with its offset.
    pub damage: Option<String>,
    /// How the traced command ended.
    pub exit: Option<String>,
    /// How host memory is counted.
    pub host_measure: HostMeasure,
    /// What moments the stage marks' samples describe.
    pub marks: MarkTimings,
    /// Peak host memory of the tree, by that measure.
    pub peak_footprint: u64,
    /// Peak GPU memory.
    pub peak_gpu: Option<u64>,
    /// One verdict per stage.
    pub verdicts: Vec<StageVerdict>,
    /// The whole tree's growth per clip, when there are stage runs.
    pub tree: Option<TreeGrowth>,
    /// Stage × clip runs.
    pub stages: Vec<StageRun>,
    /// Guard decisions.
    pub guard: Vec<Moment>,
    /// Kernel OOM kills.
    pub oom_kills: Vec<Moment>,
    /// Processes that stalled in direct reclaim, most first.
    pub reclaim: Vec<ProcTotal>,
    /// Largest processes by peak host memory.
    pub top: Vec<ProcTotal>,
    /// Tree totals per sample (for the chart).
    pub series: Vec<TreePoint>,
}

/// How many stage marks of each [`MarkTiming`] the trace holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MarkTimings {
    /// At the pipeline's write of the mark line (exact).
    pub write: usize,
    /// Sampled before the acknowledgement a waiting sender gets (exact when it waited).
    pub acknowledged: usize,
    /// When memtrace read the mark (approximate).
    pub read: usize,
}

impl MarkTimings {
    /// Counts the stage-begin marks of `trace`.
    pub fn of(trace: &TraceData) -> Self {
        let mut counts = Self::default();
        for e in &trace.events {
            if let Event::StageBegin { timing, .. } = &e.event {
                match timing {
                    MarkTiming::Write => counts.write += 1,
                    MarkTiming::Acknowledged => counts.acknowledged += 1,
                    MarkTiming::Read => counts.read += 1,
                }
            }
        }
        counts
    }

    /// One line for the report (`None` without marks).
    pub fn words(&self) -> Option<String> {
        let parts: Vec<String> = [
            (self.write, MarkTiming::Write),
            (self.acknowledged, MarkTiming::Acknowledged),
            (self.read, MarkTiming::Read),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, timing)| format!("{n} {}", timing.words()))
        .collect();
        if parts.is_empty() {
            return None;
        }
        let mut line = format!("Stage marks: {}.", parts.join("; "));
        if self.read > 0 {
            line.push_str(
                " Marks taken at read time are approximate: the pipeline may already have begun \
                 the next stage, whose first allocations then count in the stage before (without \
                 eBPF, stdout marks are always taken so; `memtrace mark` waits for its sample).",
            );
        }
        Some(line)
    }
}

/// Builds the report of a decoded trace.
pub fn analyze(trace: &TraceData) -> Report {
    let (points, host_measure) = stages::series(trace);
    let runs = stages::stage_runs(trace, &points);
    let (verdicts, tree) = verdicts::verdicts(&runs);
    let start = trace.header.start_unix_ms;
    let t = |ms: u64| ms.saturating_sub(start) as f64 / 1000.0;
    let (mut guard, mut oom_kills, mut exit) = (Vec::new(), Vec::new(), None);
    for e in &trace.events {
        let t_s = t(e.time_unix_ms);
        match &e.event {
            Event::GuardDecision {
                level,
                action,
                reason,
                pids,
                outcome,
            } => guard.push(Moment {
                t_s,
                text: format!(
                    "{} pids {pids:?}: {reason}",
                    decision::label(*action, level, *outcome)
                ),
            }),
            Event::OomKill {
                pid,
                comm,
                rss_bytes,
            } => oom_kills.push(Moment {
                t_s,
                text: format!(
                    "pid {pid} ({comm}) with {}",
                    crate::host::units::human_bytes(*rss_bytes)
                ),
            }),
            Event::RunEnd { exit_code, signal } => {
                exit = Some(match (exit_code, signal) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(code), None) => format!("exited with code {code}"),
                    (None, None) => "ended".to_owned(),
                });
            }
            _ => {}
        }
    }
    let totals = proc_totals(trace);
    let mut reclaim: Vec<ProcTotal> = totals
        .iter()
        .filter(|p| p.reclaim_stall_ns > 0)
        .cloned()
        .collect();
    reclaim.sort_by_key(|p| std::cmp::Reverse(p.reclaim_stall_ns));
    reclaim.truncate(5);
    let mut top = totals;
    top.sort_by(|a, b| {
        b.peak_footprint
            .cmp(&a.peak_footprint)
            .then(a.pid.cmp(&b.pid))
    });
    top.truncate(8);
    Report {
        header: trace.header.clone(),
        bytes: trace.bytes,
        samples: trace.samples.len(),
        duration_s: points.last().map_or(0.0, |p| p.t_ms as f64 / 1000.0),
        complete: trace.end.is_some(),
        damage: trace.damage.as_ref().map(ToString::to_string),
        exit,
        host_measure,
        marks: MarkTimings::of(trace),
        peak_footprint: points.iter().map(|p| p.host).max().unwrap_or(0),
        peak_gpu: points.iter().filter_map(|p| p.gpu).max(),
        verdicts,
        tree,
        stages: runs,
        guard,
        oom_kills,
        reclaim,
        top,
        series: points,
    }
}

fn proc_totals(trace: &TraceData) -> Vec<ProcTotal> {
    let mut by_slot: std::collections::BTreeMap<u32, (ProcValues, ProcValues, Option<u64>)> =
        std::collections::BTreeMap::new();
    // A carried-forward process holds its last written values: its changes say it all.
    for sample in &trace.samples {
        for (slot, v) in &sample.changed {
            let entry = by_slot.entry(*slot).or_insert((*v, *v, None));
            entry.0.anon = entry.0.anon.max(v.footprint());
            entry.0.peak_rss = entry.0.peak_rss.max(v.rss());
            entry.1 = *v;
            if let Some(g) = v.gpu {
                entry.2 = Some(entry.2.unwrap_or(0).max(g));
            }
        }
    }
    by_slot
        .into_iter()
        .map(|(slot, (peaks, last, gpu))| {
            let ident = trace.ident(slot);
            ProcTotal {
                pid: ident.pid,
                comm: ident.comm,
                peak_footprint: peaks.anon,
                peak_rss: peaks.peak_rss,
                peak_gpu: gpu,
                reclaim_stall_ns: last.reclaim_stall_ns,
                reclaim_count: last.reclaim_count,
            }
        })
        .collect()
}

/// Runs `memtrace report`. Damage is one error line on stderr after the report of everything
/// before it, and a non-zero exit.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let trace =
        trace::read_file(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let report = analyze(&trace);
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out!(
            "{}",
            text::render(&report, &args.file.display().to_string())
        )?;
    }
    if let Some(out) = &args.html {
        let page = html::render(&report);
        crate::output::write_file(out, |w| w.write_all(page.as_bytes()))
            .context("writing the HTML report")?;
        if !args.json {
            crate::outln!("HTML report: {}", out.display())?;
        }
    }
    if let Some(damage) = &trace.damage {
        eprintln!("memtrace: error: {}: {damage}", args.file.display());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
