//! The rungs of the ladder as the engine takes them: reclaim, resume (with hysteresis, and
//! only what will hold: [`super::resume`]), suspend the best candidate, kill as the last
//! resort — each returning its decisions.
use std::{collections::HashSet, time::Instant};

use super::{
    Act, Decision, Engine, TreeNote,
    resume::{self, HeldTree, ResumeRules, ResumeVerdict},
};
use crate::{
    collect::scope::Usage,
    guard::{
        freeze,
        level::{Assessment, Level},
        suspend::kill_fds,
        victim::Candidate,
    },
    host::{pidfd::ProcRef, units::mib},
};

/// A held tree as the resume rung and the control socket see it, really held or held in a
/// dry run.
pub(super) struct Held {
    pub(super) root: ProcRef,
    pub(super) pids: Vec<u32>,
    pub(super) summary: String,
    pub(super) growth_bytes_per_s: f64,
    pub(super) held_bytes: u64,
    pub(super) how: &'static str,
}

impl Held {
    /// The tree as the notices name it.
    pub(super) fn note(&self) -> TreeNote {
        TreeNote {
            id: self.root.pid,
            comm: self.root.comm.clone(),
            held_bytes: self.held_bytes,
            how: self.how,
        }
    }
}

impl Engine {
    /// The members of the tree that was suspended first (the next to kill).
    fn oldest_held_pids(&self) -> Vec<u32> {
        self.suspended
            .trees
            .first()
            .map(|t| t.record.members.iter().map(|m| m.pid).collect())
            .unwrap_or_default()
    }

    pub(super) fn decision(
        &self,
        a: &Assessment,
        action: Act,
        reason: String,
        pids: Vec<u32>,
        detail: Vec<String>,
    ) -> Decision {
        let reason = if self.dry_run && !matches!(action, Act::Level | Act::Warn) {
            format!("dry run, nothing sent: {reason}")
        } else {
            reason
        };
        Decision {
            level: a.level,
            action,
            reason,
            pids,
            detail,
            tree: None,
        }
    }

    pub(super) fn maybe_reclaim(
        &mut self,
        now: Instant,
        a: &Assessment,
        usage: &Usage,
        out: &mut Vec<Decision>,
    ) {
        let due = self
            .last_reclaim
            .is_none_or(|t| now.duration_since(t) >= self.config.actions.reclaim_every);
        if a.level < Level::Reclaim || !due {
            return;
        }
        self.last_reclaim = Some(now);
        let detail = self.reclaimer.run(
            &self.scope,
            usage,
            &self.config.actions,
            &self.proc_root,
            self.dry_run,
        );
        if detail.is_empty() {
            return;
        }
        self.state.counts.reclaim += 1;
        out.push(self.decision(a, Act::Reclaim, a.reasons.join("; "), Vec::new(), detail));
    }

    /// The held trees, oldest first (really held, then held in a dry run).
    pub(super) fn held_list(&self) -> Vec<Held> {
        let real = self.suspended.trees.iter().map(|t| Held {
            root: t.root.clone(),
            pids: t.record.members.iter().map(|m| m.pid).collect(),
            summary: t.summary.clone(),
            growth_bytes_per_s: t.growth_bytes_per_s,
            held_bytes: t.held_bytes,
            how: t.record.how.word(),
        });
        let dry = self.dry_held.iter().map(|c| Held {
            root: c.root.clone(),
            pids: c.members.iter().map(|m| m.pid).collect(),
            summary: c.summary(),
            growth_bytes_per_s: c.growth_bytes_per_s,
            held_bytes: c.held_bytes,
            how: "dry run",
        });
        real.chain(dry).collect()
    }

    /// The roots of the held trees.
    pub(super) fn held_roots(&self) -> HashSet<ProcRef> {
        self.held_list().into_iter().map(|h| h.root).collect()
    }

    /// Bytes left below the suspend line.
    fn headroom_bytes(&self) -> u64 {
        let line = self.state.limit_bytes as f64 * self.config.thresholds.suspend / 100.0;
        (line as u64).saturating_sub(self.state.used_bytes)
    }

