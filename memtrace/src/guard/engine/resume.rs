//! When a held tree may be resumed: only when it will hold. Once the scope is calm, a held
//! tree is resumed when the headroom up to the suspend line would last it `resume_hold` at the
//! growth it had when it was suspended; a tree that was not growing is resumed at once (its
//! memory fits: it is already counted in the calm usage, so one is never starved); a tree the
//! guard has resumed `max_cycles` times stays held and the user is told. Pure: the engine
//! passes the numbers in.
use std::time::Duration;

/// What the engine knows of a held tree when it considers resuming it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeldTree {
    /// Its growth when it was suspended, bytes/s (the sum of its members' positive growth).
    pub growth_bytes_per_s: f64,
    /// How many times the guard has resumed it already.
    pub resumes: u32,
    /// The user asked to keep it held (`memtrace guard keep`).
    pub kept: bool,
}

/// The rules, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResumeRules {
    /// The headroom must last the tree this long at its pre-suspension growth.
    pub hold: Duration,
    /// Resumed this many times, a tree stays held (0: never resumed by the guard).
    pub max_cycles: u32,
    /// Below this growth (bytes/s) a tree was not growing when it was held.
    pub min_growth_bytes_per_s: f64,
}

/// Whether a held tree is resumed now, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResumeVerdict {
    /// Resume: at its growth the headroom lasts at least `hold`.
    WillHold {
        /// Seconds the headroom lasts at its growth.
        lasts_s: f64,
    },
    /// Resume: it was not growing; its memory is already counted in the calm usage.
    Fits,
    /// Not yet: it would be back at the suspend line this soon.
    TooSoon {
        /// Seconds the headroom lasts at its growth.
        lasts_s: f64,
    },
    /// Never by itself: resumed this many times already, each time it grew back.
    KeepHeld {
        /// Resumes so far.
        resumes: u32,
    },
    /// Never by itself: the user asked to keep it held.
    KeptByHand,
}

impl ResumeVerdict {
    /// Whether the tree is resumed.
    pub fn resumes(self) -> bool {
        matches!(self, Self::WillHold { .. } | Self::Fits)
    }
}

impl std::fmt::Display for ResumeVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WillHold { lasts_s } => {
                write!(f, "the headroom lasts it {lasts_s:.1} s at its growth")
            }
            Self::Fits => f.write_str("it was not growing: its memory fits"),
            Self::TooSoon { lasts_s } => write!(
                f,
                "at its growth it would be back at the suspend line in {lasts_s:.1} s"
            ),
            Self::KeepHeld { resumes } => write!(
                f,
                "resumed {resumes} time(s) already and each time it grew back: kept held until \
                 it is resumed or killed by hand"
            ),
            Self::KeptByHand => f.write_str("kept held by hand (memtrace guard keep)"),
        }
    }
}

/// The verdict for `tree` with `headroom_bytes` left below the suspend line.
pub fn verdict(tree: HeldTree, headroom_bytes: u64, rules: ResumeRules) -> ResumeVerdict {
    if tree.kept {
        return ResumeVerdict::KeptByHand;
    }
    if tree.resumes >= rules.max_cycles {
        return ResumeVerdict::KeepHeld {
            resumes: tree.resumes,
        };
    }
    let growth = tree.growth_bytes_per_s;
    if !growth.is_finite() || growth < rules.min_growth_bytes_per_s.max(f64::MIN_POSITIVE) {
        return ResumeVerdict::Fits;
    }
    let lasts_s = headroom_bytes as f64 / growth;
    if lasts_s >= rules.hold.as_secs_f64() {
        ResumeVerdict::WillHold { lasts_s }
    } else {
        ResumeVerdict::TooSoon { lasts_s }
    }
}

#[cfg(test)]
mod tests {
    //! The verdicts, table-driven, on made-up numbers.
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn resumes_only_when_it_will_hold_or_was_not_growing() {
        let rules = ResumeRules {
            hold: Duration::from_secs(30),
            max_cycles: 2,
            min_growth_bytes_per_s: MIB as f64,
        };
        let tree = |growth_mib: f64, resumes: u32| HeldTree {
            growth_bytes_per_s: growth_mib * MIB as f64,
            resumes,
            kept: false,
        };
        // (case, tree, headroom MiB, verdict)
        let cases = [
            (
                "runaway, headroom for 1 s",
                tree(100.0, 0),
                100,
                ResumeVerdict::TooSoon { lasts_s: 1.0 },
            ),
            (
                "slow leak, headroom for 60 s",
                tree(1.0, 0),
                60,
                ResumeVerdict::WillHold { lasts_s: 60.0 },
            ),
            (
                "exactly the hold time, resumed once before",
                tree(2.0, 1),
                60,
                ResumeVerdict::WillHold { lasts_s: 30.0 },
            ),
            (
                "not growing when held, however little room",
                tree(0.5, 0),
                0,
                ResumeVerdict::Fits,
            ),
            (
                "no headroom at all",
                tree(10.0, 0),
                0,
                ResumeVerdict::TooSoon { lasts_s: 0.0 },
            ),
            (
                "cycled max_cycles times: kept however much room",
                tree(0.0, 2),
                10_000,
                ResumeVerdict::KeepHeld { resumes: 2 },
            ),
        ];
        for (case, tree, headroom_mib, expected) in cases {
            let got = verdict(tree, headroom_mib * MIB, rules);
            assert_eq!(got, expected, "{case}");
            assert_eq!(
                got.resumes(),
                !matches!(
                    got,
                    ResumeVerdict::TooSoon { .. } | ResumeVerdict::KeepHeld { .. }
                ),
                "{case}"
            );
        }
        let kept = HeldTree {
            kept: true,
            ..tree(0.0, 0)
        };
        assert_eq!(
            verdict(kept, 10_000 * MIB, rules),
            ResumeVerdict::KeptByHand,
            "kept by hand: never resumed by the guard"
        );
        let never = ResumeRules {
            max_cycles: 0,
            ..rules
        };
        assert_eq!(
            verdict(tree(0.0, 0), 100 * MIB, never),
            ResumeVerdict::KeepHeld { resumes: 0 },
            "max_cycles 0: the guard never resumes by itself"
        );
    }
}
