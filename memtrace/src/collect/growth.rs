//! Rates over a sliding time window: growth of resident memory, faults per second, reclaim
//! stall per second. Pure arithmetic, fed by the sampler.
use std::collections::VecDeque;

/// One observation of a process's cumulative values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Seconds on a monotonic clock.
    pub t: f64,
    /// Resident bytes.
    pub rss: f64,
    /// Footprint bytes (see [`crate::collect::model::footprint`]).
    pub footprint: f64,
    /// Cumulative faults.
    pub faults: f64,
    /// Cumulative reclaim stall, ns.
    pub stall_ns: f64,
}

/// Rates derived from the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Resident growth, bytes/s.
    pub growth_bytes_per_s: f64,
    /// Footprint growth, bytes/s.
    pub footprint_growth_bytes_per_s: f64,
    /// Faults/s.
    pub faults_per_s: f64,
    /// Reclaim stall, ms per s.
    pub stall_ms_per_s: f64,
}

/// A process's recent observations, oldest first: at most about [`STEPS_PER_SPAN`] per span
/// whatever the sampling interval, so a window costs the same at 20 ms as at 1 s.
#[derive(Clone, Debug, Default)]
pub struct Window {
    points: VecDeque<Point>,
}

/// How finely a window keeps its past: the newest observation always stands, and the one
/// before it is kept only when it is at least `span / STEPS_PER_SPAN` younger than its own
/// predecessor. The base of the window is then at most that much older than `span`.
pub const STEPS_PER_SPAN: f64 = 16.0;

impl Window {
    /// Adds `point` and drops observations older than needed: the newest point at or before
    /// `point.t - span` stays as the base of the window, and an observation closer than
    /// `span / STEPS_PER_SPAN` to the one kept before it is replaced by the newer one.
    pub fn push(&mut self, point: Point, span: f64) {
        let len = self.points.len();
        if len >= 2 {
            let step = span / STEPS_PER_SPAN;
            let before_last = self.points.get(len - 2).map(|p| p.t);
            if before_last.is_some_and(|t| point.t - t < step) {
                // The previous newest is superseded: it was within one step of its predecessor.
                self.points.pop_back();
            }
        }
        self.points.push_back(point);
        while self.points.len() > 2 && self.points.get(1).is_some_and(|p| p.t <= point.t - span) {
            self.points.pop_front();
        }
    }

    /// Rates between the oldest and the newest observation (zero with fewer than two, or no
    /// elapsed time). The elapsed time counts as at least `span`: a process born a few
    /// milliseconds ago with a few MiB mapped is not "growing at a GiB/s".
    pub fn rates(&self, span: f64) -> Rates {
        let (Some(first), Some(last)) = (self.points.front(), self.points.back()) else {
            return Rates::default();
        };
        if self.points.len() < 2 || last.t <= first.t {
            return Rates::default();
        }
        let dt = (last.t - first.t).max(span);
        Rates {
            growth_bytes_per_s: (last.rss - first.rss) / dt,
            footprint_growth_bytes_per_s: (last.footprint - first.footprint) / dt,
            faults_per_s: (last.faults - first.faults).max(0.0) / dt,
            stall_ms_per_s: (last.stall_ns - first.stall_ns).max(0.0) / 1e6 / dt,
        }
    }

    /// Number of observations kept.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether nothing was observed yet.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! Window trimming and rate arithmetic.
    use super::*;
    use crate::host::units::MIB;

    fn point(t: f64, rss: f64) -> Point {
        Point {
            t,
            rss,
            footprint: rss / 2.0,
            faults: t * 100.0,
            stall_ns: t * 1e6,
        }
    }

    #[test]
    fn steady_growth() {
        let mut window = Window::default();
        for i in 0..10 {
            window.push(point(f64::from(i), f64::from(i) * 1024.0), 3.0);
        }
        let rates = window.rates(3.0);
        assert!((rates.growth_bytes_per_s - 1024.0).abs() < 1e-9);
        assert!((rates.footprint_growth_bytes_per_s - 512.0).abs() < 1e-9);
        assert!((rates.faults_per_s - 100.0).abs() < 1e-9);
        assert!((rates.stall_ms_per_s - 1.0).abs() < 1e-9);
        // Base at t=6 (<= 9-3), plus 7, 8, 9.
        assert_eq!(window.len(), 4);
    }

    #[test]
    fn shrinking_and_degenerate() {
        let mut window = Window::default();
        assert_eq!(window.rates(1.0), Rates::default());
        window.push(point(1.0, 4096.0), 1.0);
        assert_eq!(window.rates(1.0), Rates::default());
        window.push(point(1.0, 2048.0), 1.0);
        assert_eq!(
            window.rates(1.0),
            Rates::default(),
            "no elapsed time, no rate"
        );
        window.push(point(3.0, 0.0), 1.0);
        assert!(window.rates(1.0).growth_bytes_per_s < 0.0);
    }

    #[test]
    fn newborn_rate_counts_at_least_one_span() {
        let mut window = Window::default();
        window.push(point(10.0, 0.0), 1.0);
        window.push(point(10.005, 5.0 * MIB as f64), 1.0);
        let rate = window.rates(1.0).growth_bytes_per_s;
        assert!(
            (rate - 5.0 * MIB as f64).abs() < 1.0,
            "5 MiB in 5 ms reads as 5 MiB/s, got {rate}"
        );
    }

    #[test]
    fn a_short_interval_keeps_a_bounded_window_with_the_same_rate() {
        let mut window = Window::default();
        for i in 0..1000 {
            // Every 10 ms for 10 s, 1 MiB/s.
            let t = f64::from(i) * 0.01;
            window.push(point(t, t * MIB as f64), 1.0);
        }
        assert!(
            window.len() <= STEPS_PER_SPAN as usize + 3,
            "at most one point per step: {}",
            window.len()
        );
        let rate = window.rates(1.0).growth_bytes_per_s;
        assert!((rate - MIB as f64).abs() < 1.0, "{rate}");
        let base = window.points.front().map(|p| p.t).unwrap_or_default();
        assert!(
            (9.99 - 1.0 - 1.0 / STEPS_PER_SPAN..=9.99 - 1.0).contains(&base),
            "the base is within one step before the span: {base}"
        );
    }
}
