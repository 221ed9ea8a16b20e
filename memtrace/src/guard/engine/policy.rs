//! The guard's policy, pure: [`Policy::decide`] turns one round's [`Inputs`] (plain values the
//! engine read: usage, signals, the in-scope processes, the ranked candidates, the held trees)
//! and the time, passed in, into typed [`Intent`]s with structured reasons ([`Why`]). It reads
//! no file, sends no signal and never asks the clock: the engine's effects carry the intents
//! out (`super::effects`), and the scenario tests drive it with made-up inputs over made-up
//! time. It remembers only bookkeeping between rounds (timers, resume counts, what was said).
use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

pub(crate) use super::hold_mark::HOLD_SETTLE;
pub use super::why::{Grower, Why};
use super::{
    hold_mark::HoldMark,
    resume::{self, HeldTree, ResumeRules, ResumeVerdict},
    staging::{Band, Stager, Staging},
};
use crate::{
    collect::{
        model::{ProcSample, Snapshot},
        scope::Usage,
    },
    guard::{
        config::GuardConfig,
        level::{Assessment, Level, Signals, assess},
        victim::Candidate,
    },
    host::pidfd::ProcRef,
};

/// A held tree as the policy sees it, really held or held in a dry run.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// Its root.
    pub root: ProcRef,
    /// Its members' pids.
    pub pids: Vec<u32>,
    /// One line naming it.
    pub summary: String,
    /// Its growth when it was held, bytes/s.
    pub growth_bytes_per_s: f64,
    /// What it holds, bytes.
    pub held_bytes: u64,
    /// How it is held (`freeze`, `freezer`, `stop`, `dry run`).
    pub how: &'static str,
}

impl Held {
    /// A candidate about to be held (`how` is what the effects will say).
    fn of(c: &Candidate) -> Self {
        Self {
            root: c.root.clone(),
            pids: c.members.iter().map(|m| m.pid).collect(),
            summary: c.summary(),
            growth_bytes_per_s: c.growth_bytes_per_s,
            held_bytes: c.held_bytes,
            how: "",
        }
    }
}

/// What the engine read this round, as plain values.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The scope's usage.
    pub usage: Usage,
    /// The signals (used percent, PSI, forecast, sshd stalls, GPUs).
    pub signals: Signals,
    /// The scope's growth over the growth window, bytes/s.
    pub growth_bytes_per_s: f64,
    /// The latest snapshot (for the top growers at warn).
    pub snapshot: &'a Snapshot,
    /// The scope's pids (`None`: every process of the snapshot).
    pub scope_pids: Option<&'a HashSet<u32>>,
    /// The held trees, oldest first.
    pub held: Vec<Held>,
    /// The ranked victim candidates, read only when [`Policy::wants_candidates`] says so.
    pub candidates: Option<Vec<Candidate>>,
}

/// What to kill.
#[derive(Clone, Debug, PartialEq)]
pub enum KillTarget {
    /// The held tree (the oldest).
    Held(Held),
    /// A candidate, directly (suspension is off).
    Candidate(Candidate),
}

/// What the policy asks the effects to do (or, for reports, to log).
#[derive(Clone, Debug, PartialEq)]
pub enum Intent {
    /// Report the level change.
    Level {
        /// Why.
        why: Why,
    },
    /// Report the pressure and the top growers.
    Warn {
        /// Why.
        why: Why,
        /// Up to three, fastest first.
        growers: Vec<Grower>,
    },
    /// Reclaim caches (and temp files).
    Reclaim {
        /// Why.
        why: Why,
    },
    /// Hold `victim`.
    Suspend {
        /// The tree.
        victim: Candidate,
        /// The top five candidates, for the log.
        candidates: Vec<Candidate>,
        /// Why.
        why: Why,
    },
    /// Let a held tree go.
    Resume {
        /// The tree.
        tree: Held,
        /// Why.
        why: Why,
    },
    /// Report that a held tree waits (said once per tree).
    Wait {
        /// The tree.
        tree: Held,
        /// Why.
        why: Why,
    },
    /// Report that a held tree is kept held (said once per tree).
    Keep {
        /// The tree.
        tree: Held,
        /// Why.
        why: Why,
    },
    /// Kill.
    Kill {
        /// What.
        target: KillTarget,
        /// Why.
        why: Why,
    },
}

