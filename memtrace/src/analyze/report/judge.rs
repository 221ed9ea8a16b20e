//! The per-stage leak judgement, made on what a stage retained on each clip (not on the running
//! total of it, whose r² turns any small steady bias into a "leak"): the mean retained per clip
//! with a 95 % Student-t confidence interval, the noise (standard deviation between clips) and
//! the effect size (mean ÷ noise). Clip 1 is left out as warm-up once there are enough clips,
//! and a clear change of level (a later warm-up, a leak that starts after clip 5) moves the
//! judgement to the clips after it: the verdict describes what the stage does now.
use serde::Serialize;

use crate::host::units::{KIB, MIB};

/// Below this mean (bytes per clip) nothing is called a leak.
pub const LEAK_MIN_BYTES_PER_CLIP: f64 = MIB as f64;
/// Fewer judged clips than this give no verdict.
pub const MIN_CLIPS: usize = 3;
/// With at least this many clips, clip 1 is warm-up and not judged.
pub const WARM_UP_FROM_CLIPS: usize = 4;
/// A leak is *likely* when its mean is at least this many noise deviations.
pub const LIKELY_MIN_EFFECT: f64 = 2.0;
/// Noise below this (bytes) counts as this: page-exact repeats do not make infinite effects.
pub const NOISE_FLOOR: f64 = (64 * KIB) as f64;
/// A change of level must stand this many standard errors clear of the noise to be taken.
const CHANGE_MIN_T: f64 = 4.0;

/// What the per-clip values of one stage (or of the tree) say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Judgement {
    /// Mean retained bytes per judged clip.
    pub per_clip: f64,
    /// Lower end of the 95 % confidence interval of that mean.
    pub ci_low: f64,
    /// Upper end of the 95 % confidence interval of that mean.
    pub ci_high: f64,
    /// Standard deviation between the judged clips, bytes.
    pub noise: f64,
    /// `per_clip ÷ max(noise, NOISE_FLOOR)`.
    pub effect: f64,
    /// Clips judged.
    pub judged: usize,
    /// Index (from 0) of the first judged clip in the stage's own series.
    pub first: usize,
    /// Clips in the series.
    pub clips: usize,
    /// Mean of the clips left out before `first` (warm-up or a level before an onset).
    pub before: Option<f64>,
}

/// Student's t for a two-sided 95 % interval with `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        d if d <= TABLE.len() => TABLE[d - 1],
        // Within 0.002 of the exact quantile from 31 degrees of freedom on.
        d => 1.96 + 2.5 / d as f64,
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Sum of squared deviations from the mean.
fn sse(values: &[f64]) -> f64 {
    let m = mean(values);
    values.iter().map(|v| (v - m).powi(2)).sum()
}

/// Where the level of `values` changes, if it clearly does: the split (prefix ≥ 1 value,
/// suffix ≥ [`MIN_CLIPS`]) with the least squared error, taken when the two levels differ by at
/// least [`LEAK_MIN_BYTES_PER_CLIP`] and by [`CHANGE_MIN_T`] standard errors. One pass over
/// running sums (of values centred on their mean, so the squares lose no precision): linear in
/// the clips.
fn level_change(values: &[f64]) -> Option<usize> {
    let n = values.len();
    if n < MIN_CLIPS + 1 {
        return None;
    }
    let centre = mean(values);
    let (total, total_sq) = values.iter().fold((0.0, 0.0), |(s, q), v| {
        let d = v - centre;
        (s + d, q + d * d)
    });
    // Sum of squared deviations of a segment from its sums: Σd² − (Σd)²/n.
    let segment = |sum: f64, sq: f64, len: usize| (sq - sum * sum / len as f64).max(0.0);
    let (mut sum, mut sq) = (0.0, 0.0);
    let mut best: Option<(usize, f64, f64)> = None;
    for (k, v) in values.iter().enumerate().take(n - MIN_CLIPS) {
        let d = v - centre;
        sum += d;
        sq += d * d;
        let split = k + 1;
        let error = segment(sum, sq, split) + segment(total - sum, total_sq - sq, n - split);
        let step = (total - sum) / (n - split) as f64 - sum / split as f64;
        if best.is_none_or(|(_, e, _)| error < e) {
            best = Some((split, error, step.abs()));
        }
    }
    let (split, error, step) = best?;
    let df = n.saturating_sub(2).max(1) as f64;
    let spread = (error / df).sqrt().max(NOISE_FLOOR / 4.0);
    let se = spread * (1.0 / split as f64 + 1.0 / (n - split) as f64).sqrt();
    (step >= LEAK_MIN_BYTES_PER_CLIP && step / se >= CHANGE_MIN_T).then_some(split)
}

