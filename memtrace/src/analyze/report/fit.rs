//! The per-stage leak fit: least squares of a stage's cumulative retained memory against the
//! clip number. Its slope is the memory a stage keeps per clip; its r² says how steadily. A
//! one-off (warm-up, cache fill) flattens the cumulative line, so only steady retention scores.
use serde::Serialize;

use crate::host::units::MIB;

/// Below this slope (bytes per clip) nothing is called a leak.
pub const LEAK_MIN_BYTES_PER_CLIP: f64 = MIB as f64;
/// The fit must explain at least this much of the variance to say "likely leak".
pub const LEAK_MIN_R2: f64 = 0.8;
/// Below this r² a positive slope is noise, not a possible leak.
pub const POSSIBLE_MIN_R2: f64 = 0.5;
/// Fewer clips than this give no verdict.
pub const MIN_CLIPS: usize = 3;

/// A straight line fitted to points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Fit {
    /// Change of y per unit of x.
    pub slope: f64,
    /// Coefficient of determination, 0..1 (0 when y does not vary).
    pub r2: f64,
}

/// Least squares over (x, y); `None` for fewer than two points.
pub fn least_squares(points: &[(f64, f64)]) -> Option<Fit> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        0.0
    } else {
        (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
    };
    Some(Fit { slope, r2 })
}

/// Fits the cumulative sum of `retained` (one value per clip, in clip order) against the clip
/// number 1..n.
pub fn retained_fit(retained: &[f64]) -> Option<Fit> {
    let mut total = 0.0;
    let points: Vec<(f64, f64)> = retained
        .iter()
        .enumerate()
        .map(|(i, r)| {
            total += r;
            ((i + 1) as f64, total)
        })
        .collect();
    least_squares(&points)
}

/// What a fit means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakVerdict {
    /// Steady retention per clip.
    LikelyLeak,
    /// Retains on average, but irregularly.
    PossibleLeak,
    /// Gives back what it takes.
    NoLeak,
    /// Too few clips to tell.
    TooFewClips,
}

impl LeakVerdict {
    /// Judges a fit over `clips` clips.
    pub fn of(fit: Option<Fit>, clips: usize) -> Self {
        match fit {
            Some(_) | None if clips < MIN_CLIPS => Self::TooFewClips,
            Some(fit) if fit.slope >= LEAK_MIN_BYTES_PER_CLIP && fit.r2 >= LEAK_MIN_R2 => {
                Self::LikelyLeak
            }
            Some(fit) if fit.slope >= LEAK_MIN_BYTES_PER_CLIP && fit.r2 >= POSSIBLE_MIN_R2 => {
                Self::PossibleLeak
            }
            _ => Self::NoLeak,
        }
    }

    /// In words.
    pub fn words(self) -> &'static str {
        match self {
            Self::LikelyLeak => "likely leak",
            Self::PossibleLeak => "irregular growth: possible leak",
            Self::NoLeak => "no leak",
            Self::TooFewClips => "too few clips to judge",
        }
    }
}

#[cfg(test)]
mod tests {
    //! Steady retention, a freed peak, a one-off warm-up and noise.
    use super::*;

    const MIB: f64 = crate::host::units::MIB as f64;

    #[test]
    fn steady_retention_is_a_leak() {
        let fit = retained_fit(&[
            20.0 * MIB,
            19.5 * MIB,
            20.4 * MIB,
            20.0 * MIB,
            20.1 * MIB,
            19.9 * MIB,
        ])
        .expect("fit");
        assert!((fit.slope / MIB - 20.0).abs() < 0.5, "{fit:?}");
        assert!(fit.r2 > 0.99);
        assert_eq!(LeakVerdict::of(Some(fit), 6), LeakVerdict::LikelyLeak);
    }

    #[test]
    fn freed_memory_and_warm_up_are_not() {
        let freed =
            retained_fit(&[0.1 * MIB, -0.1 * MIB, 0.0, 0.2 * MIB, -0.2 * MIB, 0.0]).expect("fit");
        assert_eq!(LeakVerdict::of(Some(freed), 6), LeakVerdict::NoLeak);
        let warm_up = retained_fit(&[100.0 * MIB, 0.0, 0.0, 0.0, 0.0, 0.0]).expect("fit");
        assert!(warm_up.slope < LEAK_MIN_BYTES_PER_CLIP * 10.0);
        assert_ne!(LeakVerdict::of(Some(warm_up), 6), LeakVerdict::LikelyLeak);
        assert_eq!(LeakVerdict::of(Some(freed), 2), LeakVerdict::TooFewClips);
        assert_eq!(least_squares(&[(1.0, 1.0)]), None);
    }
}
