//! The engine's effects: carries the policy's [`Intent`]s out — reclaim, hold (freeze or
//! SIGSTOP through [`crate::guard::freeze`] and [`SuspendedSet`], which keeps the state file),
//! resume, kill — or, in a dry run, only pretends to hold (remembering the candidates). Each
//! intent comes back as one [`Decision`] with a typed [`Outcome`]: the same value goes to the
//! log, the trace's guard events, the notices and the metrics' counters.
use std::path::{Path, PathBuf};

use super::{
    Act, ActionCounts, Decision, Outcome, TreeNote,
    policy::{Held, Intent, KillTarget},
    staging::Staging,
};
use crate::{
    collect::scope::{Scope, Usage},
    guard::{
        config::Actions,
        freeze,
        level::Level,
        reclaim::Reclaimer,
        state::StateFile,
        suspend::{SuspendedSet, kill_fds},
        victim::Candidate,
    },
    host::{pidfd::ProcRef, units::mib},
};

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

/// What carries the intents out, and what it holds.
#[derive(Debug)]
pub(super) struct Effects {
    scope: Scope,
    proc_root: PathBuf,
    dry_run: bool,
    guard_pid: u32,
    /// Trees held for real.
    pub(super) suspended: SuspendedSet,
    /// Dry run: the trees we would hold.
    pub(super) dry_held: Vec<Candidate>,
    /// The reclaim rung, remembering the steps that cannot work here.
    reclaimer: Reclaimer,
    /// How many times each action was taken.
    pub(super) counts: ActionCounts,
}

/// How a held tree is let go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Release {
    Resume,
    Kill,
}

impl Release {
    /// The decision it is.
    pub(super) fn act(self) -> Act {
        match self {
            Self::Resume => Act::Resume,
            Self::Kill => Act::Kill,
        }
    }

    /// What was done, for a reply when the action says nothing itself.
    fn done(self) -> &'static str {
        match self {
            Self::Resume => "resumed",
            Self::Kill => "killed",
        }
    }
}

impl Effects {
    pub(super) fn new(
        scope: Scope,
        proc_root: &Path,
        state_file: Option<StateFile>,
        dry_run: bool,
    ) -> Self {
        Self {
            scope,
            proc_root: proc_root.to_owned(),
            dry_run,
            guard_pid: std::process::id(),
            suspended: SuspendedSet::new(state_file, proc_root),
            dry_held: Vec::new(),
            reclaimer: Reclaimer::default(),
            counts: ActionCounts::default(),
        }
    }

    pub(super) fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    pub(super) fn guard_pid(&self) -> u32 {
        self.guard_pid
    }

    pub(super) fn dry_run(&self) -> bool {
        self.dry_run
    }

    #[cfg(test)]
    pub(super) fn pretend(&mut self, proc_root: &Path, guard_pid: u32) {
        self.proc_root = proc_root.to_owned();
        self.guard_pid = guard_pid;
    }

    /// How many trees are held (for real or in a dry run).
    pub(super) fn held_count(&self) -> usize {
        self.suspended.trees.len() + self.dry_held.len()
    }