/// Judges a stage's retained bytes per clip, in clip order; `None` with fewer than
/// [`MIN_CLIPS`] clips.
pub fn judge(values: &[f64]) -> Option<Judgement> {
    if values.len() < MIN_CLIPS {
        return None;
    }
    let warm_up = usize::from(values.len() >= WARM_UP_FROM_CLIPS);
    let first = warm_up + level_change(&values[warm_up..]).unwrap_or(0);
    let judged = &values[first..];
    let n = judged.len();
    let per_clip = mean(judged);
    let noise = (sse(judged) / (n - 1) as f64).sqrt();
    let half = t95(n - 1) * noise / (n as f64).sqrt();
    Some(Judgement {
        per_clip,
        ci_low: per_clip - half,
        ci_high: per_clip + half,
        noise,
        effect: per_clip / noise.max(NOISE_FLOOR),
        judged: n,
        first,
        clips: values.len(),
        before: (first > 0).then(|| mean(&values[..first])),
    })
}

impl Judgement {
    /// Keeps memory per clip, and surely: mean ≥ the leak minimum, interval above zero.
    pub fn keeps(&self) -> bool {
        self.per_clip >= LEAK_MIN_BYTES_PER_CLIP && self.ci_low > 0.0
    }

    /// Gives memory back per clip, and surely (the mirror of [`Self::keeps`]).
    pub fn frees(&self) -> bool {
        self.per_clip <= -LEAK_MIN_BYTES_PER_CLIP && self.ci_high < 0.0
    }

    /// `+3.0 MiB/clip ±0.4`, the interval's half-width after the ±.
    pub fn rate_words(&self) -> String {
        format!(
            "{} MiB/clip ±{}",
            crate::host::units::signed_mib(self.per_clip),
            crate::host::units::mib_f64((self.ci_high - self.per_clip).max(0.0))
        )
    }

    /// `clips 2–6 of 6`, plus what was left out before them.
    pub fn span_words(&self) -> String {
        let mut words = format!("clips {}–{} of {}", self.first + 1, self.clips, self.clips);
        if let Some(before) = self.before {
            let why = if self.first == 1 {
                "warm-up"
            } else {
                "level before"
            };
            words.push_str(&format!(
                "; {why} {} MiB/clip",
                crate::host::units::signed_mib(before)
            ));
        }
        words
    }
}

/// What a judgement means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakVerdict {
    /// Keeps memory every clip, well clear of its noise.
    LikelyLeak,
    /// Keeps memory on average (interval above zero), but noisily.
    PossibleLeak,
    /// Gives back what it takes, or too little to tell from noise.
    NoLeak,
    /// Too few clips to tell.
    TooFewClips,
}

impl LeakVerdict {
    /// Judges a judgement.
    pub fn of(judgement: Option<&Judgement>) -> Self {
        match judgement {
            None => Self::TooFewClips,
            Some(j) if j.keeps() && j.effect >= LIKELY_MIN_EFFECT => Self::LikelyLeak,
            Some(j) if j.keeps() => Self::PossibleLeak,
            Some(_) => Self::NoLeak,
        }
    }

    /// Calls it a leak, likely or possible.
    pub fn is_leak(self) -> bool {
        matches!(self, Self::LikelyLeak | Self::PossibleLeak)
    }

    /// In words.
    pub fn words(self) -> &'static str {
        match self {
            Self::LikelyLeak => "likely leak",
            Self::PossibleLeak => "noisy growth: possible leak",
            Self::NoLeak => "no leak",
            Self::TooFewClips => "too few clips to judge",
        }
    }
}

#[cfg(test)]
mod tests;
