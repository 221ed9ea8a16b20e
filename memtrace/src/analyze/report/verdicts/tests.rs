//! Whole pipelines as stage runs, judged: the hand-off (a 3 MiB/clip leak inside a
//! stage that hands 20 MiB/clip on), a mark that lands a random part of the next stage's
//! allocation in the stage before, a GPU-only leak, a tree that grows between marks, and a
//! pipeline that keeps nothing.
use super::*;
use crate::analyze::report::stages::change;

const MIB: f64 = crate::host::units::MIB as f64;

/// Builds runs clip by clip: each stage's (host retained, GPU retained) in MiB, in order; the
/// tree's memory carries on from run to run, plus `between` MiB after each clip.
fn pipeline(stages: &[&str], clips: &[Vec<(f64, Option<f64>)>], between: f64) -> Vec<StageRun> {
    let (mut host, mut gpu) = (600.0 * MIB, 1000.0 * MIB);
    let mut runs = Vec::new();
    for clip in clips {
        for (stage, (kept, gpu_kept)) in stages.iter().zip(clip) {
            let (start, gpu_start) = (host, gpu);
            host += kept * MIB;
            gpu += gpu_kept.unwrap_or(0.0) * MIB;
            let (a, b) = (start as u64, host as u64);
            runs.push(StageRun {
                stage: (*stage).to_owned(),
                host_start: a,
                host_end: b,
                host_peak: a.max(b),
                host_retained: change(a, b),
                gpu: gpu_kept.map(|_| {
                    let (ga, gb) = (gpu_start as i64, gpu as i64);
                    [ga, gb, ga.max(gb), gb - ga]
                }),
                ..StageRun::default()
            });
        }
        host += between * MIB;
    }
    runs
}

fn host_only(rows: &[&[f64]]) -> Vec<Vec<(f64, Option<f64>)>> {
    rows.iter()
        .map(|row| row.iter().map(|v| (*v, None)).collect())
        .collect()
}

fn by_stage<'a>(verdicts: &'a [StageVerdict], stage: &str) -> &'a StageVerdict {
    verdicts
        .iter()
        .find(|v| v.stage == stage)
        .expect("a verdict per stage")
}

#[test]
fn a_leak_inside_a_hand_off_is_charged_to_its_keeper_alone() {
    // decode frees on each clip the 20 MiB of frames infer kept on the clip before; infer also
    // leaks 3 MiB per clip; encode keeps nothing.
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for clip in 0..8 {
        let wobble = [0.2, -0.1, 0.0, 0.15, -0.2, 0.1, -0.05, 0.0][clip];
        let freed = if clip == 0 { 0.0 } else { -20.0 - wobble };
        rows.push(vec![freed, 23.0 + wobble, -wobble / 2.0]);
    }
    let rows: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let runs = pipeline(&["decode", "infer", "encode"], &host_only(&rows), 0.0);
    let (verdicts, tree) = verdicts(&runs);
    let infer = by_stage(&verdicts, "infer");
    assert_eq!(infer.verdict, LeakVerdict::LikelyLeak, "{}", infer.text);
    let kept = infer.host.expect("judged").per_clip / MIB;
    assert!((kept - 3.0).abs() <= 1.0, "{}", infer.text);
    assert!(
        infer.text.contains("hands +20.0 MiB/clip to decode"),
        "{}",
        infer.text
    );
    let decode = by_stage(&verdicts, "decode");
    assert_eq!(decode.verdict, LeakVerdict::NoLeak, "{}", decode.text);
    assert!(
        decode
            .text
            .contains("that infer kept (a hand-off, on the next clip)")
    );
    assert_eq!(by_stage(&verdicts, "encode").verdict, LeakVerdict::NoLeak);
    let tree = tree.expect("tree");
    assert_eq!(tree.verdict, LeakVerdict::LikelyLeak, "{}", tree.text);
    assert!((tree.host.expect("judged").per_clip / MIB - 3.0).abs() <= 1.0);
    assert_eq!(tree.kept_by, ["infer"]);
    assert!(
        tree.text.starts_with("tree grows +3.0 MiB/clip"),
        "{}",
        tree.text
    );
    assert!(tree.text.ends_with(": infer keeps it"), "{}", tree.text);
}

