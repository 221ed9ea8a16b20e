//! Why the guard's policy decided what it did: the typed reasons of an intent ([`Why`]) and the
//! growers it names at warn ([`Grower`]), with the numbers they carry; each renders to the log
//! line's wording.
use std::time::Duration;

use super::resume::ResumeVerdict;
use crate::{
    guard::level::Level,
    host::units::{mib, signed_mib},
};

/// One of the top growers named at warn.
#[derive(Clone, Debug, PartialEq)]
pub struct Grower {
    /// Its pid.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Its growth, bytes/s.
    pub growth_bytes_per_s: f64,
    /// Its resident set, bytes.
    pub rss_bytes: u64,
}

impl std::fmt::Display for Grower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) {} MiB/s rss {} MiB",
            self.pid,
            self.comm,
            signed_mib(self.growth_bytes_per_s),
            mib(self.rss_bytes)
        )
    }
}

/// Why the policy asks for something, with its numbers; renders to the log's reason.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// The level changed.
    LevelChange {
        /// Before.
        from: Level,
        /// Now.
        to: Level,
    },
    /// The signals that raised the level.
    Pressure {
        /// One per signal.
        reasons: Vec<String>,
    },
    /// The signals, and the victim chosen.
    Victim {
        /// One per signal.
        reasons: Vec<String>,
        /// The victim, one line.
        victim: String,
    },
    /// The kill level lasted `within` with a tree held.
    NotRelieved {
        /// One per signal.
        reasons: Vec<String>,
        /// The configured `kill_after`.
        within: Duration,
    },
    /// Calm long enough, and the tree will hold: resumed.
    WillHold {
        /// Used percent.
        used_percent: f64,
        /// The resume threshold, percent.
        resume_percent: f64,
        /// The configured `resume_after`.
        calm_for: Duration,
        /// Bytes below the suspend line.
        headroom_bytes: u64,
        /// The verdict.
        verdict: ResumeVerdict,
    },
    /// Calm long enough, but the tree is not resumed.
    NotResumed {
        /// Used percent.
        used_percent: f64,
        /// The resume threshold, percent.
        resume_percent: f64,
        /// Bytes below the suspend line.
        headroom_bytes: u64,
        /// The verdict.
        verdict: ResumeVerdict,
    },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LevelChange { from, to } => write!(f, "{from} → {to}"),
            Self::Pressure { reasons } => f.write_str(&reasons.join("; ")),
            Self::Victim { reasons, victim } => {
                write!(f, "{}; victim {victim}", reasons.join("; "))
            }
            Self::NotRelieved { reasons, within } => write!(
                f,
                "{}; suspension did not relieve pressure within {within:?}",
                reasons.join("; ")
            ),
            Self::WillHold {
                used_percent,
                resume_percent,
                calm_for,
                headroom_bytes,
                verdict,
            } => write!(
                f,
                "used {used_percent:.1} % < resume {resume_percent} % for {calm_for:?}, {} MiB \
                 below the suspend line: {verdict}",
                mib(*headroom_bytes)
            ),
            Self::NotResumed {
                used_percent,
                resume_percent,
                headroom_bytes,
                verdict,
            } => write!(
                f,
                "used {used_percent:.1} % < resume {resume_percent} %, {} MiB below the suspend \
                 line, but not resumed: {verdict}",
                mib(*headroom_bytes)
            ),
        }
    }
}
