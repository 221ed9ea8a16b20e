//! What the user asks of the running guard over its control socket ([`crate::guard::control`]):
//! what it holds, and resume, kill or keep one held tree (named by its root's pid). Each action
//! taken by hand is also a [`Decision`], logged and counted like the engine's own.
use super::{
    Act, Decision, Engine, Outcome,
    effects::{Effects, Release},
};
use crate::guard::control::{HeldInfo, Reply, Request, Status};

impl Engine {
    /// Answers `request`; what was done by hand goes to `out`.
    pub fn by_hand(&mut self, request: Request, scope: &str, out: &mut Vec<Decision>) -> Reply {
        match request {
            Request::Status => Reply {
                ok: true,
                message: format!("{} tree(s) held", self.held()),
                status: Some(self.status(scope)),
            },
            Request::Resume { id } => self.release_by_hand(id, Release::Resume, out),
            Request::Kill { id } => self.release_by_hand(id, Release::Kill, out),
            Request::Keep { id } => self.keep_by_hand(id, out),
        }
    }

    fn status(&self, scope: &str) -> Status {
        let real = self.effects.suspended.trees.iter().map(|t| HeldInfo {
            id: t.root.pid,
            comm: t.root.comm.clone(),
            pids: t.record.members.iter().map(|m| m.pid).collect(),
            how: t.record.how.word().to_owned(),
            held_for_s: t.since.elapsed().as_secs_f64(),
            why: t.why.clone(),
            held_bytes: t.held_bytes,
            growth_bytes_per_s: t.growth_bytes_per_s,
            resumes: self.policy.resumes(&t.root),
            kept: self.policy.kept(&t.root),
        });
        let dry = self.effects.dry_held.iter().map(|c| HeldInfo {
            id: c.root.pid,
            comm: c.root.comm.clone(),
            pids: c.members.iter().map(|m| m.pid).collect(),
            how: "dry run".to_owned(),
            held_for_s: 0.0,
            why: c.summary(),
            held_bytes: c.held_bytes,
            growth_bytes_per_s: c.growth_bytes_per_s,
            resumes: self.policy.resumes(&c.root),
            kept: self.policy.kept(&c.root),
        });
        Status {
            pid: self.effects.guard_pid(),
            scope: scope.to_owned(),
            level: self.state.level.to_string(),
            used_bytes: self.state.used_bytes,
            limit_bytes: self.state.limit_bytes,
            used_percent: self.state.used_percent,
            held: real.chain(dry).collect(),
        }
    }

    fn not_held(&self, id: u32) -> Reply {
        let held: Vec<String> = self
            .effects
            .held()
            .iter()
            .map(|h| h.root.pid.to_string())
            .collect();
        Reply::error(format!(
            "no held tree has the id {id} (held: {})",
            if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            }
        ))
    }

    fn by_hand_decision(&self, action: Act, what: String, pids: Vec<u32>) -> Decision {
        let dry = self.effects.dry_run();
        Decision {
            level: self.state.level,
            action,
            reason: format!(
                "{}by hand (memtrace guard {action})",
                if dry { "dry run, nothing sent: " } else { "" }
            ),
            pids,
            detail: vec![what],
            tree: None,
            outcome: if dry { Outcome::DryRun } else { Outcome::Done },
        }
    }

    /// Resumes or kills the held tree rooted at `id` (a dry run's held trees are only dropped).
    fn release_by_hand(&mut self, id: u32, release: Release, out: &mut Vec<Decision>) -> Reply {
        let held = self.effects.held();
        let Some((index, tree)) = held.iter().enumerate().find(|(_, h)| h.root.pid == id) else {
            return self.not_held(id);
        };
        self.policy.released_by_hand(&tree.root);
        let dry = index >= self.effects.suspended.trees.len();
        let actions = &self.policy.config().actions;
        let line = self
            .effects
            .release(index, release, actions)
            .unwrap_or_else(|| Effects::released_line(release, &tree.summary, dry));
        self.state.suspended = self.held();
        self.state.counts = self.effects.counts.clone();
        let mut d = self.by_hand_decision(release.act(), line.clone(), tree.pids.clone());
        d.tree = Some(tree.note());
        self.state.decisions.count(&d);
        out.push(d);
        Reply {
            ok: true,
            message: line,
            status: None,
        }
    }

    fn keep_by_hand(&mut self, id: u32, out: &mut Vec<Decision>) -> Reply {
        let Some(tree) = self.effects.held().into_iter().find(|h| h.root.pid == id) else {
            return self.not_held(id);
        };
        self.policy.keep_by_hand(&tree.root);
        let line = format!(
            "keeping {} held until it is resumed or killed by hand",
            tree.summary
        );
        let note = tree.note();
        let mut d = self.by_hand_decision(Act::Keep, line.clone(), tree.pids);
        d.tree = Some(note);
        self.state.decisions.count(&d);
        out.push(d);
        Reply {
            ok: true,
            message: line,
            status: None,
        }
    }
}
