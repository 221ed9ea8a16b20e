//! Which tree to stage, pure: near warn, the guard moves the likely victim ahead into a thawed
//! cgroup of its own (see [`crate::guard::freeze`]), so that holding it, when the time comes, is
//! one write instead of a move that waits for an RCU grace period (about 15 ms, while a fast
//! hog grows 15 MiB). [`Stager::next`] decides from plain values; the engine's effects move.
//!
//! - From [`NEAR_WARN_POINTS`] below warn on (where every round reads the scope's processes),
//!   the fastest growing candidate not held is staged, re-checked every [`REVIEW`]. A staged
//!   tree stays staged while it still grows; another is staged only when it no longer does.
//! - Once usage falls [`UNSTAGE_MARGIN`] points further and the level is below warn, the staged
//!   tree is moved back. Above suspend nothing changes: the hold itself is decided then.
use std::time::{Duration, Instant};

use crate::{guard::victim::Candidate, host::pidfd::ProcRef};

/// How many points below warn the guard reads the scope's processes and stages a tree.
pub const NEAR_WARN_POINTS: f64 = 10.0;

/// How many points below the staging band a staged tree is moved back (no back and forth).
pub const UNSTAGE_MARGIN: f64 = 5.0;

/// How often the staged tree is checked against the candidates (each check re-reads the
/// in-scope processes' identities).
pub const REVIEW: Duration = Duration::from_secs(1);

/// Where this round lies, for staging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Band {
    /// Near warn and below suspend: stage.
    Near,
    /// Far enough below warn: move the staged tree back.
    Away,
    /// In between, or at suspend and above: leave things as they are.
    Keep,
}

impl Band {
    /// The band of a round at `used_percent` with the warn threshold `warn`, and whether the
    /// level is at or above warn and at or above suspend.
    pub fn of(used_percent: f64, warn: f64, at_warn: bool, at_suspend: bool) -> Self {
        let near = warn - NEAR_WARN_POINTS;
        if at_suspend {
            Self::Keep
        } else if used_percent >= near {
            Self::Near
        } else if used_percent < near - UNSTAGE_MARGIN && !at_warn {
            Self::Away
        } else {
            Self::Keep
        }
    }
}

/// What the effects are asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Staging {
    /// Move this tree ahead (moving the one staged before back).
    Stage(Candidate),
    /// Move the staged tree back.
    Unstage,
}

/// What the staging remembers: the tree staged and when the candidates were last checked.
#[derive(Debug, Default)]
pub struct Stager {
    staged: Option<ProcRef>,
    reviewed: Option<Instant>,
}

impl Stager {
    /// Whether this round needs the ranked candidates for staging.
    pub fn wants_candidates(&self, band: Band, now: Instant) -> bool {
        band == Band::Near
            && (self.staged.is_none()
                || self
                    .reviewed
                    .is_none_or(|at| now.duration_since(at) >= REVIEW))
    }

    /// This round's staging, from the band, the ranked candidates (when read) and the roots of
    /// the held trees.
    pub fn next(
        &mut self,
        band: Band,
        ranked: Option<&[Candidate]>,
        held: &[ProcRef],
        now: Instant,
    ) -> Option<Staging> {
        match band {
            Band::Keep => None,
            Band::Away => {
                self.reviewed = None;
                self.staged.take().map(|_| Staging::Unstage)
            }
            Band::Near => {
                let ranked = ranked?;
                self.reviewed = Some(now);
                let growing =
                    |c: &&Candidate| c.growing && !c.members.is_empty() && !held.contains(&c.root);
                if let Some(staged) = &self.staged
                    && ranked.iter().filter(growing).any(|c| &c.root == staged)
                {
                    return None;
                }
                let top = ranked.iter().find(growing)?;
                self.staged = Some(top.root.clone());
                Some(Staging::Stage(top.clone()))
            }
        }
    }

