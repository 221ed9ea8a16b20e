//! When the guard's next round comes: when the memory left below the suspend threshold could be
//! used up by a process growing at the configured fill rate (earlyoom paces its polling the same
//! way), within `[interval_pressure, interval_idle]`. Far from the thresholds a round costs one
//! read of the scope's usage, so a large scope is read once a second; a small one, or one close
//! to suspend, is read as often as the fastest hog could need. Pure: the engine passes the
//! latest usage.
use std::time::Duration;

use crate::guard::config::Sampling;

/// The interval until the next round, for `used_bytes` of `limit_bytes` in use and the suspend
/// threshold at `suspend_percent`.
pub fn next_interval(
    sampling: &Sampling,
    suspend_percent: f64,
    used_bytes: u64,
    limit_bytes: u64,
) -> Duration {
    let suspend_at = limit_bytes as f64 * suspend_percent / 100.0;
    let headroom = (suspend_at - used_bytes as f64).max(0.0);
    let lasts_s = headroom / sampling.fill_rate_bytes_per_s;
    Duration::try_from_secs_f64(lasts_s)
        .unwrap_or(sampling.interval_idle)
        .clamp(sampling.interval_pressure, sampling.interval_idle)
}

#[cfg(test)]
mod tests {
    //! The interval against the headroom, with the default sampling settings (1 s to 20 ms,
    //! 6 GiB/s).
    use super::*;
    use crate::{guard::config::GuardConfig, host::units::MIB};

    const GIB: u64 = 1 << 30;

    fn interval(used: u64, limit: u64) -> Duration {
        let config = GuardConfig::default_config().expect("default config");
        next_interval(&config.sampling, config.thresholds.suspend, used, limit)
    }

    #[test]
    fn a_large_idle_scope_is_read_once_a_second() {
        // A 24 GiB machine at 10 %: 19 GiB below suspend lasts 3 s at 6 GiB/s.
        assert_eq!(interval(24 * GIB / 10, 24 * GIB), Duration::from_secs(1));
    }

    #[test]
    fn a_small_scope_is_read_as_often_as_its_headroom_needs() {
        // A 512 MiB container at 10 %: 410 MiB below suspend lasts 67 ms at 6 GiB/s.
        let got = interval(51 * MIB, 512 * MIB);
        assert!(
            (Duration::from_millis(60)..=Duration::from_millis(70)).contains(&got),
            "{got:?}"
        );
        // The closer to suspend, the sooner.
        assert!(interval(400 * MIB, 512 * MIB) < got);
    }

    #[test]
    fn at_or_above_suspend_and_before_the_first_reading_the_shortest() {
        assert_eq!(interval(470 * MIB, 512 * MIB), Duration::from_millis(20));
        assert_eq!(interval(600 * MIB, 512 * MIB), Duration::from_millis(20));
        assert_eq!(interval(0, 0), Duration::from_millis(20));
    }

    #[test]
    fn the_interval_shrinks_as_usage_grows() {
        let limit = 4 * GIB;
        let mut previous = Duration::MAX;
        for percent in (0..=100).step_by(5) {
            let got = interval(limit * percent / 100, limit);
            assert!(got <= previous, "{percent} %: {got:?} after {previous:?}");
            previous = got;
        }
    }
}
