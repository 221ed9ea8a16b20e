//! Growth "since the latest hold", which decides whether another tree is held: the scope's
//! usage and each held tree's memory at a mark ([`HoldMark`]) — the moment of the hold, then
//! the first reading [`HOLD_SETTLE`] later — against the readings that follow, less what the
//! held trees themselves still added.
use std::time::{Duration, Instant};

use super::policy::Held;
use crate::{guard::victim::Candidate, host::pidfd::ProcRef};

/// How long after a hold the scope's readings are taken as settled: the freeze or SIGSTOP has
/// taken hold, in-flight faults have completed, and the held tree has been read again. The
/// first round after it becomes the baseline of "growth since the hold".
pub(crate) const HOLD_SETTLE: Duration = Duration::from_millis(500);

/// The baseline against which growth "since the hold" is measured before another victim is
/// chosen: the moment the latest tree was held, then the first reading [`HOLD_SETTLE`] later.
#[derive(Debug, Clone)]
pub(super) struct HoldMark {
    /// When: the hold, or the settled reading.
    pub(super) at: Instant,
    /// Whether this is the settled reading (not the moment of the hold).
    pub(super) settled: bool,
    /// The scope's usage, bytes.
    used: u64,
    /// Every held tree's root (the new one included) and what it held, bytes.
    held: Vec<(ProcRef, u64)>,
}

impl HoldMark {
    /// A mark at this reading: the scope's usage and every held tree's memory (as read now, or
    /// as it was when held where this reading lacks it).
    pub(super) fn at_reading(
        at: Instant,
        used: u64,
        held: &[Held],
        ranked: &[Candidate],
        settled: bool,
    ) -> Self {
        let held = held
            .iter()
            .map(|h| {
                let now = held_bytes_now(ranked, &h.root).unwrap_or(h.held_bytes);
                (h.root.clone(), now)
            })
            .collect();
        Self {
            at,
            settled,
            used,
            held,
        }
    }

    /// The scope's growth since the mark, bytes/s, less what the held trees themselves still
    /// added (a freeze settles over a few ms to a round, and a stopped tree's in-flight faults
    /// complete): only growth elsewhere is a reason to hold another tree.
    pub(super) fn growth_elsewhere(&self, now: Instant, used: u64, ranked: &[Candidate]) -> f64 {
        if now <= self.at || !self.settled {
            return 0.0;
        }
        let held_growth: i64 = self
            .held
            .iter()
            .filter_map(|(root, then)| Some(held_bytes_now(ranked, root)? as i64 - *then as i64))
            .sum();
        let elsewhere = used as i64 - self.used as i64 - held_growth.max(0);
        elsewhere as f64 / now.duration_since(self.at).as_secs_f64()
    }
}

/// What the tree rooted at `root` holds in this round's reading, if it was read.
fn held_bytes_now(ranked: &[Candidate], root: &ProcRef) -> Option<u64> {
    ranked
        .iter()
        .find(|c| &c.root == root)
        .map(|c| c.held_bytes)
}
