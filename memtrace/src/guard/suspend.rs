//! Suspending and resuming process trees, and never leaving one stopped: every suspension is
//! written to a small state file ([`super::state`]) *before* the first SIGSTOP, the set resumes
//! everything when dropped (clean exit, error, panic), and a guard that starts after a crash
//! resumes what the file lists — after checking each claim ([`super::recover`]). Trees are
//! frozen where [`super::freeze`] finds or makes a cgroup for them (v2 `cgroup.freeze`, v1
//! `freezer.state`), else stopped with SIGSTOP through verified pidfds; when freezing fails after
//! all (a read-only cgroupfs), the record is rewritten to say SIGSTOP before the signals go out.
//! The tree staged near warn (moved ahead into a thawed cgroup, see [`super::freeze`]) is in the
//! state file too, so that a guard starting after a crash moves it back.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::{
    guard::{
        freeze::{self, Placed},
        state::StateFile,
        victim::Candidate,
    },
    host::{
        freezer::Freezer,
        pidfd::{PidFd, ProcRef, ProcRefError},
    },
};

/// How a tree was suspended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// SIGSTOP to every member.
    Stop,
    /// `cgroup.freeze` on the tree's own v2 cgroup.
    Freeze,
    /// `freezer.state` on a v1 freezer cgroup (the tree's own, or one the guard moved it into).
    #[serde(rename = "freezer")]
    FreezerV1,
}

impl How {
    /// The word `guard status` and the control socket use.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Freeze => "freeze",
            Self::FreezerV1 => "freezer",
        }
    }

    /// Whether a cgroup freezer holds the tree (no signal was sent).
    pub fn frozen(&self) -> bool {
        !matches!(self, Self::Stop)
    }
}

/// One suspended tree as the state file records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    /// How it was stopped.
    pub how: How,
    /// The members (root first).
    pub members: Vec<ProcRef>,
    /// The frozen cgroup, for `How::Freeze` and `How::FreezerV1`.
    pub cgroup: Option<PathBuf>,
    /// Where the guard moved the members from into `cgroup` (they go back when thawed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<PathBuf>,
    /// When it was suspended, ms since the Unix epoch (absent in files of older guards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_unix_ms: Option<u64>,
    /// Why: the guard's reasons and the victim (absent in files of older guards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The state file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// Format version (2 added `boot_id`).
    pub version: u32,
    /// The boot the records belong to (`/proc/sys/kernel/random/boot_id`): pids and start
    /// times of another boot name other processes.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The suspended trees.
    pub suspended: Vec<HeldRecord>,
    /// A tree moved ahead into a thawed cgroup of its own (see [`super::freeze`]'s doc): moved
    /// back, not thawed, by recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<HeldRecord>,
}

/// This boot's id, from `ROOT/sys/kernel/random/boot_id`.
pub fn boot_id(proc_root: &Path) -> Option<String> {
    std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
        .ok()
        .map(|id| id.trim().to_owned())
}

/// A tree the guard holds suspended.
#[derive(Debug)]
pub struct Suspended {
    /// What the state file says.
    pub record: HeldRecord,
    /// Open pidfds of the members that were stopped.
    pub fds: Vec<PidFd>,
    /// When it was suspended.
    pub since: Instant,
    /// Description for logs.
    pub summary: String,
    /// The tree's root (the record's first member).
    pub root: ProcRef,
    /// Its growth when it was suspended, bytes/s (what resuming it would bring back).
    pub growth_bytes_per_s: f64,
    /// What it held when it was suspended (footprint + GPU), bytes.
    pub held_bytes: u64,
    /// Why it was suspended (the decision's reason).
    pub why: String,
}

/// Every tree this guard holds suspended, mirrored in the state file.
#[derive(Debug)]
pub struct SuspendedSet {
    /// `None` in a dry run, which suspends nothing.
    state: Option<StateFile>,
    proc_root: PathBuf,
    /// The trees, oldest first.
    pub trees: Vec<Suspended>,
    /// The tree moved ahead into a thawed cgroup of its own, to be held with one write.
    staged: Option<HeldRecord>,
}

