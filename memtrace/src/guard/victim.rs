//! Victim choice: which process tree is the offender. Processes are grouped into trees (a
//! growing process and everything its tree's root spawned), protected processes (init, kernel
//! threads, the guard, sshd — known by its executable, see [`crate::host::sshd`] — ssh login
//! shells, interactive shells, the terminal hosts they run in, and configured names) are never
//! part of any tree, and trees are ranked: preferred first, avoided last, then growing before
//! not, then by growth rate, then by what the tree holds (footprint + GPU, see
//! [`ProcSample::held_bytes`]). Pure: works on a snapshot.
//!
//! An interactive shell is a session leader with a controlling terminal that is a shell by its
//! name or runs a foreground job of its own (its terminal's foreground group is another);
//! a terminal host is the parent of a session leader on a terminal the parent does not have
//! itself — sshd's session process, a tmux or screen server, a terminal emulator, `script`.
//! Both are found by structure, not by name: holding them would take the user's terminal (the
//! shell prints "Stopped", the multiplexer freezes every pane). Only what they run is a member.
use std::collections::{HashMap, HashSet};

use crate::{
    collect::model::ProcSample,
    guard::config::Victims,
    host::{
        pidfd::ProcRef,
        units::{mib, signed_mib},
    },
};

/// Facts about a process the snapshot does not carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// Session id (`session == pid` for a session leader).
    pub session: u32,
    /// Controlling terminal, as `/proc/PID/stat` gives it (0: none).
    pub tty: i64,
    /// The foreground process group of that terminal (-1: none).
    pub tpgid: i64,
}

/// Command names of shells: a session leader on a terminal running one is an interactive
/// shell even while no job of its own is in the foreground.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "pdksh", "yash", "fish", "tcsh", "csh",
    "busybox", "nu", "xonsh", "elvish", "pwsh", "rc", "es",
];

/// Why a process is never a member of a victim tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protected {
    /// Init, a kernel thread or the guard itself ([`untouchable`]).
    Untouchable(&'static str),
    /// Runs sshd's executable.
    Sshd,
    /// Matches `victims.protected`.
    Name,
    /// A session leader started by sshd.
    SshLoginShell,
    /// A session leader with a controlling terminal that is a shell or runs a foreground job.
    InteractiveShell,
    /// The parent of a session leader on a terminal it does not have itself (tmux, screen, a
    /// terminal emulator).
    TerminalHost,
}

impl std::fmt::Display for Protected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Untouchable(what) => what,
            Self::Sshd => "sshd",
            Self::Name => "protected name",
            Self::SshLoginShell => "ssh login shell",
            Self::InteractiveShell => "interactive shell",
            Self::TerminalHost => "terminal host",
        })
    }
}

/// Whether `p` is an interactive shell (see the module's documentation).
fn interactive_shell(p: &ProcSample, extra: &HashMap<u32, Extra>) -> bool {
    extra.get(&p.pid).is_some_and(|e| {
        e.session == p.pid
            && e.tty != 0
            && (SHELLS.contains(&&*p.comm) || e.tpgid != i64::from(p.pid))
    })
}

/// The terminal hosts among `procs`: parents of session leaders whose controlling terminal is
/// not the parent's own.
pub fn terminal_hosts<'a>(
    procs: impl IntoIterator<Item = &'a ProcSample>,
    extra: &HashMap<u32, Extra>,
) -> HashSet<u32> {
    procs
        .into_iter()
        .filter_map(|child| {
            let e = extra.get(&child.pid)?;
            let parent_tty = extra.get(&child.ppid).map_or(0, |p| p.tty);
            (e.session == child.pid && e.tty != 0 && e.tty != parent_tty).then_some(child.ppid)
        })
        .collect()
}

/// A ranked candidate tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The tree's root.
    pub root: ProcRef,
    /// Every member to signal, root first (protected processes excluded).
    pub members: Vec<ProcRef>,
    /// Sum of the members' positive footprint growth, bytes/s.
    pub growth_bytes_per_s: f64,
    /// Sum of the members' resident sets.
    pub rss_bytes: u64,
    /// What the tree holds that only its exit gives back: Σ [`ProcSample::held_bytes`].
    pub held_bytes: u64,
    /// A member matches `victims.prefer`.
    pub preferred: bool,
    /// A member matches `victims.avoid`.
    pub avoided: bool,
    /// Growth at or above `victims.min_growth_mib_per_s`.
    pub growing: bool,
}

impl Candidate {
    /// One-line description for decision logs.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}) {} proc(s) growth {} MiB/s holds {} MiB{}{}",
            self.root.pid,
            self.root.comm,
            self.members.len(),
            signed_mib(self.growth_bytes_per_s),
            mib(self.held_bytes),
            if self.preferred { " [prefer]" } else { "" },
            if self.avoided { " [avoid]" } else { "" },
        )
    }
}

/// What the guard never acts on, whatever a configuration or a state file says: init, kernel
/// threads (children of kthreadd) and the guard itself. `None` if `pid` is none of them.
pub fn untouchable(pid: u32, ppid: u32, guard_pid: u32) -> Option<&'static str> {
    if pid <= 1 {
        Some("init")
    } else if pid == 2 || ppid == 2 {
        Some("kernel thread")
    } else if pid == guard_pid {
        Some("the guard itself")
    } else {
        None
    }
}

