//! From a decoded trace to numbers: the tree's memory at every sample, the stage runs (one per
//! stage × clip) with their start/end/peak/retained memory, and one leak verdict per stage.
use std::collections::BTreeMap;

use serde::Serialize;

use super::fit::{self, Fit, LeakVerdict};
use crate::{
    host::units,
    record::trace::{Event, TraceData},
};

/// The traced processes' totals at one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// ms since the start of the trace.
    pub t_ms: u64,
    /// Σ anon + shmem + swap of live processes.
    pub footprint: u64,
    /// Σ resident set of live processes.
    pub rss: u64,
    /// GPU memory: Σ per-process where known, else Σ device use; `None` without a GPU source.
    pub gpu: Option<u64>,
}

/// Totals per sample.
pub fn series(trace: &TraceData) -> Vec<Point> {
    let start = trace.header.start_unix_ms;
    trace
        .samples
        .iter()
        .map(|s| {
            let live = s.procs.iter().filter(|(_, v)| !v.exited);
            let (mut footprint, mut rss, mut gpu) = (0, 0, None::<u64>);
            for (_, v) in live {
                footprint += v.footprint();
                rss += v.rss();
                if let Some(g) = v.gpu {
                    gpu = Some(gpu.unwrap_or(0) + g);
                }
            }
            if gpu.is_none() && !s.gpus.is_empty() {
                gpu = Some(s.gpus.iter().map(|g| g.used_bytes).sum());
            }
            Point {
                t_ms: s.time_unix_ms.saturating_sub(start),
                footprint,
                rss,
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
    /// Host memory (footprint) when it began.
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

/// Cuts the trace into stage runs at the stage events.
pub fn stage_runs(trace: &TraceData, points: &[Point]) -> Vec<StageRun> {
    if points.is_empty() {
        return Vec::new();
    }
    let at = |after: usize| after.saturating_sub(1).min(points.len() - 1);
    let mut runs = Vec::new();
    let mut open: Option<(String, Option<String>, usize, u64)> = None;
    let start = trace.header.start_unix_ms;
    let mut close =
        |open: &mut Option<(String, Option<String>, usize, u64)>, end: usize, t: u64| {
            if let Some((stage, clip, begin, t0)) = open.take() {
                runs.push(measure(
                    trace,
                    points,
                    stage,
                    clip,
                    (at(begin), at(end)),
                    (t0, t),
                ));
            }
        };
    for e in &trace.events {
        let t = e.time_unix_ms.saturating_sub(start);
        match &e.event {
            Event::StageBegin { stage, clip, .. } => {
                close(&mut open, e.after_samples, t);
                open = Some((stage.clone(), clip.clone(), e.after_samples, t));
            }
            Event::StageEnd { .. } | Event::RunEnd { .. } => close(&mut open, e.after_samples, t),
            _ => {}
        }
    }
    let last_t = points.last().map_or(0, |p| p.t_ms);
    close(&mut open, points.len(), last_t);
    runs
}

fn measure(
    trace: &TraceData,
    points: &[Point],
    stage: String,
    clip: Option<String>,
    (first, last): (usize, usize),
    (t0, t1): (u64, u64),
) -> StageRun {
    let span = &points[first..=last.max(first)];
    let (a, b) = (points[first], points[last.max(first)]);
    let host_peak = span.iter().map(|p| p.footprint).max().unwrap_or(0);
    let gpu = match (a.gpu, b.gpu) {
        (Some(ga), Some(gb)) => {
            let peak = span.iter().filter_map(|p| p.gpu).max().unwrap_or(0);
            Some([ga as i64, gb as i64, peak as i64, gb as i64 - ga as i64])
        }
        _ => None,
    };
    StageRun {
        stage,
        clip,
        begin_s: t0 as f64 / 1000.0,
        end_s: t1 as f64 / 1000.0,
        host_start: a.footprint,
        host_end: b.footprint,
        host_peak,
        host_retained: b.footprint as i64 - a.footprint as i64,
        gpu,
        children: children(trace, first, last.max(first)),
        samples: (first, last.max(first)),
    }
}

/// Processes that joined the tree between samples `first` and `last`, with their peak RSS.
fn children(trace: &TraceData, first: usize, last: usize) -> Vec<(String, u64)> {
    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    // The first process to join is the traced command itself, not a sub-stage.
    let root = trace.events.iter().find_map(|e| match &e.event {
        Event::Exec { pid, .. } => Some(*pid),
        _ => None,
    });
    for e in &trace.events {
        let Event::Exec { pid, comm, .. } = &e.event else {
            continue;
        };
        if Some(*pid) == root {
            continue;
        }
        if e.after_samples <= first || e.after_samples > last + 1 {
            continue;
        }
        let slots: Vec<u32> = (0..trace.idents.len())
            .filter(|&s| trace.idents[s].pid == *pid)
            .filter_map(|s| u32::try_from(s).ok())
            .collect();
        let peak = trace.samples[first..=last.min(trace.samples.len().saturating_sub(1))]
            .iter()
            .flat_map(|s| s.procs.iter())
            .filter(|(slot, _)| slots.contains(slot))
            .map(|(_, v)| v.peak_rss.max(v.rss()))
            .max()
            .unwrap_or(0);
        let entry = found.entry(comm.clone()).or_default();
        *entry = (*entry).max(peak);
    }
    found.into_iter().collect()
}

/// One stage's verdict over all its clips.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageVerdict {
    /// Stage name.
    pub stage: String,
    /// How many runs (clips) it had.
    pub clips: usize,
    /// Host fit of the cumulative retained memory over clips.
    pub host: Option<Fit>,
    /// GPU fit, with a GPU source.
    pub gpu: Option<Fit>,
    /// Largest peak above the start memory in any clip (transient use).
    pub transient_peak: u64,
    /// Host verdict.
    pub verdict: LeakVerdict,
    /// GPU verdict, with a GPU source.
    pub gpu_verdict: Option<LeakVerdict>,
    /// One line, e.g. `composite retains +31.8 MiB/clip (r² 0.99): likely leak`.
    pub text: String,
}

/// One verdict per stage, in order of first appearance.
pub fn verdicts(runs: &[StageRun]) -> Vec<StageVerdict> {
    let mut order: Vec<&str> = Vec::new();
    for run in runs {
        if !order.contains(&run.stage.as_str()) {
            order.push(&run.stage);
        }
    }
    order
        .into_iter()
        .map(|stage| {
            let mine: Vec<&StageRun> = runs.iter().filter(|r| r.stage == stage).collect();
            let host_retained: Vec<f64> = mine.iter().map(|r| r.host_retained as f64).collect();
            let host = fit::retained_fit(&host_retained);
            let gpu_retained: Option<Vec<f64>> =
                mine.iter().map(|r| r.gpu.map(|g| g[3] as f64)).collect();
            let gpu = gpu_retained.as_deref().and_then(fit::retained_fit);
            let verdict = LeakVerdict::of(host, mine.len());
            let gpu_verdict = gpu_retained.map(|_| LeakVerdict::of(gpu, mine.len()));
            let transient_peak = mine
                .iter()
                .map(|r| r.host_peak.saturating_sub(r.host_start.max(r.host_end)))
                .max()
                .unwrap_or(0);
            let text = verdict_line(
                stage,
                mine.len(),
                host,
                gpu,
                verdict,
                gpu_verdict,
                transient_peak,
            );
            StageVerdict {
                stage: stage.to_owned(),
                clips: mine.len(),
                host,
                gpu,
                transient_peak,
                verdict,
                gpu_verdict,
                text,
            }
        })
        .collect()
}

fn signed_mib(bytes: f64) -> String {
    format!("{} MiB", units::signed_mib(bytes))
}

fn verdict_line(
    stage: &str,
    clips: usize,
    host: Option<Fit>,
    gpu: Option<Fit>,
    verdict: LeakVerdict,
    gpu_verdict: Option<LeakVerdict>,
    transient_peak: u64,
) -> String {
    let Some(host) = host.filter(|_| verdict != LeakVerdict::TooFewClips) else {
        return format!(
            "{stage}: {clips} clip(s), {}",
            LeakVerdict::TooFewClips.words()
        );
    };
    let mut line = format!(
        "{stage} retains {}/clip (r² {:.2}) over {clips} clips: {}",
        signed_mib(host.slope),
        host.r2,
        verdict.words()
    );
    if let (Some(g), Some(v)) = (gpu, gpu_verdict) {
        line.push_str(&format!(
            "; GPU {}/clip (r² {:.2}): {}",
            signed_mib(g.slope),
            g.r2,
            v.words()
        ));
    }
    if verdict != LeakVerdict::LikelyLeak && transient_peak >= 16 << 20 {
        line.push_str(&format!(
            " (transient peak {} above its start, freed by its end)",
            signed_mib(transient_peak as f64)
        ));
    }
    line
}