/// Why a tree could not be suspended.
#[derive(Debug, thiserror::Error)]
pub enum SuspendError {
    /// No member could be verified (all exited or pids reused).
    #[error("no member of tree {0} could be signalled: {1}")]
    NoMember(u32, String),
    /// The state file could not be written, so nothing was stopped.
    #[error("writing the state file {path}: {source}; nothing was suspended")]
    State {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl SuspendedSet {
    /// An empty set that keeps its state in `state` (`None`: a dry run, which never suspends).
    pub fn new(state: Option<StateFile>, proc_root: &Path) -> Self {
        Self {
            state,
            proc_root: proc_root.to_owned(),
            trees: Vec::new(),
            staged: None,
        }
    }

    fn persist(&self) -> std::io::Result<()> {
        let Some(state) = &self.state else {
            return if self.trees.is_empty() {
                Ok(())
            } else {
                Err(std::io::Error::other("a dry run keeps no state file"))
            };
        };
        if self.trees.is_empty() && self.staged.is_none() {
            return state.remove();
        }
        let saved = Saved {
            version: 2,
            boot_id: boot_id(&self.proc_root),
            suspended: self.trees.iter().map(|t| t.record.clone()).collect(),
            staged: self.staged.clone(),
        };
        let text = serde_json::to_string_pretty(&saved).map_err(std::io::Error::other)?;
        state.write(&text)
    }

    fn state_path(&self) -> String {
        self.state.as_ref().map_or_else(
            || "(none: dry run)".to_owned(),
            |s| s.path().display().to_string(),
        )
    }

    /// Whether `root` is already held.
    pub fn holds(&self, root: &ProcRef) -> bool {
        self.trees
            .iter()
            .any(|t| t.record.members.first() == Some(root))
    }

    /// Records the tree `candidate` as staged in `placed` (moved there by
    /// [`freeze::stage`]); a log line. A staged tree left from before is moved back first.
    pub fn stage(&mut self, candidate: &Candidate, placed: Placed) -> String {
        let mut log: Vec<String> = self.unstage().into_iter().collect();
        let record = HeldRecord {
            how: placed.how,
            members: candidate.members.clone(),
            cgroup: Some(placed.cgroup),
            moved_from: placed.moved_from,
            since_unix_ms: Some(crate::host::clock::unix_ms()),
            why: None,
        };
        let shown = format!(
            "staged {} in the thawed cgroup {}, so that holding it is one write",
            candidate.summary(),
            record.cgroup.as_deref().unwrap_or(Path::new("?")).display()
        );
        self.staged = Some(record);
        match self.persist() {
            Ok(()) => log.push(shown),
            Err(err) => {
                // Unrecorded, it must not stay moved.
                log.extend(self.unstage());
                log.push(format!(
                    "not staging {}: writing {}: {err}",
                    candidate.summary(),
                    self.state_path()
                ));
            }
        }
        log.join("; ")
    }

    /// The placement of the tree rooted at `root` if it is the staged one, taken out of the
    /// set (the state file is rewritten by the hold that follows).
    pub fn take_staged(&mut self, root: &ProcRef) -> Option<Placed> {
        if self.staged.as_ref()?.members.first() != Some(root) {
            return None;
        }
        let record = self.staged.take()?;
        Some(Placed {
            how: record.how,
            cgroup: record.cgroup?,
            moved_from: record.moved_from,
            staged: true,
        })
    }

    /// Moves the staged tree, if any, back where it was; a log line. Where a held tree was
    /// frozen in that same cgroup (its own, as it had become), nothing is moved: that would
    /// thaw it behind its record's back; its release moves it.
    pub fn unstage(&mut self) -> Option<String> {
        let record = self.staged.take()?;
        let held_there = self
            .trees
            .iter()
            .any(|t| t.record.cgroup.is_some() && t.record.cgroup == record.cgroup);
        let line = if held_there {
            None
        } else {
            freeze::unstage(&record)
        };
        let _ = self.persist();
        line
    }

    /// Suspends `candidate` for the reason `why`: records it, then stops it (freezing the cgroup
    /// `placed` if given).
    pub fn suspend(
        &mut self,
        candidate: &Candidate,
        placed: Option<Placed>,
        why: &str,
    ) -> Result<String, SuspendError> {
        let (how, cgroup, moved_from, staged) = match placed {
            Some(p) => (p.how, Some(p.cgroup), p.moved_from, p.staged),
            None => (How::Stop, None, None, false),
        };
        let record = HeldRecord {
            how: how.clone(),
            members: candidate.members.clone(),
            cgroup: cgroup.clone(),
            moved_from,
            since_unix_ms: Some(crate::host::clock::unix_ms()),
            why: Some(why.to_owned()),
        };
        self.trees.push(Suspended {
            record,
            fds: Vec::new(),
            since: Instant::now(),
            summary: candidate.summary(),
            root: candidate.root.clone(),
            growth_bytes_per_s: candidate.growth_bytes_per_s,
            held_bytes: candidate.held_bytes,
            why: String::new(),
        });
        // Recorded before anything is stopped: a crash from here on leaves a resumable trace.
        if let Err(source) = self.persist() {
            self.trees.pop();
            return Err(SuspendError::State {
                path: self.state_path(),
                source,
            });
        }
        let mut fds = Vec::new();
        let mut skipped = Vec::new();
        for member in &candidate.members {
            match member.open(&self.proc_root) {
                Ok(fd) => fds.push(fd),
                Err(err) => skipped.push(err.to_string()),
            }
        }
        if fds.is_empty() {
            self.trees.pop();
            let _ = self.persist();
            return Err(SuspendError::NoMember(
                candidate.root.pid,
                skipped.join("; "),
            ));
        }
        let mut done = String::new();
        if let (Some(kind), Some(cgroup)) = (freeze::kind_of(&how), &cgroup) {
            match Freezer::open(&self.proc_root, cgroup, kind).and_then(|dir| dir.set_frozen(true))
            {
                Ok(()) => {
                    done = format!("froze cgroup {}", cgroup.display());
                    if let Some(from) = self.trees.last().and_then(|t| t.record.moved_from.as_ref())
                    {
                        done.push_str(&format!(" (moved there from {}", from.display()));
                        done.push_str(if staged { " when it was staged)" } else { ")" });
                    }
                }
                Err(err) => {
                    // Nothing is stopped yet: undo a move, record SIGSTOP (so recovery sends
                    // SIGCONT, not a thaw) before any signal goes out.
                    if let Some(tree) = self.trees.last_mut() {
                        let _ = freeze::thaw(&self.proc_root, &tree.record);
                        tree.record.how = How::Stop;
                        tree.record.cgroup = None;
                        tree.record.moved_from = None;
                    }
                    if let Err(source) = self.persist() {
                        self.trees.pop();
                        let _ = self.persist();
                        return Err(SuspendError::State {
                            path: self.state_path(),
                            source,
                        });
                    }
                    skipped.push(format!("freezing {} failed: {err}", cgroup.display()));
                }
            }
        }
        if done.is_empty() {
            let mut stopped = 0;
            for fd in &fds {
                match fd.signal(Signal::STOP) {
                    Ok(()) => stopped += 1,
                    Err(err) => skipped.push(err.to_string()),
                }
            }
            done = format!("sent SIGSTOP to {stopped} process(es)");
        }
        if !skipped.is_empty() {
            done.push_str(&format!(" (skipped: {})", skipped.join("; ")));
        }
        if let Some(tree) = self.trees.last_mut() {
            tree.fds = fds;
        }
        Ok(done)
    }

    /// Resumes the tree at `index` (0: the oldest); returns a log line (`None`: no such tree).
    pub fn resume(&mut self, index: usize) -> Option<String> {
        if index >= self.trees.len() {
            return None;
        }
        let tree = self.trees.remove(index);
        let mut log = Vec::new();
        resume_tree(&tree, &self.proc_root, &mut log);
        let _ = self.persist();
        Some(format!("resumed {}: {}", tree.summary, log.join(", ")))
    }

    /// Resumes every tree and moves the staged one back; returns log lines.
    pub fn resume_all(&mut self) -> Vec<String> {
        let mut log = Vec::new();
        for tree in self.trees.drain(..) {
            resume_tree(&tree, &self.proc_root, &mut log);
        }
        log.extend(self.unstage());
        let _ = self.persist();
        log
    }

    /// Kills the tree at `index` (0: the oldest): SIGTERM (and SIGCONT so it can act on it),
    /// then SIGKILL to what is left after `grace`. Returns a log line (`None`: no such tree).
    pub fn kill(&mut self, index: usize, grace: Duration) -> Option<String> {
        if index >= self.trees.len() {
            return None;
        }
        let tree = self.trees.remove(index);
        if tree.record.how.frozen() {
            // Frozen tasks cannot act on SIGTERM; thaw first (they are signalled right after).
            let _ = freeze::thaw(&self.proc_root, &tree.record);
        }
        let outcome = kill_fds(&tree.fds, grace);
        let _ = self.persist();
        Some(format!("killed {}: {outcome}", tree.summary))
    }
}

fn resume_tree(tree: &Suspended, proc_root: &Path, log: &mut Vec<String>) {
    if tree.record.how.frozen() {
        log.extend(freeze::thaw(proc_root, &tree.record));
        return;
    }
    for fd in &tree.fds {
        match fd.signal(Signal::CONT) {
            Ok(()) => log.push(format!("resumed {} ({})", fd.target.pid, fd.target.comm)),
            Err(ProcRefError::Gone(_)) => {}
            Err(err) => log.push(format!("resuming {}: {err}", fd.target.pid)),
        }
    }
}

/// SIGTERM + SIGCONT to every fd, wait up to `grace` for them to exit, SIGKILL the rest.
pub fn kill_fds(fds: &[PidFd], grace: Duration) -> String {
    for fd in fds {
        let _ = fd.signal(Signal::TERM);
        let _ = fd.signal(Signal::CONT);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && fds.iter().any(|fd| !fd.exited()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = 0;
    for fd in fds.iter().filter(|fd| !fd.exited()) {
        if fd.signal(Signal::KILL).is_ok() {
            killed += 1;
        }
    }
    format!(
        "SIGTERM to {} process(es), SIGKILL to {killed} still alive after {:?}",
        fds.len(),
        grace
    )
}

impl Drop for SuspendedSet {
    fn drop(&mut self) {
        for line in self.resume_all() {
            log::info!("{line}");
        }
    }
}

#[cfg(test)]
mod tests;
