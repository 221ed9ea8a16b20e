//! Per-clip series of each corpus case, judged: a steady leak, a stage that keeps nothing but
//! is noisy, a warm-up on clip 1 (and over two clips), a leak that starts after clip 5, a small
//! leak inside a big, noisy process, and the old fit's false positive (a small steady bias).
use super::*;

const MIB: f64 = crate::host::units::MIB as f64;

fn mib(values: &[f64]) -> Vec<f64> {
    values.iter().map(|v| v * MIB).collect()
}

fn verdict(values: &[f64]) -> (LeakVerdict, Judgement) {
    let j = judge(&mib(values)).expect("enough clips");
    (LeakVerdict::of(Some(&j)), j)
}

fn near(j: &Judgement, want_mib: f64) -> bool {
    (j.per_clip / MIB - want_mib).abs() <= (0.2 * want_mib).max(1.0)
}

#[test]
fn steady_retention_is_a_likely_leak_with_its_interval() {
    let (v, j) = verdict(&[20.0, 19.5, 20.4, 20.0, 20.1, 19.9]);
    assert_eq!(v, LeakVerdict::LikelyLeak, "{j:?}");
    assert!(near(&j, 20.0));
    assert!(j.ci_low > 19.0 * MIB && j.ci_high < 21.0 * MIB, "{j:?}");
    assert_eq!((j.first, j.judged, j.clips), (1, 5, 6), "clip 1 is warm-up");
    assert!(j.effect > 10.0);
    assert_eq!(
        j.rate_words(),
        format!("+{:.1} MiB/clip ±0.4", j.per_clip / MIB)
    );
}

#[test]
fn a_stage_that_keeps_nothing_is_no_leak_however_noisy() {
    // The encode stage of the issue: a child takes 80 MiB and exits; the samples at its marks
    // land a little before or after, so what it "retains" scatters around zero.
    for series in [
        [3.4, -2.0, 1.5, 0.2, -1.1, 2.6],
        [0.1, -0.1, 0.0, 0.2, -0.2, 0.0],
        [12.0, -9.0, 4.0, -6.0, 8.0, -3.0],
    ] {
        let (v, j) = verdict(&series);
        assert_eq!(v, LeakVerdict::NoLeak, "{series:?}: {j:?}");
    }
}

#[test]
fn a_small_steady_bias_is_not_a_leak() {
    // The old fit of the cumulative sum called this "+0.6 MiB/clip (r² 0.99)": any steady bias
    // makes a straight cumulative line. Below 1 MiB/clip it is not a leak.
    let (v, j) = verdict(&[0.6, 0.55, 0.62, 0.58, 0.61, 0.6]);
    assert_eq!(v, LeakVerdict::NoLeak, "{j:?}");
}

#[test]
fn a_warm_up_cache_on_clip_one_is_left_out() {
    let (v, j) = verdict(&[100.0, 0.1, -0.1, 0.0, 0.2, 0.0]);
    assert_eq!(v, LeakVerdict::NoLeak, "{j:?}");
    assert_eq!(j.first, 1);
    assert!((j.before.expect("warm-up") / MIB - 100.0).abs() < 1e-6);
    assert!(
        j.span_words().contains("warm-up +100.0 MiB/clip"),
        "{}",
        j.span_words()
    );
    // A warm-up over two clips is a change of level: judged from clip 3.
    let (v, j) = verdict(&[100.0, 50.0, 0.0, 0.1, -0.1, 0.0, 0.0]);
    assert_eq!(v, LeakVerdict::NoLeak, "{j:?}");
    assert_eq!(j.first, 2);
}

#[test]
fn a_leak_that_starts_after_clip_five_is_found_at_its_rate() {
    let (v, j) = verdict(&[0.0, 0.1, -0.1, 0.0, 0.05, 3.0, 3.1, 2.9, 3.0, 3.05]);
    assert_eq!(v, LeakVerdict::LikelyLeak, "{j:?}");
    assert_eq!(j.first, 5, "judged from clip 6: {j:?}");
    assert!(near(&j, 3.0), "{j:?}");
    assert!(j.span_words().contains("clips 6–10 of 10; level before"));
}

#[test]
fn a_small_leak_inside_a_big_noisy_process_is_found() {
    // 3 MiB/clip kept by a 600 MiB process whose allocator moves ±0.5 MiB between marks.
    let (v, j) = verdict(&[40.0, 3.4, 2.6, 3.1, 2.7, 3.5, 2.8, 3.0]);
    assert_eq!(v, LeakVerdict::LikelyLeak, "{j:?}");
    assert!(near(&j, 3.0), "{j:?}");
    assert!(
        j.before.is_some(),
        "clip 1 (the process's start) is warm-up"
    );
}

#[test]
fn a_noisy_leak_is_possible_and_few_clips_are_too_few() {
    let (v, j) = verdict(&[5.0, 9.0, 1.5, 8.0, 2.0, 7.5, 1.0, 6.5, 2.5, 7.0]);
    assert_eq!(v, LeakVerdict::PossibleLeak, "{j:?}");
    assert!(judge(&mib(&[20.0, 20.0])).is_none());
    assert_eq!(LeakVerdict::of(None), LeakVerdict::TooFewClips);
    let (v, j) = verdict(&[20.0, 20.0, 20.0]);
    assert_eq!(
        (v, j.first),
        (LeakVerdict::LikelyLeak, 0),
        "3 clips: none left out"
    );
}

#[test]
fn t_quantiles() {
    assert!((t95(1) - 12.706).abs() < 1e-9);
    assert!((t95(4) - 2.776).abs() < 1e-9);
    assert!((t95(40) - 2.021).abs() < 0.003);
    assert!((t95(120) - 1.980).abs() < 0.003);
    assert!(t95(0).is_infinite());
}