#[test]
fn a_late_mark_that_splits_an_allocation_blames_no_one() {
    // load keeps nothing, work takes 50 MiB and frees it; the sample at work's mark catches
    // part of work's allocation, so load "retains" it and work "frees" it.
    let caught = [31.0, 44.0, 27.0, 38.0, 49.0, 35.0, 29.0];
    let rows: Vec<Vec<f64>> = caught.iter().map(|c| vec![*c, -c]).collect();
    let rows: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let runs = pipeline(&["load", "work"], &host_only(&rows), 0.0);
    let (verdicts, tree) = verdicts(&runs);
    for v in &verdicts {
        assert_eq!(v.verdict, LeakVerdict::NoLeak, "{}", v.text);
    }
    let tree = tree.expect("tree");
    assert_eq!(tree.verdict, LeakVerdict::NoLeak, "{}", tree.text);
    assert!(tree.text.ends_with(": no growth per clip"), "{}", tree.text);
}

#[test]
fn a_gpu_only_leak_has_a_gpu_verdict_and_host_stays_clean() {
    let clips: Vec<Vec<(f64, Option<f64>)>> = (0..6)
        .map(|_| vec![(0.0, Some(0.0)), (0.1, Some(16.0)), (-0.1, Some(0.0))])
        .collect();
    let runs = pipeline(&["decode", "infer", "encode"], &clips, 0.0);
    let (verdicts, tree) = verdicts(&runs);
    let infer = by_stage(&verdicts, "infer");
    assert_eq!(infer.verdict, LeakVerdict::NoLeak, "{}", infer.text);
    assert_eq!(
        infer.gpu_verdict,
        Some(LeakVerdict::LikelyLeak),
        "{}",
        infer.text
    );
    assert!(
        infer
            .text
            .contains("; GPU +16.0 MiB/clip ±0.0: likely leak"),
        "{}",
        infer.text
    );
    assert_eq!(
        by_stage(&verdicts, "decode").gpu_verdict,
        Some(LeakVerdict::NoLeak)
    );
    let tree = tree.expect("tree");
    assert_eq!(
        tree.gpu_verdict,
        Some(LeakVerdict::LikelyLeak),
        "{}",
        tree.text
    );
    assert_eq!(tree.kept_by, ["infer"], "{}", tree.text);
    // Without GPU data there is no GPU verdict at all.
    let runs = pipeline(&["a", "b"], &host_only(&[&[0.0, 0.0][..]; 4]), 0.0);
    let (verdicts, tree) = super::verdicts(&runs);
    assert!(
        verdicts
            .iter()
            .all(|v| v.gpu_verdict.is_none() && v.gpu.is_none())
    );
    assert!(tree.expect("tree").gpu_verdict.is_none());
}

#[test]
fn memory_kept_between_marks_is_the_trees_growth_not_a_stage() {
    let runs = pipeline(&["a", "b"], &host_only(&[&[0.0, 0.0][..]; 6]), 4.0);
    let (verdicts, tree) = verdicts(&runs);
    assert!(verdicts.iter().all(|v| v.verdict == LeakVerdict::NoLeak));
    let tree = tree.expect("tree");
    assert_eq!(tree.verdict, LeakVerdict::LikelyLeak, "{}", tree.text);
    assert!(
        tree.text.contains("no single stage keeps it"),
        "{}",
        tree.text
    );
}

#[test]
fn too_few_clips_and_no_runs() {
    let runs = pipeline(&["a"], &host_only(&[&[5.0], &[5.0]]), 0.0);
    let (verdicts, _) = verdicts(&runs);
    assert_eq!(verdicts[0].verdict, LeakVerdict::TooFewClips);
    assert_eq!(verdicts[0].text, "a: 2 run(s), too few clips to judge");
    assert_eq!(super::verdicts(&[]), (Vec::new(), None));
}
