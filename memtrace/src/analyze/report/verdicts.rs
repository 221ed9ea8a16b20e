//! One verdict per stage and one for the whole tree: the runs grouped by clip ([`clips`]),
//! hand-offs netted out ([`handoff`]), and each stage judged on what it kept per clip
//! ([`judge`]), host and GPU alike. The tree's own growth per clip stands beside them, with the
//! stages that keep it ("tree grows +3.0 MiB/clip; infer keeps it").
//!
//! [`clips`]: super::clips
//! [`handoff`]: super::handoff
//! [`judge`]: super::judge
use serde::Serialize;

use super::{
    clips::Clips,
    handoff::{self, HandOff, Netted},
    judge::{self, Judgement, LeakVerdict},
    stages::StageRun,
};
use crate::host::units;

/// One stage's verdict over all its clips.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageVerdict {
    /// Stage name.
    pub stage: String,
    /// How many runs it had.
    pub clips: usize,
    /// Host memory kept per clip, hand-offs netted out.
    pub host: Option<Judgement>,
    /// GPU memory kept per clip, with GPU data.
    pub gpu: Option<Judgement>,
    /// Largest peak above the start memory in any clip (transient use).
    pub transient_peak: u64,
    /// Host verdict.
    pub verdict: LeakVerdict,
    /// GPU verdict, with GPU data.
    pub gpu_verdict: Option<LeakVerdict>,
    /// Host hand-offs this stage keeps for or frees.
    pub hand_offs: Vec<HandOff>,
    /// One line, e.g. `composite retains +24.0 MiB/clip ±0.1 (…): likely leak`.
    pub text: String,
}

/// The whole tree's growth per clip.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TreeGrowth {
    /// Host memory the tree gains per clip.
    pub host: Option<Judgement>,
    /// Host verdict.
    pub verdict: LeakVerdict,
    /// GPU memory the tree gains per clip, with GPU data.
    pub gpu: Option<Judgement>,
    /// GPU verdict, with GPU data.
    pub gpu_verdict: Option<LeakVerdict>,
    /// The stages whose host or GPU verdict is a leak.
    pub kept_by: Vec<String>,
    /// One line, e.g. `tree grows +3.0 MiB/clip ±0.2 (clips 2–6 of 6): infer keeps it`.
    pub text: String,
}

/// The stages' verdicts (in order of first appearance) and the tree's.
pub fn verdicts(runs: &[StageRun]) -> (Vec<StageVerdict>, Option<TreeGrowth>) {
    if runs.is_empty() {
        return (Vec::new(), None);
    }
    let clips = Clips::of(runs);
    let host = handoff::net(&clips.stages, &clips.host);
    let gpu = handoff::net(&clips.stages, &clips.gpu);
    let mut peaks = vec![0u64; clips.stages.len()];
    for run in runs {
        if let Some(at) = clips.stages.iter().position(|s| *s == run.stage) {
            let above = run
                .host_peak
                .saturating_sub(run.host_start.max(run.host_end));
            peaks[at] = peaks[at].max(above);
        }
    }
    let stages: Vec<StageVerdict> = clips
        .stages
        .iter()
        .enumerate()
        .map(|(at, stage)| stage_verdict(&clips, &host, &gpu, at, stage, peaks[at]))
        .collect();
    let tree = tree_growth(&clips, &stages);
    (stages, Some(tree))
}

fn judged(netted: &Netted, at: usize) -> Option<Judgement> {
    netted
        .series
        .get(at)
        .and_then(|s| judge::judge(&handoff::present(s)))
}

