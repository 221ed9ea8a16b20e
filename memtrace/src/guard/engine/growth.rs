//! The scope's growth rate over the growth window, the forecast's input: the first and last
//! readings of the window. A hold restarts the window once the hold has settled: readings from
//! before it (and the held tree's last faults while it was being frozen or stopped) are the
//! held tree's growth, which no longer fills the scope.
use std::{collections::VecDeque, time::Instant};

/// Readings of the scope's usage over the window.
#[derive(Debug, Default)]
pub struct GrowthWindow {
    readings: VecDeque<(Instant, u64)>,
    /// Readings before this are dropped (a hold is settling).
    ignore_until: Option<Instant>,
}

impl GrowthWindow {
    /// Adds the reading `used` at `now` and returns the growth over the `window`, bytes/s (0
    /// with fewer than two readings).
    pub fn push(&mut self, now: Instant, used: u64, window: std::time::Duration) -> f64 {
        if self.ignore_until.is_some_and(|until| now < until) {
            return 0.0;
        }
        self.ignore_until = None;
        self.readings.push_back((now, used));
        while self.readings.len() > 2
            && self
                .readings
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            self.readings.pop_front();
        }
        match (self.readings.front(), self.readings.back()) {
            (Some((t0, u0)), Some((t1, u1))) if t1 > t0 => {
                (*u1 as f64 - *u0 as f64) / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Forgets every reading and ignores those before `settled` (a tree was just held).
    pub fn restart(&mut self, settled: Instant) {
        self.readings.clear();
        self.ignore_until = Some(settled);
    }
}

#[cfg(test)]
mod tests {
    //! The rate spans the window; a restart forgets the held tree's growth and the readings
    //! taken while the hold settled.
    use std::time::Duration;

    use super::*;

    const MIB: u64 = 1 << 20;
    const WINDOW: Duration = Duration::from_secs(5);

    #[test]
    fn the_rate_spans_the_window() {
        let t0 = Instant::now();
        let mut w = GrowthWindow::default();
        assert_eq!(w.push(t0, 100 * MIB, WINDOW), 0.0, "one reading: no rate");
        let rate = w.push(t0 + Duration::from_secs(1), 150 * MIB, WINDOW);
        assert_eq!(rate, 50.0 * MIB as f64);
        // 10 s later the first reading has left the window.
        w.push(t0 + Duration::from_secs(9), 150 * MIB, WINDOW);
        let rate = w.push(t0 + Duration::from_secs(11), 150 * MIB, WINDOW);
        assert_eq!(rate, 0.0);
    }

    #[test]
    fn a_hold_restarts_the_window_once_settled() {
        let t0 = Instant::now();
        let mut w = GrowthWindow::default();
        w.push(t0, 100 * MIB, WINDOW);
        let before = w.push(t0 + Duration::from_secs(1), 200 * MIB, WINDOW);
        assert_eq!(before, 100.0 * MIB as f64, "the hog's growth");
        let held = t0 + Duration::from_secs(1);
        w.restart(held + Duration::from_millis(500));
        // The frozen hog's in-flight faults, 20 ms later: not a rate.
        assert_eq!(
            w.push(held + Duration::from_millis(20), 208 * MIB, WINDOW),
            0.0
        );
        assert_eq!(
            w.push(held + Duration::from_millis(500), 208 * MIB, WINDOW),
            0.0,
            "the settled reading starts the window"
        );
        // Nothing else grows: no forecast from the hog's old growth.
        assert_eq!(
            w.push(held + Duration::from_secs(1), 208 * MIB, WINDOW),
            0.0
        );
        // Something else grows: measured from the settled reading.
        let rate = w.push(held + Duration::from_millis(1500), 218 * MIB, WINDOW);
        assert_eq!(rate, 10.0 * MIB as f64);
    }
}