    pub(super) fn maybe_resume(&mut self, now: Instant, a: &Assessment, out: &mut Vec<Decision>) {
        let held = self.held_list();
        self.told
            .retain(|root| held.iter().any(|h| &h.root == root));
        self.kept
            .retain(|root| held.iter().any(|h| &h.root == root));
        if held.is_empty() {
            self.below_resume_since = None;
            return;
        }
        let calm =
            self.state.used_percent < self.config.thresholds.resume && a.level < Level::Suspend;
        if !calm {
            self.below_resume_since = None;
            return;
        }
        let since = *self.below_resume_since.get_or_insert(now);
        if now.duration_since(since) < self.config.thresholds.resume_after {
            return;
        }
        let rules = ResumeRules {
            hold: self.config.thresholds.resume_hold,
            max_cycles: self.config.thresholds.max_cycles,
            min_growth_bytes_per_s: self.config.victims.min_growth_bytes_per_s.max(1.0),
        };
        let headroom = self.headroom_bytes();
        // Oldest first: the first tree that will hold is resumed, one per round.
        for (index, tree) in held.into_iter().enumerate() {
            let resumes = self.resumes.get(&tree.root).copied().unwrap_or(0);
            let verdict = resume::verdict(
                HeldTree {
                    growth_bytes_per_s: tree.growth_bytes_per_s,
                    resumes,
                    kept: self.kept.contains(&tree.root),
                },
                headroom,
                rules,
            );
            if !verdict.resumes() {
                if self.told.insert(tree.root.clone()) {
                    let action = if matches!(
                        verdict,
                        ResumeVerdict::KeepHeld { .. } | ResumeVerdict::KeptByHand
                    ) {
                        Act::Keep
                    } else {
                        Act::Wait
                    };
                    let reason = format!(
                        "used {:.1} % < resume {} %, {} MiB below the suspend line, but not \
                         resumed: {verdict}",
                        self.state.used_percent,
                        self.config.thresholds.resume,
                        mib(headroom),
                    );
                    let note = tree.note();
                    let mut d = self.decision(a, action, reason, tree.pids, vec![tree.summary]);
                    d.tree = Some(note);
                    out.push(d);
                }
                continue;
            }
            self.below_resume_since = None;
            self.told.remove(&tree.root);
            self.resumes
                .insert(tree.root.clone(), resumes.saturating_add(1));
            let reason = format!(
                "used {:.1} % < resume {} % for {:?}, {} MiB below the suspend line: {verdict}",
                self.state.used_percent,
                self.config.thresholds.resume,
                self.config.thresholds.resume_after,
                mib(headroom),
            );
            let real = self.suspended.trees.len();
            let note = tree.note();
            if index >= real {
                self.dry_held.remove(index - real);
                let mut d = self.decision(a, Act::Resume, reason, tree.pids, vec![tree.summary]);
                d.tree = Some(note);
                out.push(d);
            } else if let Some(line) = self.suspended.resume(index) {
                self.state.counts.resume += 1;
                let mut d = self.decision(a, Act::Resume, reason, tree.pids, vec![line]);
                d.tree = Some(note);
                out.push(d);
            }
            return;
        }
    }