/// Who must never be touched.
#[derive(Debug)]
pub struct Protection<'a> {
    /// The guard's own pid.
    pub guard_pid: u32,
    /// Configured victim rules.
    pub victims: &'a Victims,
    /// The pids running sshd's executables ([`crate::host::sshd`]).
    pub sshd: &'a HashSet<u32>,
}

impl Protection<'_> {
    /// Why `p` is protected, or `None` if it may be acted on; `hosts` are the
    /// [`terminal_hosts`] of the snapshot.
    pub fn reason(
        &self,
        p: &ProcSample,
        extra: &HashMap<u32, Extra>,
        hosts: &HashSet<u32>,
    ) -> Option<Protected> {
        if let Some(what) = untouchable(p.pid, p.ppid, self.guard_pid) {
            return Some(Protected::Untouchable(what));
        }
        if self.sshd.contains(&p.pid) {
            return Some(Protected::Sshd);
        }
        if self.victims.protected.iter().any(|r| r.is_match(&p.comm)) {
            return Some(Protected::Name);
        }
        let leader = extra.get(&p.pid).is_some_and(|e| e.session == p.pid);
        if leader && self.sshd.contains(&p.ppid) {
            return Some(Protected::SshLoginShell);
        }
        if interactive_shell(p, extra) {
            return Some(Protected::InteractiveShell);
        }
        if hosts.contains(&p.pid) {
            return Some(Protected::TerminalHost);
        }
        None
    }
}

fn matches(rules: &[regex::Regex], p: &ProcSample) -> bool {
    rules
        .iter()
        .any(|r| r.is_match(&p.comm) || r.is_match(&p.cmdline))
}

fn target(p: &ProcSample) -> ProcRef {
    ProcRef {
        pid: p.pid,
        start_ticks: p.start_ticks,
        comm: p.comm.clone().to_string(),
    }
}

/// Ranks every tree of the live, in-scope processes of `procs`, best victim first.
pub fn rank(
    procs: &[ProcSample],
    extra: &HashMap<u32, Extra>,
    protection: &Protection<'_>,
    in_scope: &dyn Fn(u32) -> bool,
) -> Vec<Candidate> {
    let live: Vec<&ProcSample> = procs
        .iter()
        .filter(|p| !p.exited && in_scope(p.pid))
        .collect();
    let table: HashMap<u32, &ProcSample> = live.iter().map(|p| (p.pid, *p)).collect();
    let hosts = terminal_hosts(live.iter().copied(), extra);
    let protected: HashSet<u32> = live
        .iter()
        .filter(|p| protection.reason(p, extra, &hosts).is_some())
        .map(|p| p.pid)
        .collect();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in &live {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    // The root of p's tree: walk up while the parent is an ordinary process of the scope
    // (stop below protected processes and init, at session leaders).
    let root_of = |mut pid: u32| -> u32 {
        for _ in 0..64 {
            let Some(p) = table.get(&pid) else { break };
            let is_leader = extra.get(&pid).is_some_and(|e| e.session == pid);
            let Some(parent) = table.get(&p.ppid) else {
                break;
            };
            if is_leader || protected.contains(&parent.pid) || parent.pid <= 1 {
                break;
            }
            pid = parent.pid;
        }
        pid
    };
    let mut roots: Vec<u32> = live
        .iter()
        .filter(|p| !protected.contains(&p.pid))
        .map(|p| root_of(p.pid))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    let mut out: Vec<Candidate> = roots
        .into_iter()
        .filter_map(|root| {
            let mut members = Vec::new();
            let mut stack = vec![root];
            let mut seen = HashSet::new();
            while let Some(pid) = stack.pop() {
                if !seen.insert(pid) || protected.contains(&pid) {
                    continue;
                }
                let Some(p) = table.get(&pid) else { continue };
                members.push(*p);
                if let Some(kids) = children.get(&pid) {
                    stack.extend(kids.iter().copied());
                }
            }
            let root_sample = *table.get(&root)?;
            let growth: f64 = members
                .iter()
                .map(|p| p.footprint_growth_bytes_per_s.max(0.0))
                .sum();
            Some(Candidate {
                root: target(root_sample),
                growth_bytes_per_s: growth,
                rss_bytes: members.iter().map(|p| p.rss_bytes).sum(),
                held_bytes: members.iter().map(|p| p.held_bytes()).sum(),
                preferred: members
                    .iter()
                    .any(|p| matches(&protection.victims.prefer, p)),
                avoided: members
                    .iter()
                    .any(|p| matches(&protection.victims.avoid, p)),
                growing: growth >= protection.victims.min_growth_bytes_per_s.max(1.0),
                members: members.iter().map(|p| target(p)).collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.preferred
            .cmp(&a.preferred)
            .then(a.avoided.cmp(&b.avoided))
            .then(b.growing.cmp(&a.growing))
            .then(b.growth_bytes_per_s.total_cmp(&a.growth_bytes_per_s))
            .then(b.held_bytes.cmp(&a.held_bytes))
    });
    out
}

#[cfg(test)]
mod tests;
