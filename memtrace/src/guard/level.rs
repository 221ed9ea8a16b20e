//! Pressure levels and how the current signals map onto them: a pure function of the inputs,
//! with a human-readable reason for every level it raises.
use std::fmt;

use serde::Serialize;

use crate::guard::config::{Protect, Thresholds};

/// The guard's escalation ladder, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing to do.
    #[default]
    Ok,
    /// Log the top growers.
    Warn,
    /// Free caches (and temp files).
    Reclaim,
    /// Stop the offending tree.
    Suspend,
    /// Kill the offending tree (if allowed).
    Kill,
}

impl Level {
    /// Numeric form for metrics.
    pub fn as_number(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Reclaim => "reclaim",
            Self::Suspend => "suspend",
            Self::Kill => "kill",
        })
    }
}

/// What the guard observed this round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals {
    /// Percent of the scope's memory in use.
    pub used_percent: f64,
    /// PSI memory some avg10.
    pub psi_some_avg10: Option<f64>,
    /// PSI memory full avg10.
    pub psi_full_avg10: Option<f64>,
    /// The kernel PSI trigger fired since the last round.
    pub psi_triggered: bool,
    /// Forecast seconds until the scope is full (None: not growing).
    pub exhaustion_s: Option<f64>,
    /// sshd or an ssh login shell stalled in direct reclaim since the last round.
    pub sshd_stalled: bool,
    /// GPUs at or above the GPU warn threshold, described with their top holders.
    pub gpu_over: Vec<String>,
}

/// The level and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assessment {
    /// Highest level any signal asks for.
    pub level: Level,
    /// One entry per signal that raised the level above ok.
    pub reasons: Vec<String>,
}

impl Assessment {
    fn raise(&mut self, level: Level, reason: String) {
        self.level = self.level.max(level);
        self.reasons.push(reason);
    }
}

/// Maps the signals onto a level.
pub fn assess(signals: &Signals, t: &Thresholds, protect: &Protect) -> Assessment {
    let mut out = Assessment::default();
    let used = signals.used_percent;
    for (level, threshold) in [
        (Level::Kill, t.kill),
        (Level::Suspend, t.suspend),
        (Level::Reclaim, t.reclaim),
        (Level::Warn, t.warn),
    ] {
        if used >= threshold {
            out.raise(level, format!("used {used:.1} % >= {level} {threshold} %"));
            break;
        }
    }
    if let Some(full) = signals.psi_full_avg10.filter(|&f| f >= t.psi_full_suspend) {
        out.raise(
            Level::Suspend,
            format!("PSI full avg10 {full:.1} % >= {} %", t.psi_full_suspend),
        );
    }
    if let Some(some) = signals.psi_some_avg10.filter(|&s| s >= t.psi_some_warn) {
        out.raise(
            Level::Warn,
            format!("PSI some avg10 {some:.1} % >= {} %", t.psi_some_warn),
        );
    }
    if signals.psi_triggered {
        out.raise(Level::Warn, "PSI trigger fired".to_owned());
    }
    let limit = t.exhaustion_suspend.as_secs_f64();
    if let Some(seconds) = signals
        .exhaustion_s
        .filter(|&s| s < limit && used >= t.warn)
    {
        out.raise(
            Level::Suspend,
            format!("memory full in {seconds:.1} s < {limit} s at this growth"),
        );
    }
    for gpu in &signals.gpu_over {
        out.raise(Level::Warn, gpu.clone());
    }
    if signals.sshd_stalled && protect.sshd_stall_escalates {
        out.raise(
            Level::Suspend,
            "sshd or an ssh login shell stalled in reclaim".to_owned(),
        );
    }
    out
}

/// Seconds until `used` reaches `limit` at `growth_bytes_per_s` (None unless growing).
pub fn time_to_exhaustion(used: u64, limit: u64, growth_bytes_per_s: f64) -> Option<f64> {
    (growth_bytes_per_s > 0.0).then(|| limit.saturating_sub(used) as f64 / growth_bytes_per_s)
}

#[cfg(test)]
mod tests {
    //! Each signal raises the level it should, with a reason.
    use super::*;
    use crate::guard::config::GuardConfig;

    fn assess_with(signals: Signals) -> Assessment {
        let config = GuardConfig::default_config().expect("default");
        assess(&signals, &config.thresholds, &config.protect)
    }

    #[test]
    fn used_percent_ladder() {
        for (used, level) in [
            (10.0, Level::Ok),
            (80.0, Level::Warn),
            (86.0, Level::Reclaim),
            (91.0, Level::Suspend),
            (99.0, Level::Kill),
        ] {
            let out = assess_with(Signals {
                used_percent: used,
                ..Signals::default()
            });
            assert_eq!(out.level, level, "used {used}");
            assert_eq!(out.reasons.is_empty(), level == Level::Ok);
        }
    }

    #[test]
    fn psi_forecast_and_sshd() {
        let psi = assess_with(Signals {
            psi_full_avg10: Some(25.0),
            ..Signals::default()
        });
        assert_eq!(psi.level, Level::Suspend);
        assert!(psi.reasons[0].contains("PSI full"));
        let fast = assess_with(Signals {
            used_percent: 82.0,
            exhaustion_s: Some(3.0),
            ..Signals::default()
        });
        assert_eq!(fast.level, Level::Suspend);
        let slow = assess_with(Signals {
            used_percent: 50.0,
            exhaustion_s: Some(3.0),
            ..Signals::default()
        });
        assert_eq!(
            slow.level,
            Level::Ok,
            "the forecast counts only at or above warn"
        );
        let sshd = assess_with(Signals {
            sshd_stalled: true,
            ..Signals::default()
        });
        assert_eq!(sshd.level, Level::Suspend);
        let trigger = assess_with(Signals {
            psi_triggered: true,
            ..Signals::default()
        });
        assert_eq!(trigger.level, Level::Warn);
        let gpu = assess_with(Signals {
            gpu_over: vec!["GPU 0 at 97.0 %".to_owned()],
            ..Signals::default()
        });
        assert_eq!(gpu.level, Level::Warn);
        assert_eq!(gpu.reasons, vec!["GPU 0 at 97.0 %".to_owned()]);
    }

    #[test]
    fn exhaustion_math() {
        assert_eq!(time_to_exhaustion(50, 150, 10.0), Some(10.0));
        assert_eq!(time_to_exhaustion(50, 150, 0.0), None);
        assert_eq!(time_to_exhaustion(200, 150, 10.0), Some(0.0));
    }
}