    pub(super) fn maybe_suspend(
        &mut self,
        a: &Assessment,
        growth: f64,
        ranked: &[Candidate],
        usage: &Usage,
        out: &mut Vec<Decision>,
    ) {
        if !self.config.actions.suspend {
            return;
        }
        let min_growth = self.config.victims.min_growth_bytes_per_s.max(1.0);
        // With a tree already held, suspend another only while the scope keeps growing:
        // a held tree keeps its memory, so the level alone says nothing new.
        if self.held() > 0 && growth < min_growth {
            return;
        }
        let held = |c: &Candidate| {
            self.suspended.holds(&c.root) || self.dry_held.iter().any(|d| d.root == c.root)
        };
        let at_kill = a.level >= Level::Kill && self.held() == 0;
        let Some(victim) = ranked
            .iter()
            .find(|c| !held(c) && (c.growing || at_kill) && !c.members.is_empty())
        else {
            return;
        };
        let candidates: Vec<String> = ranked.iter().take(5).map(Candidate::summary).collect();
        let pids: Vec<u32> = victim.members.iter().map(|t| t.pid).collect();
        let reason = format!("{}; victim {}", a.reasons.join("; "), victim.summary());
        if self.dry_run {
            self.dry_held.push(victim.clone());
            out.push(self.decision(a, Act::Suspend, reason, pids, candidates));
            return;
        }
        let (placed, why_not) = match freeze::place(&self.proc_root, victim, self.guard_pid) {
            Ok(placed) => (Some(placed), None),
            Err(why) => (None, Some(format!("not frozen, SIGSTOP instead: {why}"))),
        };
        let mut note = None;
        let mut detail = match self.suspended.suspend(victim, placed, &reason) {
            Ok(line) => {
                self.state.counts.suspend += 1;
                if let Some(tree) = self.suspended.trees.last_mut() {
                    tree.why.clone_from(&reason);
                    note = Some(TreeNote {
                        id: victim.root.pid,
                        comm: victim.root.comm.clone(),
                        held_bytes: victim.held_bytes,
                        how: tree.record.how.word(),
                    });
                }
                vec![line]
            }
            Err(err) => vec![format!("suspend failed: {err}")],
        };
        detail.extend(why_not);
        detail.push(format!(
            "used {} MiB of {} MiB",
            mib(usage.used_bytes),
            mib(usage.limit_bytes)
        ));
        detail.extend(candidates.into_iter().map(|c| format!("candidate {c}")));
        let mut d = self.decision(a, Act::Suspend, reason, pids, detail);
        d.tree = note;
        out.push(d);
    }

    pub(super) fn maybe_kill(
        &mut self,
        now: Instant,
        a: &Assessment,
        ranked: &[Candidate],
        out: &mut Vec<Decision>,
    ) {
        if a.level < Level::Kill || !self.config.actions.kill {
            self.kill_level_since = None;
            return;
        }
        if self.held() == 0 && !self.config.actions.suspend {
            // Suspension is off: kill the best candidate directly.
            let Some(victim) = ranked.iter().find(|c| !c.members.is_empty()) else {
                return;
            };
            let pids = victim.members.iter().map(|t| t.pid).collect();
            let reason = format!("{}; victim {}", a.reasons.join("; "), victim.summary());
            let detail = if self.dry_run {
                Vec::new()
            } else {
                let fds: Vec<_> = victim
                    .members
                    .iter()
                    .filter_map(|t| t.open(&self.proc_root).ok())
                    .collect();
                self.state.counts.kill += 1;
                vec![kill_fds(&fds, self.config.actions.kill_grace)]
            };
            out.push(self.decision(a, Act::Kill, reason, pids, detail));
            return;
        }
        if self.held() == 0 {
            return;
        }
        let since = *self.kill_level_since.get_or_insert(now);
        if now.duration_since(since) < self.config.thresholds.kill_after {
            return;
        }
        self.kill_level_since = None;
        let reason = format!(
            "{}; suspension did not relieve pressure within {:?}",
            a.reasons.join("; "),
            self.config.thresholds.kill_after
        );
        if let Some(tree) = self.dry_held.pop() {
            let pids = tree.members.iter().map(|t| t.pid).collect();
            out.push(self.decision(a, Act::Kill, reason, pids, vec![tree.summary()]));
            return;
        }
        let pids = self.oldest_held_pids();
        let note = self.held_list().first().map(Held::note);
        if let Some(line) = self.suspended.kill(0, self.config.actions.kill_grace) {
            self.state.counts.kill += 1;
            let mut d = self.decision(a, Act::Kill, reason, pids, vec![line]);
            d.tree = note;
            out.push(d);
        }
    }
}
