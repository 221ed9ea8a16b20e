//! From a decoded trace to numbers: the tree's memory at every sample and the stage runs (one
//! per stage × clip) with their start/end/peak/retained memory ([`verdicts`] judges them).
//!
//! [`verdicts`]: super::verdicts
//!
//! Every step is one pass (or a sort) over the samples' changes, the events and the runs, so
//! the report is linear (n log n) in clips, stage runs and processes, and sums and differences
//! of bytes saturate instead of wrapping (the reader keeps a sample's total below 2^62 bytes,
//! so they never need to).
use std::collections::HashMap;

use serde::Serialize;

use super::substages::SubStages;
use crate::record::trace::{
    Event, TraceData,
    codec::{MAX_TOTAL_BYTES, ProcValues},
};

/// The traced processes' totals at one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TreePoint {
    /// ms since the start of the trace.
    pub t_ms: u64,
    /// The tree's host memory by the trace's [`HostMeasure`]: what stages and peaks use.
    pub host: u64,
    /// Σ anon + shmem + swap of live processes (shared pages once per process).
    pub footprint: u64,
    /// Σ resident set of live processes.
    pub rss: u64,
    /// GPU memory: Σ per-process where known, else Σ device use; `None` without a GPU source.
    pub gpu: Option<u64>,
}

/// A sum of bytes as a u64, saturating (never reached: see the module documentation).
fn narrow(sum: u128) -> u64 {
    u64::try_from(sum).unwrap_or(u64::MAX)
}

/// `to − from` as an i64, saturating (exact for sample totals, which stay below 2^62).
pub fn change(from: u64, to: u64) -> i64 {
    let delta = i128::from(to) - i128::from(from);
    i64::try_from(delta).unwrap_or(if delta > 0 { i64::MAX } else { i64::MIN })
}

/// `bytes` as an i64, saturating.
fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// How the tree's host memory is counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostMeasure {
    /// Σ proportional anon + shmem + swap (`smaps_rollup`), recorded with each sample of a
    /// process tree: a page shared by n processes counts 1/n in each, so copy-on-write pages of
    /// forked workers count once.
    Pss,
    /// Σ anon + shmem + swap per process (traces of all processes, and older traces): pages
    /// shared copy-on-write count once in every process that maps them.
    #[default]
    Summed,
}

impl HostMeasure {
    /// What it counts, for the report.
    pub fn words(self) -> &'static str {
        match self {
            Self::Pss => {
                "proportional anon+shmem+swap of the tree (PSS: pages shared by forked processes \
                 count once)"
            }
            Self::Summed => {
                "anon+shmem+swap summed over the tree's processes (pages shared copy-on-write \
                 count once per process)"
            }
        }
    }
}

/// Totals per sample and the measure their `host` uses: PSS where the trace recorded it
/// (carried forward to a sample without it), else the summed footprint.
pub fn series(trace: &TraceData) -> (Vec<TreePoint>, HostMeasure) {
    let mut points = summed(trace);
    let mut pss: Vec<Option<u64>> = vec![None; points.len()];
    for e in &trace.events {
        // A crafted value beyond any real total is ignored: totals stay below 2^62.
        if let Event::TreeMemory { pss_bytes } = e.event
            && pss_bytes <= MAX_TOTAL_BYTES
            && let Some(slot) = e.after_samples.checked_sub(1).and_then(|i| pss.get_mut(i))
        {
            *slot = Some(pss_bytes);
        }
    }
    if pss.iter().all(Option::is_none) {
        return (points, HostMeasure::Summed);
    }
    let mut last = None;
    for (point, pss) in points.iter_mut().zip(pss) {
        last = pss.or(last);
        point.host = last.unwrap_or(point.footprint);
    }
    (points, HostMeasure::Pss)
}

/// Totals per sample, kept as each sample's changes update them (not re-summed per sample).
fn summed(trace: &TraceData) -> Vec<TreePoint> {
    let start = trace.header.start_unix_ms;
    let mut live: HashMap<u32, ProcValues> = HashMap::new();
    let (mut footprint, mut rss, mut gpu, mut with_gpu) = (0u128, 0u128, 0u128, 0usize);
    trace
        .samples
        .iter()
        .map(|s| {
            for (slot, v) in &s.changed {
                if let Some(old) = live.remove(slot) {
                    footprint = footprint.saturating_sub(u128::from(old.footprint()));
                    rss = rss.saturating_sub(u128::from(old.rss()));
                    if let Some(g) = old.gpu {
                        gpu = gpu.saturating_sub(u128::from(g));
                        with_gpu = with_gpu.saturating_sub(1);
                    }
                }
                if !v.exited {
                    footprint += u128::from(v.footprint());
                    rss += u128::from(v.rss());
                    if let Some(g) = v.gpu {
                        gpu += u128::from(g);
                        with_gpu += 1;
                    }
                    live.insert(*slot, *v);
                }
            }
            let gpu = if with_gpu > 0 {
                Some(narrow(gpu))
            } else if !s.gpus.is_empty() {
                Some(narrow(
                    s.gpus.iter().map(|g| u128::from(g.used_bytes)).sum(),
                ))
            } else {
                None
            };
            TreePoint {
                t_ms: s.time_unix_ms.saturating_sub(start),
                host: narrow(footprint),
                footprint: narrow(footprint),
                rss: narrow(rss),
                gpu,
            }
        })
        .collect()
}