impl Intent {
    /// Its action, as the log and the trace name it.
    pub fn act(&self) -> super::Act {
        use super::Act;
        match self {
            Self::Level { .. } => Act::Level,
            Self::Warn { .. } => Act::Warn,
            Self::Reclaim { .. } => Act::Reclaim,
            Self::Suspend { .. } => Act::Suspend,
            Self::Resume { .. } => Act::Resume,
            Self::Wait { .. } => Act::Wait,
            Self::Keep { .. } => Act::Keep,
            Self::Kill { .. } => Act::Kill,
        }
    }
}

/// The policy: the configuration and what it remembers between rounds.
#[derive(Debug)]
pub struct Policy {
    config: GuardConfig,
    level: Level,
    last_reclaim: Option<Instant>,
    below_resume_since: Option<Instant>,
    kill_level_since: Option<Instant>,
    /// When the latest tree was held, with the scope's usage and the held trees' memory then.
    last_hold: Option<HoldMark>,
    /// How many times the guard resumed each tree (by root).
    resumes: HashMap<ProcRef, u32>,
    /// Held trees (by root) whose `wait` or `keep` was already said.
    told: HashSet<ProcRef>,
    /// Held trees (by root) the user asked to keep held.
    kept: HashSet<ProcRef>,
    /// Which tree is moved ahead to be held with one write.
    stager: Stager,
}

impl Policy {
    /// A policy at level ok, remembering nothing.
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config,
            level: Level::Ok,
            last_reclaim: None,
            below_resume_since: None,
            kill_level_since: None,
            last_hold: None,
            resumes: HashMap::new(),
            told: HashSet::new(),
            kept: HashSet::new(),
            stager: Stager::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The level of the latest round.
    pub fn level(&self) -> Level {
        self.level
    }

    /// How many times the guard resumed the tree rooted at `root`.
    pub fn resumes(&self, root: &ProcRef) -> u32 {
        self.resumes.get(root).copied().unwrap_or(0)
    }

    /// Whether the user asked to keep the tree rooted at `root` held.
    pub fn kept(&self, root: &ProcRef) -> bool {
        self.kept.contains(root)
    }

    /// The user asked to keep `root` held.
    pub fn keep_by_hand(&mut self, root: &ProcRef) {
        self.kept.insert(root.clone());
    }

    /// The user resumed or killed `root`: forget what was said and asked about it.
    pub fn released_by_hand(&mut self, root: &ProcRef) {
        self.kept.remove(root);
        self.told.remove(root);
    }

    /// Whether the round at `now` needs the ranked candidates (reading them costs a pass over
    /// /proc): to choose a victim, or to stage one ([`Policy::staging`]).
    pub fn wants_candidates(&self, signals: &Signals, now: Instant) -> bool {
        let level = self.assess(signals).level;
        level >= Level::Suspend
            || self
                .stager
                .wants_candidates(self.band(level, signals.used_percent), now)
    }

    /// Where usage lies for staging at `level` (never staged while suspension is off).
    fn band(&self, level: Level, used_percent: f64) -> Band {
        if !self.config.actions.suspend {
            return Band::Keep;
        }
        Band::of(
            used_percent,
            self.config.thresholds.warn,
            level >= Level::Warn,
            level >= Level::Suspend,
        )
    }

    /// The round's staging, after [`Policy::decide`] (at the level it found): which tree to
    /// move ahead so that holding it is one write, or to move back (see [`super::staging`]).
    pub fn staging(&mut self, inputs: &Inputs<'_>, now: Instant) -> Option<Staging> {
        let band = self.band(self.level, inputs.signals.used_percent);
        let held: Vec<ProcRef> = inputs.held.iter().map(|h| h.root.clone()).collect();
        self.stager
            .next(band, inputs.candidates.as_deref(), &held, now)
    }

    fn assess(&self, signals: &Signals) -> Assessment {
        assess(signals, &self.config.thresholds, &self.config.protect)
    }

