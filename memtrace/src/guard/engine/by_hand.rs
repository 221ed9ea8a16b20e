//! What the user asks of the running guard over its control socket ([`crate::guard::control`]):
//! what it holds, and resume, kill or keep one held tree (named by its root's pid). Each action
//! taken by hand is also a [`Decision`], logged like the engine's own.
use super::{Act, Decision, Engine};
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
            Request::Resume { id } => self.resume_by_hand(id, out),
            Request::Kill { id } => self.kill_by_hand(id, out),
            Request::Keep { id } => self.keep_by_hand(id, out),
        }
    }

    fn status(&self, scope: &str) -> Status {
        let real = self.suspended.trees.iter().map(|t| HeldInfo {
            id: t.root.pid,
            comm: t.root.comm.clone(),
            pids: t.record.members.iter().map(|m| m.pid).collect(),
            how: t.record.how.word().to_owned(),
            held_for_s: t.since.elapsed().as_secs_f64(),
            why: t.why.clone(),
            held_bytes: t.held_bytes,
            growth_bytes_per_s: t.growth_bytes_per_s,
            resumes: self.resumes.get(&t.root).copied().unwrap_or(0),
            kept: self.kept.contains(&t.root),
        });
        let dry = self.dry_held.iter().map(|c| HeldInfo {
            id: c.root.pid,
            comm: c.root.comm.clone(),
            pids: c.members.iter().map(|m| m.pid).collect(),
            how: "dry run".to_owned(),
            held_for_s: 0.0,
            why: c.summary(),
            held_bytes: c.held_bytes,
            growth_bytes_per_s: c.growth_bytes_per_s,
            resumes: self.resumes.get(&c.root).copied().unwrap_or(0),
            kept: self.kept.contains(&c.root),
        });
        Status {
            pid: self.guard_pid,
            scope: scope.to_owned(),
            level: self.state.level.to_string(),
            used_bytes: self.state.used_bytes,
            limit_bytes: self.state.limit_bytes,
            used_percent: self.state.used_percent,
            held: real.chain(dry).collect(),
        }
    }

    /// Where the tree rooted at `id` is among the held ones (real ones first, then a dry run's).
    fn find_held(&self, id: u32) -> Option<usize> {
        self.held_list().iter().position(|h| h.root.pid == id)
    }

    fn not_held(&self, id: u32) -> Reply {
        let held: Vec<String> = self
            .held_list()
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
        Decision {
            level: self.state.level,
            action,
            reason: format!(
                "{}by hand (memtrace guard {action})",
                if self.dry_run {
                    "dry run, nothing sent: "
                } else {
                    ""
                }
            ),
            pids,
            detail: vec![what],
            tree: None,
        }
    }

    fn resume_by_hand(&mut self, id: u32, out: &mut Vec<Decision>) -> Reply {
        self.release_by_hand(id, Release::Resume, out)
    }

    fn kill_by_hand(&mut self, id: u32, out: &mut Vec<Decision>) -> Reply {
        self.release_by_hand(id, Release::Kill, out)
    }

    /// Resumes or kills the held tree rooted at `id` (a dry run's held trees are only dropped).
    fn release_by_hand(&mut self, id: u32, release: Release, out: &mut Vec<Decision>) -> Reply {
        let Some(index) = self.find_held(id) else {
            return self.not_held(id);
        };
        let held = self.held_list();
        let Some(tree) = held.get(index) else {
            return self.not_held(id);
        };
        self.kept.remove(&tree.root);
        self.told.remove(&tree.root);
        let real = self.suspended.trees.len();
        let line = if index >= real {
            self.dry_held.remove(index - real);
            format!("would {} {}", release.verb(), tree.summary)
        } else {
            let done = match release {
                Release::Resume => {
                    self.state.counts.resume += 1;
                    self.suspended.resume(index)
                }
                Release::Kill => {
                    self.state.counts.kill += 1;
                    self.suspended.kill(index, self.config.actions.kill_grace)
                }
            };
            done.unwrap_or_else(|| format!("{} {}", release.done(), tree.summary))
        };
        self.state.suspended = self.held();
        let mut d = self.by_hand_decision(release.act(), line.clone(), tree.pids.clone());
        d.tree = Some(tree.note());
        out.push(d);
        Reply {
            ok: true,
            message: line,
            status: None,
        }
    }

    fn keep_by_hand(&mut self, id: u32, out: &mut Vec<Decision>) -> Reply {
        let Some(tree) = self.held_list().into_iter().find(|h| h.root.pid == id) else {
            return self.not_held(id);
        };
        self.kept.insert(tree.root.clone());
        let line = format!(
            "keeping {} held until it is resumed or killed by hand",
            tree.summary
        );
        let note = tree.note();
        let mut d = self.by_hand_decision(Act::Keep, line.clone(), tree.pids);
        d.tree = Some(note);
        out.push(d);
        Reply {
            ok: true,
            message: line,
            status: None,
        }
    }
}

/// How a held tree is let go by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    Resume,
    Kill,
}

impl Release {
    /// The decision it is.
    fn act(self) -> Act {
        match self {
            Self::Resume => Act::Resume,
            Self::Kill => Act::Kill,
        }
    }

    /// The verb, for the reply of a dry run.
    fn verb(self) -> &'static str {
        self.act().as_str()
    }

    /// What was done, for the reply when the action says nothing itself.
    fn done(self) -> &'static str {
        match self {
            Self::Resume => "resumed",
            Self::Kill => "killed",
        }
    }
}