fn stage_verdict(
    clips: &Clips,
    host: &Netted,
    gpu: &Netted,
    at: usize,
    stage: &str,
    transient_peak: u64,
) -> StageVerdict {
    let runs = clips.runs.get(at).copied().unwrap_or(0);
    let host_judgement = judged(host, at);
    let verdict = LeakVerdict::of(host_judgement.as_ref());
    let has_gpu = clips
        .gpu
        .get(at)
        .is_some_and(|s| s.iter().any(Option::is_some));
    let gpu_judgement = judged(gpu, at).filter(|_| has_gpu);
    let gpu_verdict = has_gpu.then(|| LeakVerdict::of(gpu_judgement.as_ref()));
    let hand_offs: Vec<HandOff> = host
        .hand_offs
        .iter()
        .filter(|h| h.keeper == stage || h.freer == stage)
        .cloned()
        .collect();
    let mut text = match &host_judgement {
        None => format!("{stage}: {runs} run(s), {}", verdict.words()),
        Some(j) => format!(
            "{stage} retains {} ({}; noise {} MiB, effect {}): {}",
            j.rate_words(),
            j.span_words(),
            units::mib_f64(j.noise),
            effect_words(j.effect),
            verdict.words()
        ),
    };
    for h in &hand_offs {
        let when = if h.next_clip {
            "on the next clip"
        } else {
            "on the same clip"
        };
        let amount = units::signed_mib(h.per_clip);
        if h.keeper == stage {
            text.push_str(&format!(
                "; also hands {amount} MiB/clip to {}, which frees it {when}",
                h.freer
            ));
        } else {
            text.push_str(&format!(
                "; frees {amount} MiB/clip that {} kept (a hand-off, {when})",
                h.keeper
            ));
        }
    }
    if let (Some(j), Some(v)) = (&gpu_judgement, gpu_verdict) {
        text.push_str(&format!("; GPU {}: {}", j.rate_words(), v.words()));
    }
    if !verdict.is_leak() && transient_peak >= 16 << 20 {
        text.push_str(&format!(
            " (transient peak {} MiB above its start, freed by its end)",
            units::signed_mib(transient_peak as f64)
        ));
    }
    StageVerdict {
        stage: stage.to_owned(),
        clips: runs,
        host: host_judgement,
        gpu: gpu_judgement,
        transient_peak,
        verdict,
        gpu_verdict,
        hand_offs,
        text,
    }
}

/// `12.3`, or `≥ 100` for the near-exact repeats whose noise is at the floor.
fn effect_words(effect: f64) -> String {
    if effect.abs() >= 100.0 {
        format!("{}100", if effect < 0.0 { "≤ −" } else { "≥ " })
    } else {
        format!("{effect:.1}")
    }
}

fn tree_growth(clips: &Clips, stages: &[StageVerdict]) -> TreeGrowth {
    let host = judge::judge(&clips.tree_host);
    let verdict = LeakVerdict::of(host.as_ref());
    let gpu = clips.tree_gpu.as_deref().and_then(judge::judge);
    let gpu_verdict = clips
        .tree_gpu
        .as_ref()
        .map(|_| LeakVerdict::of(gpu.as_ref()));
    let kept_by: Vec<String> = stages
        .iter()
        .filter(|s| s.verdict.is_leak() || s.gpu_verdict.is_some_and(LeakVerdict::is_leak))
        .map(|s| s.stage.clone())
        .collect();
    let mut text = match &host {
        None => format!("tree: {}", verdict.words()),
        Some(j) => format!(
            "tree {} {} ({})",
            if verdict.is_leak() {
                "grows"
            } else {
                "changes"
            },
            j.rate_words(),
            j.span_words()
        ),
    };
    if let (Some(j), Some(v)) = (&gpu, gpu_verdict) {
        text.push_str(&format!(
            ", GPU {} {}",
            if v.is_leak() { "grows" } else { "changes" },
            j.rate_words()
        ));
    }
    let grows = verdict.is_leak() || gpu_verdict.is_some_and(LeakVerdict::is_leak);
    text.push_str(&match (grows, kept_by.as_slice()) {
        (false, []) => ": no growth per clip".to_owned(),
        (true, []) => ": no single stage keeps it (kept between marks, or spread thin over \
                       stages)"
            .to_owned(),
        (true, [one]) => format!(": {one} keeps it"),
        (true, many) => format!(": {} keep it", many.join(", ")),
        (false, some) => format!(
            ": {} keep memory per clip, yet the tree's growth is within its noise",
            some.join(", ")
        ),
    });
    TreeGrowth {
        host,
        verdict,
        gpu,
        gpu_verdict,
        kept_by,
        text,
    }
}

#[cfg(test)]
mod tests;
