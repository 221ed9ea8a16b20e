//! Suspending and resuming process trees, and never leaving one stopped: every suspension is
//! written to a small state file (under /run) *before* the first SIGSTOP, the set resumes
//! everything when dropped (clean exit, error, panic), and a guard that starts after a crash
//! resumes what the file lists. Trees are stopped with SIGSTOP through verified pidfds, or with
//! `cgroup.freeze` when the tree has a v2 cgroup of its own.
use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::{
    guard::victim::Candidate,
    host::pidfd::{PidFd, ProcRef, ProcRefError},
};

/// Default state file.
pub const STATE_FILE: &str = "/run/memtrace/guard-suspended.json";

/// How a tree was suspended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// SIGSTOP to every member.
    Stop,
    /// `cgroup.freeze` on the tree's own cgroup.
    Freeze,
}

/// One suspended tree as the state file records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// How it was stopped.
    pub how: How,
    /// The members (root first).
    pub members: Vec<ProcRef>,
    /// The frozen cgroup, for `How::Freeze`.
    pub cgroup: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    suspended: Vec<Record>,
}

/// A tree the guard holds suspended.
#[derive(Debug)]
pub struct Suspended {
    /// What the state file says.
    pub record: Record,
    /// Open pidfds of the members that were stopped.
    pub fds: Vec<PidFd>,
    /// When it was suspended.
    pub since: Instant,
    /// Description for logs.
    pub summary: String,
}

/// Every tree this guard holds suspended, mirrored in the state file.
#[derive(Debug)]
pub struct SuspendedSet {
    state_path: PathBuf,
    proc_root: PathBuf,
    /// The trees, oldest first.
    pub trees: Vec<Suspended>,
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

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

fn resume_record(record: &Record, proc_root: &Path, log: &mut Vec<String>) {
    if let (How::Freeze, Some(cgroup)) = (&record.how, &record.cgroup) {
        match fs::write(cgroup.join("cgroup.freeze"), "0") {
            Ok(()) => log.push(format!("thawed cgroup {}", cgroup.display())),
            // The tree exited (or was killed) while frozen and its cgroup went with it.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => log.push(format!("thawing {}: {err}", cgroup.display())),
        }
        return;
    }
    for member in &record.members {
        match member
            .open(proc_root)
            .and_then(|fd| fd.signal(Signal::CONT))
        {
            Ok(()) => log.push(format!("resumed {} ({})", member.pid, member.comm)),
            Err(ProcRefError::Gone(_)) => {}
            Err(err) => log.push(format!("not resuming {}: {err}", member.pid)),
        }
    }
}

impl SuspendedSet {
    /// An empty set that keeps its state in `state_path`.
    pub fn new(state_path: &Path, proc_root: &Path) -> Self {
        Self {
            state_path: state_path.to_owned(),
            proc_root: proc_root.to_owned(),
            trees: Vec::new(),
        }
    }

    /// Resumes what an earlier guard left suspended (it crashed or was SIGKILLed), verifying
    /// each process's identity first, then removes the file. Returns log lines.
    pub fn recover(state_path: &Path, proc_root: &Path) -> Vec<String> {
        let mut log = Vec::new();
        let Ok(text) = fs::read_to_string(state_path) else {
            return log;
        };
        match serde_json::from_str::<StateFile>(&text) {
            Ok(state) => {
                for record in &state.suspended {
                    resume_record(record, proc_root, &mut log);
                }
            }
            Err(err) => log.push(format!(
                "ignoring unreadable state file {}: {err}",
                state_path.display()
            )),
        }
        if let Err(err) = fs::remove_file(state_path) {
            log.push(format!("removing {}: {err}", state_path.display()));
        }
        log
    }

    fn persist(&self) -> std::io::Result<()> {
        if self.trees.is_empty() {
            return match fs::remove_file(&self.state_path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            };
        }
        let state = StateFile {
            version: 1,
            suspended: self.trees.iter().map(|t| t.record.clone()).collect(),
        };
        let text = serde_json::to_string_pretty(&state).map_err(std::io::Error::other)?;
        write_atomically(&self.state_path, &text)
    }

    /// Whether `root` is already held.
    pub fn holds(&self, root: &ProcRef) -> bool {
        self.trees
            .iter()
            .any(|t| t.record.members.first() == Some(root))
    }

    /// Suspends `candidate`: records it, then stops it (freezing `freeze` if given).
    pub fn suspend(
        &mut self,
        candidate: &Candidate,
        freeze: Option<PathBuf>,
    ) -> Result<String, SuspendError> {
        let how = if freeze.is_some() {
            How::Freeze
        } else {
            How::Stop
        };
        let record = Record {
            how: how.clone(),
            members: candidate.members.clone(),
            cgroup: freeze.clone(),
        };
        self.trees.push(Suspended {
            record,
            fds: Vec::new(),
            since: Instant::now(),
            summary: candidate.summary(),
        });
        // Recorded before anything is stopped: a crash from here on leaves a resumable trace.
        if let Err(source) = self.persist() {
            self.trees.pop();
            return Err(SuspendError::State {
                path: self.state_path.display().to_string(),
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
        let mut done = match (&how, &freeze) {
            (How::Freeze, Some(cgroup)) => match fs::write(cgroup.join("cgroup.freeze"), "1") {
                Ok(()) => format!("froze cgroup {}", cgroup.display()),
                Err(err) => format!("freezing {} failed: {err}", cgroup.display()),
            },
            _ => {
                let mut stopped = 0;
                for fd in &fds {
                    match fd.signal(Signal::STOP) {
                        Ok(()) => stopped += 1,
                        Err(err) => skipped.push(err.to_string()),
                    }
                }
                format!("sent SIGSTOP to {stopped} process(es)")
            }
        };
        if !skipped.is_empty() {
            done.push_str(&format!(" (skipped: {})", skipped.join("; ")));
        }
        if let Some(tree) = self.trees.last_mut() {
            tree.fds = fds;
        }
        Ok(done)
    }

    /// Resumes the oldest tree; returns a log line.
    pub fn resume_oldest(&mut self) -> Option<String> {
        if self.trees.is_empty() {
            return None;
        }
        let tree = self.trees.remove(0);
        let mut log = Vec::new();
        resume_tree(&tree, &mut log);
        let _ = self.persist();
        Some(format!("resumed {}: {}", tree.summary, log.join(", ")))
    }

    /// Resumes every tree; returns log lines.
    pub fn resume_all(&mut self) -> Vec<String> {
        let mut log = Vec::new();
        for tree in self.trees.drain(..) {
            resume_tree(&tree, &mut log);
        }
        let _ = self.persist();
        log
    }

    /// Kills the oldest tree: SIGTERM (and SIGCONT so it can act on it), then SIGKILL to what
    /// is left after `grace`. Returns a log line.
    pub fn kill_oldest(&mut self, grace: Duration) -> Option<String> {
        if self.trees.is_empty() {
            return None;
        }
        let tree = self.trees.remove(0);
        if let (How::Freeze, Some(cgroup)) = (&tree.record.how, &tree.record.cgroup) {
            // Frozen tasks cannot act on SIGTERM; thaw first (they are signalled right after).
            let _ = fs::write(cgroup.join("cgroup.freeze"), "0");
        }
        let outcome = kill_fds(&tree.fds, grace);
        let _ = self.persist();
        Some(format!("killed {}: {outcome}", tree.summary))
    }
}

fn resume_tree(tree: &Suspended, log: &mut Vec<String>) {
    if tree.record.how == How::Freeze {
        resume_record(&tree.record, Path::new("/proc"), log);
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