    /// One round: the intents, in the order they are to be carried out.
    pub fn decide(&mut self, inputs: &Inputs<'_>, now: Instant) -> Vec<Intent> {
        let a = self.assess(&inputs.signals);
        let mut out = Vec::new();
        let previous = self.level;
        if a.level != previous {
            out.push(Intent::Level {
                why: Why::LevelChange {
                    from: previous,
                    to: a.level,
                },
            });
            if a.level >= Level::Warn && previous < Level::Warn {
                out.push(Intent::Warn {
                    why: Why::Pressure {
                        reasons: a.reasons.clone(),
                    },
                    growers: top_growers(inputs),
                });
            }
        }
        self.level = a.level;
        let mut held = inputs.held.clone();
        self.reclaim(now, &a, &mut out);
        self.resume(now, &a, inputs, &mut held, &mut out);
        if a.level >= Level::Suspend {
            let ranked = inputs.candidates.as_deref().unwrap_or_default();
            // Resume counts are kept for the trees that exist (held or candidates).
            self.resumes.retain(|root, _| {
                held.iter().any(|h| &h.root == root) || ranked.iter().any(|c| &c.root == root)
            });
            self.suspend(now, &a, inputs, ranked, &mut held, &mut out);
            self.kill(now, &a, ranked, &mut held, &mut out);
        } else {
            self.kill_level_since = None;
        }
        out
    }

    fn reclaim(&mut self, now: Instant, a: &Assessment, out: &mut Vec<Intent>) {
        let due = self
            .last_reclaim
            .is_none_or(|t| now.duration_since(t) >= self.config.actions.reclaim_every);
        if a.level < Level::Reclaim || !due {
            return;
        }
        self.last_reclaim = Some(now);
        out.push(Intent::Reclaim {
            why: Why::Pressure {
                reasons: a.reasons.clone(),
            },
        });
    }

    fn resume(
        &mut self,
        now: Instant,
        a: &Assessment,
        inputs: &Inputs<'_>,
        held: &mut Vec<Held>,
        out: &mut Vec<Intent>,
    ) {
        self.told
            .retain(|root| held.iter().any(|h| &h.root == root));
        self.kept
            .retain(|root| held.iter().any(|h| &h.root == root));
        if held.is_empty() {
            self.below_resume_since = None;
            return;
        }
        let t = &self.config.thresholds;
        let used_percent = inputs.signals.used_percent;
        if !(used_percent < t.resume && a.level < Level::Suspend) {
            self.below_resume_since = None;
            return;
        }
        let since = *self.below_resume_since.get_or_insert(now);
        if now.duration_since(since) < t.resume_after {
            return;
        }
        let rules = ResumeRules {
            hold: t.resume_hold,
            max_cycles: t.max_cycles,
            min_growth_bytes_per_s: self.config.victims.min_growth_bytes_per_s.max(1.0),
        };
        // Bytes left below the suspend line.
        let line = inputs.usage.limit_bytes as f64 * t.suspend / 100.0;
        let headroom_bytes = (line as u64).saturating_sub(inputs.usage.used_bytes);
        // Oldest first: the first tree that will hold is resumed, one per round.
        for index in 0..held.len() {
            let Some(tree) = held.get(index) else { break };
            let resumes = self.resumes(&tree.root);
            let verdict = resume::verdict(
                HeldTree {
                    growth_bytes_per_s: tree.growth_bytes_per_s,
                    resumes,
                    kept: self.kept.contains(&tree.root),
                },
                headroom_bytes,
                rules,
            );
            if !verdict.resumes() {
                if self.told.insert(tree.root.clone()) {
                    let why = Why::NotResumed {
                        used_percent,
                        resume_percent: t.resume,
                        headroom_bytes,
                        verdict,
                    };
                    let tree = tree.clone();
                    out.push(
                        if matches!(
                            verdict,
                            ResumeVerdict::KeepHeld { .. } | ResumeVerdict::KeptByHand
                        ) {
                            Intent::Keep { tree, why }
                        } else {
                            Intent::Wait { tree, why }
                        },
                    );
                }
                continue;
            }
            let root = tree.root.clone();
            self.below_resume_since = None;
            self.told.remove(&root);
            self.resumes.insert(root, resumes.saturating_add(1));
            let why = Why::WillHold {
                used_percent,
                resume_percent: t.resume,
                calm_for: t.resume_after,
                headroom_bytes,
                verdict,
            };
            out.push(Intent::Resume {
                tree: held.remove(index),
                why,
            });
            return;
        }
    }