    /// The held trees, oldest first (really held, then held in a dry run).
    pub(super) fn held(&self) -> Vec<Held> {
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

    /// Where the tree rooted at `root` is among the held ones.
    fn index_of(&self, root: &ProcRef) -> Option<usize> {
        self.held().iter().position(|h| &h.root == root)
    }

    /// A decision; a dry run's actions say that nothing was sent.
    pub(super) fn decision(
        &self,
        level: Level,
        action: Act,
        reason: String,
        pids: Vec<u32>,
        detail: Vec<String>,
        outcome: Outcome,
    ) -> Decision {
        let reason = if self.dry_run && !matches!(action, Act::Level | Act::Warn) {
            format!("dry run, nothing sent: {reason}")
        } else {
            reason
        };
        Decision {
            level,
            action,
            reason,
            pids,
            detail,
            tree: None,
            outcome,
        }
    }

    /// Carries `intent` out at `level`; `None` when there was nothing to report (a reclaim
    /// pass with nothing to do, a tree no longer held).
    pub(super) fn carry(
        &mut self,
        intent: Intent,
        level: Level,
        usage: &Usage,
        actions: &Actions,
    ) -> Option<Decision> {
        let act = intent.act();
        let acted = if self.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Done
        };
        match intent {
            Intent::Level { why } => Some(self.decision(
                level,
                act,
                why.to_string(),
                Vec::new(),
                Vec::new(),
                Outcome::Reported,
            )),
            Intent::Warn { why, growers } => Some(self.decision(
                level,
                act,
                why.to_string(),
                Vec::new(),
                growers.iter().map(ToString::to_string).collect(),
                Outcome::Reported,
            )),
            Intent::Reclaim { why } => {
                let detail =
                    self.reclaimer
                        .run(&self.scope, usage, actions, &self.proc_root, self.dry_run);
                if detail.is_empty() {
                    return None;
                }
                self.counts.reclaim += 1;
                Some(self.decision(level, act, why.to_string(), Vec::new(), detail, acted))
            }
            Intent::Wait { tree, why } | Intent::Keep { tree, why } => {
                let mut d = self.decision(
                    level,
                    act,
                    why.to_string(),
                    tree.pids.clone(),
                    vec![tree.summary.clone()],
                    Outcome::Reported,
                );
                d.tree = Some(tree.note());
                Some(d)
            }
            Intent::Suspend {
                victim,
                candidates,
                why,
            } => Some(self.suspend(level, &victim, &candidates, why.to_string(), usage)),
            Intent::Resume { tree, why }
            | Intent::Kill {
                target: KillTarget::Held(tree),
                why,
            } => {
                let release = if act == Act::Kill {
                    Release::Kill
                } else {
                    Release::Resume
                };
                let index = self.index_of(&tree.root)?;
                let line = self.release(index, release, actions);
                let mut d = self.decision(
                    level,
                    act,
                    why.to_string(),
                    tree.pids.clone(),
                    vec![line.unwrap_or_else(|| tree.summary.clone())],
                    acted,
                );
                d.tree = Some(tree.note());
                Some(d)
            }
            Intent::Kill {
                target: KillTarget::Candidate(victim),
                why,
            } => {
                let pids = victim.members.iter().map(|t| t.pid).collect();
                let detail = if self.dry_run {
                    Vec::new()
                } else {
                    let fds: Vec<_> = victim
                        .members
                        .iter()
                        .filter_map(|t| t.open(&self.proc_root).ok())
                        .collect();
                    self.counts.kill += 1;
                    vec![kill_fds(&fds, actions.kill_grace)]
                };
                Some(self.decision(level, act, why.to_string(), pids, detail, acted))
            }
        }
    }