/// One stage working on one clip.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageRun {
    /// Stage name.
    pub stage: String,
    /// Clip, when marked.
    pub clip: Option<String>,
    /// Begin, seconds since the trace start.
    pub begin_s: f64,
    /// End, seconds since the trace start.
    pub end_s: f64,
    /// Host memory (by the trace's [`HostMeasure`]) when it began.
    pub host_start: u64,
    /// Host memory when it ended.
    pub host_end: u64,
    /// Highest host memory while it ran.
    pub host_peak: u64,
    /// `host_end − host_start`: what the stage left behind.
    pub host_retained: i64,
    /// GPU memory when it began / ended / at its highest, and retained.
    pub gpu: Option<[i64; 4]>,
    /// Child processes started during the stage (sub-stages): command and peak resident set.
    pub children: Vec<(String, u64)>,
    /// Sample indices (inclusive) the stage spans, for charts.
    #[serde(skip)]
    pub samples: (usize, usize),
}

/// A stage run not closed yet.
struct Open {
    stage: String,
    clip: Option<String>,
    begin: usize,
    t0: u64,
    /// (pid, command) of every process started while it ran.
    execs: Vec<(u32, String)>,
}

/// Cuts the trace into stage runs at the stage events. A process started (exec) while a run
/// is open is one of its sub-stages, with the highest RSS it reached during the run.
pub fn stage_runs(trace: &TraceData, points: &[TreePoint]) -> Vec<StageRun> {
    if points.is_empty() {
        return Vec::new();
    }
    let at = |after: usize| after.saturating_sub(1).min(points.len() - 1);
    let substages = SubStages::new(trace);
    let mut runs = Vec::new();
    let mut open: Option<Open> = None;
    let start = trace.header.start_unix_ms;
    let mut close = |open: &mut Option<Open>, end: usize, t: u64| {
        if let Some(run) = open.take() {
            let span = (at(run.begin), at(end).max(at(run.begin)));
            let children = substages.children(&run.execs, span);
            runs.push(measure(points, run, span, t, children));
        }
    };
    // The first process to join is the traced command itself, not a sub-stage.
    let root = trace.events.iter().find_map(|e| match &e.event {
        Event::Exec { pid, .. } => Some(*pid),
        _ => None,
    });
    for e in &trace.events {
        let t = e.time_unix_ms.saturating_sub(start);
        match &e.event {
            Event::StageBegin { stage, clip, .. } => {
                close(&mut open, e.after_samples, t);
                open = Some(Open {
                    stage: stage.clone(),
                    clip: clip.clone(),
                    begin: e.after_samples,
                    t0: t,
                    execs: Vec::new(),
                });
            }
            Event::StageEnd { .. } | Event::RunEnd { .. } => close(&mut open, e.after_samples, t),
            Event::Exec { pid, comm, .. } if Some(*pid) != root => {
                if let Some(run) = &mut open {
                    run.execs.push((*pid, comm.clone()));
                }
            }
            _ => {}
        }
    }
    let last_t = points.last().map_or(0, |p| p.t_ms);
    close(&mut open, points.len(), last_t);
    runs
}

fn measure(
    points: &[TreePoint],
    run: Open,
    (first, last): (usize, usize),
    t1: u64,
    children: Vec<(String, u64)>,
) -> StageRun {
    let span = points.get(first..=last).unwrap_or_default();
    let (a, b) = (points[first], points[last]);
    let host_peak = span.iter().map(|p| p.host).max().unwrap_or(0);
    let gpu = match (a.gpu, b.gpu) {
        (Some(ga), Some(gb)) => {
            let peak = span.iter().filter_map(|p| p.gpu).max().unwrap_or(0);
            Some([signed(ga), signed(gb), signed(peak), change(ga, gb)])
        }
        _ => None,
    };
    StageRun {
        stage: run.stage,
        clip: run.clip,
        begin_s: run.t0 as f64 / 1000.0,
        end_s: t1 as f64 / 1000.0,
        host_start: a.host,
        host_end: b.host,
        host_peak,
        host_retained: change(a.host, b.host),
        gpu,
        children,
        samples: (first, last),
    }
}

#[cfg(test)]
mod tests;