    fn suspend(
        &mut self,
        now: Instant,
        a: &Assessment,
        inputs: &Inputs<'_>,
        ranked: &[Candidate],
        held: &mut Vec<Held>,
        out: &mut Vec<Intent>,
    ) {
        if !self.config.actions.suspend {
            return;
        }
        let min_growth = self.config.victims.min_growth_bytes_per_s.max(1.0);
        // With a tree already held, suspend another only while the scope keeps growing, and
        // only as the samples taken since the latest hold show it, less the held trees' own
        // growth: a held tree keeps its memory, so the level alone says nothing new, the
        // growth window still counts the growth of the tree just held, and a tree being frozen
        // can still grow until the freeze has settled (rounds can be 20 ms apart).
        if !held.is_empty() {
            if let Some(mark) = self
                .last_hold
                .as_mut()
                .filter(|m| !m.settled && now.duration_since(m.at) >= HOLD_SETTLE)
            {
                // Readings right after a hold still show the held tree's last growth (and
                // readings taken before it stopped): growth since the hold counts from here.
                *mark = HoldMark::at_reading(now, inputs.usage.used_bytes, held, ranked, true);
            }
            let since_hold = match &self.last_hold {
                Some(mark) => mark.growth_elsewhere(now, inputs.usage.used_bytes, ranked),
                None => inputs.growth_bytes_per_s,
            };
            if inputs.growth_bytes_per_s.min(since_hold) < min_growth {
                return;
            }
        }
        let at_kill = a.level >= Level::Kill && held.is_empty();
        let Some(victim) = ranked.iter().find(|c| {
            !held.iter().any(|h| h.root == c.root)
                && (c.growing || at_kill)
                && !c.members.is_empty()
        }) else {
            return;
        };
        held.push(Held::of(victim));
        self.stager.held(&victim.root);
        self.last_hold = Some(HoldMark::at_reading(
            now,
            inputs.usage.used_bytes,
            held,
            ranked,
            false,
        ));
        out.push(Intent::Suspend {
            victim: victim.clone(),
            candidates: ranked.iter().take(5).cloned().collect(),
            why: Why::Victim {
                reasons: a.reasons.clone(),
                victim: victim.summary(),
            },
        });
    }

    fn kill(
        &mut self,
        now: Instant,
        a: &Assessment,
        ranked: &[Candidate],
        held: &mut Vec<Held>,
        out: &mut Vec<Intent>,
    ) {
        if a.level < Level::Kill || !self.config.actions.kill {
            self.kill_level_since = None;
            return;
        }
        if held.is_empty() && !self.config.actions.suspend {
            // Suspension is off: kill the best candidate directly.
            if let Some(victim) = ranked.iter().find(|c| !c.members.is_empty()) {
                out.push(Intent::Kill {
                    target: KillTarget::Candidate(victim.clone()),
                    why: Why::Victim {
                        reasons: a.reasons.clone(),
                        victim: victim.summary(),
                    },
                });
            }
            return;
        }
        if held.is_empty() {
            return;
        }
        let since = *self.kill_level_since.get_or_insert(now);
        if now.duration_since(since) < self.config.thresholds.kill_after {
            return;
        }
        self.kill_level_since = None;
        out.push(Intent::Kill {
            target: KillTarget::Held(held.remove(0)),
            why: Why::NotRelieved {
                reasons: a.reasons.clone(),
                within: self.config.thresholds.kill_after,
            },
        });
    }
}

/// The three fastest growers in scope.
fn top_growers(inputs: &Inputs<'_>) -> Vec<Grower> {
    let mut growers: Vec<&ProcSample> = inputs
        .snapshot
        .procs
        .iter()
        .filter(|p| !p.exited && inputs.scope_pids.is_none_or(|set| set.contains(&p.pid)))
        .collect();
    growers.sort_by(|a, b| b.growth_bytes_per_s.total_cmp(&a.growth_bytes_per_s));
    growers
        .into_iter()
        .take(3)
        .map(|p| Grower {
            pid: p.pid,
            comm: p.comm.to_string(),
            growth_bytes_per_s: p.growth_bytes_per_s,
            rss_bytes: p.rss_bytes,
        })
        .collect()
}