    /// The tree rooted at `root` is being held: if it was the staged one, it is no longer.
    pub fn held(&mut self, root: &ProcRef) {
        if self.staged.as_ref() == Some(root) {
            self.staged = None;
            self.reviewed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The band, and which tree is staged, kept, replaced and moved back.
    use super::*;

    fn tree(pid: u32, growing: bool) -> Candidate {
        let root = ProcRef {
            pid,
            start_ticks: u64::from(pid),
            comm: format!("p{pid}"),
        };
        Candidate {
            root: root.clone(),
            members: vec![root],
            growth_bytes_per_s: if growing { 1e8 } else { 0.0 },
            rss_bytes: 0,
            held_bytes: 0,
            preferred: false,
            avoided: false,
            growing,
        }
    }

    #[test]
    fn the_band_starts_ten_points_below_warn_and_ends_five_points_lower() {
        assert_eq!(Band::of(70.0, 80.0, false, false), Band::Near);
        assert_eq!(Band::of(85.0, 80.0, true, false), Band::Near);
        assert_eq!(Band::of(92.0, 80.0, true, true), Band::Keep);
        assert_eq!(Band::of(67.0, 80.0, false, false), Band::Keep);
        assert_eq!(Band::of(64.9, 80.0, false, false), Band::Away);
        // PSI or a GPU can raise warn at low usage: nothing is moved back then.
        assert_eq!(Band::of(30.0, 80.0, true, false), Band::Keep);
    }

    #[test]
    fn the_fastest_grower_is_staged_and_kept_while_it_grows() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Stager::default();
        assert!(s.wants_candidates(Band::Near, at(0)));
        assert!(!s.wants_candidates(Band::Keep, at(0)));
        // Nothing grows yet (a process read once has no growth): nothing is staged.
        let still = [tree(1, false), tree(2, false)];
        assert_eq!(s.next(Band::Near, Some(&still), &[], at(0)), None);
        assert!(s.wants_candidates(Band::Near, at(20)), "asks again");
        let ranked = [tree(2, true), tree(1, false)];
        assert_eq!(
            s.next(Band::Near, Some(&ranked), &[], at(20)),
            Some(Staging::Stage(tree(2, true)))
        );
        assert!(!s.wants_candidates(Band::Near, at(500)), "until the review");
        assert!(s.wants_candidates(Band::Near, at(1020)));
        // Another grows faster, but the staged tree still grows: kept (no back and forth).
        let ranked = [tree(3, true), tree(2, true)];
        assert_eq!(s.next(Band::Near, Some(&ranked), &[], at(1020)), None);
        // It stopped growing: the grower is staged instead.
        let ranked = [tree(3, true), tree(2, false)];
        assert_eq!(
            s.next(Band::Near, Some(&ranked), &[], at(2020)),
            Some(Staging::Stage(tree(3, true)))
        );
        // No candidates read this round: nothing changes.
        assert_eq!(s.next(Band::Near, None, &[], at(2040)), None);
        assert_eq!(s.next(Band::Keep, Some(&ranked), &[], at(2060)), None);
        assert_eq!(
            s.next(Band::Away, None, &[], at(3000)),
            Some(Staging::Unstage)
        );
        assert_eq!(s.next(Band::Away, None, &[], at(3020)), None, "said once");
    }

    #[test]
    fn a_held_tree_is_never_staged_and_holding_the_staged_one_forgets_it() {
        let t0 = Instant::now();
        let mut s = Stager::default();
        let ranked = [tree(2, true), tree(3, true)];
        let held = [tree(2, true).root];
        assert_eq!(
            s.next(Band::Near, Some(&ranked), &held, t0),
            Some(Staging::Stage(tree(3, true)))
        );
        s.held(&tree(2, true).root);
        assert!(
            !s.wants_candidates(Band::Near, t0),
            "another's hold changes nothing"
        );
        s.held(&tree(3, true).root);
        assert!(
            s.wants_candidates(Band::Near, t0),
            "nothing staged any more"
        );
        assert_eq!(
            s.next(Band::Away, None, &[], t0),
            None,
            "nothing to move back"
        );
    }
}