    /// Holds `victim` (a dry run only remembers it).
    fn suspend(
        &mut self,
        level: Level,
        victim: &Candidate,
        candidates: &[Candidate],
        reason: String,
        usage: &Usage,
    ) -> Decision {
        let summaries: Vec<String> = candidates.iter().map(Candidate::summary).collect();
        let pids: Vec<u32> = victim.members.iter().map(|t| t.pid).collect();
        if self.dry_run {
            self.dry_held.push(victim.clone());
            return self.decision(
                level,
                Act::Suspend,
                reason,
                pids,
                summaries,
                Outcome::DryRun,
            );
        }
        let mut notes = Vec::new();
        let staged =
            self.suspended.take_staged(&victim.root).and_then(|placed| {
                match freeze::adopt(&self.proc_root, &placed, victim) {
                    Ok(()) => Some(placed),
                    Err(why) => {
                        notes.push(format!("its staged cgroup did not do: {why}"));
                        if let Some(origin) = &placed.moved_from {
                            notes.push(freeze::move_back_staged(
                                &placed.cgroup,
                                origin,
                                &victim.summary(),
                            ));
                        }
                        None
                    }
                }
            });
        let placed = match staged {
            Some(placed) => Ok(placed),
            None => freeze::place(&self.proc_root, victim, self.guard_pid),
        };
        let (placed, why_not) = match placed {
            Ok(placed) => (Some(placed), None),
            Err(why) => (None, Some(format!("not frozen, SIGSTOP instead: {why}"))),
        };
        let mut note = None;
        let (mut detail, outcome) = match self.suspended.suspend(victim, placed, &reason) {
            Ok(line) => {
                self.counts.suspend += 1;
                if let Some(tree) = self.suspended.trees.last_mut() {
                    tree.why.clone_from(&reason);
                    note = Some(TreeNote {
                        how: tree.record.how.word(),
                        ..self.note_of(victim)
                    });
                }
                (vec![line], Outcome::Done)
            }
            Err(err) => (vec![format!("suspend failed: {err}")], Outcome::Failed),
        };
        detail.extend(why_not);
        detail.extend(notes);
        detail.push(format!(
            "used {} MiB of {} MiB",
            mib(usage.used_bytes),
            mib(usage.limit_bytes)
        ));
        detail.extend(summaries.into_iter().map(|c| format!("candidate {c}")));
        let mut d = self.decision(level, Act::Suspend, reason, pids, detail, outcome);
        d.tree = note;
        d
    }

    /// Carries a staging out (see [`super::staging`]); the log lines. A dry run moves nothing.
    pub(super) fn stage(&mut self, staging: Staging) -> Vec<String> {
        if self.dry_run {
            return Vec::new();
        }
        let victim = match staging {
            Staging::Unstage => return self.suspended.unstage().into_iter().collect(),
            Staging::Stage(victim) => victim,
        };
        // The policy never stages a held tree (and a held one is in a cgroup of its own).
        match freeze::stage(&self.proc_root, &victim, self.guard_pid) {
            Ok(Some(placed)) => vec![self.suspended.stage(&victim, placed)],
            // Its own cgroup: holding it is one write as it is; a tree staged before stays
            // until the band is left (it may still be the one held).
            Ok(None) => Vec::new(),
            Err(why) => vec![format!("not staging {}: {why}", victim.summary())],
        }
    }

    fn note_of(&self, victim: &Candidate) -> TreeNote {
        TreeNote {
            id: victim.root.pid,
            comm: victim.root.comm.clone(),
            held_bytes: victim.held_bytes,
            how: "",
        }
    }

    /// Resumes or kills the held tree at `index` (a dry run's are only dropped); the line the
    /// action logged (`None`: it said nothing, or the tree was a dry run's).
    pub(super) fn release(
        &mut self,
        index: usize,
        release: Release,
        actions: &Actions,
    ) -> Option<String> {
        let real = self.suspended.trees.len();
        if index >= real {
            if index - real < self.dry_held.len() {
                self.dry_held.remove(index - real);
            }
            return None;
        }
        let line = match release {
            Release::Resume => self.suspended.resume(index),
            Release::Kill => self.suspended.kill(index, actions.kill_grace),
        };
        if line.is_some() {
            match release {
                Release::Resume => self.counts.resume += 1,
                Release::Kill => self.counts.kill += 1,
            }
        }
        line
    }

    /// What a release by hand replies when the action said nothing.
    pub(super) fn released_line(release: Release, summary: &str, dry: bool) -> String {
        if dry {
            format!("would {} {summary}", release.act())
        } else {
            format!("{} {summary}", release.done())
        }
    }

    /// Resumes everything held (the guard is stopping); the log lines.
    pub(super) fn resume_all(&mut self) -> Vec<String> {
        self.dry_held.clear();
        self.suspended.resume_all()
    }
}
