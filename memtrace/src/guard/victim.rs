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
mod tests {
    //! Trees, protection and ranking on hand-made snapshots.
    use super::*;
    use crate::guard::config::GuardConfig;

    const MIB: f64 = crate::host::units::MIB as f64;

    fn proc(pid: u32, ppid: u32, comm: &str, rss_mib: u64, growth_mib: f64) -> ProcSample {
        ProcSample {
            pid,
            ppid,
            comm: comm.to_owned().into(),
            cmdline: comm.to_owned().into(),
            start_ticks: u64::from(pid) * 10,
            rss_bytes: rss_mib << 20,
            anon_bytes: rss_mib << 20,
            growth_bytes_per_s: growth_mib * MIB,
            footprint_growth_bytes_per_s: growth_mib * MIB,
            ..ProcSample::default()
        }
    }

    /// The pids whose executable is sshd's in [`snapshot`].
    fn sshd() -> HashSet<u32> {
        [100, 200].into_iter().collect()
    }

    /// init → sshd → sshd-session → bash (login shell) → python pipeline → python worker (growing),
    /// plus chill (big, stable) and a growing process that only calls itself sshd (600).
    fn snapshot() -> (Vec<ProcSample>, HashMap<u32, Extra>) {
        let procs = vec![
            proc(1, 0, "systemd", 10, 0.0),
            proc(100, 1, "sshd", 8, 0.0),
            proc(200, 100, "sshd-session", 8, 0.0),
            proc(300, 200, "bash", 4, 0.0),
            proc(400, 300, "python3", 50, 0.5),
            proc(401, 400, "python3", 300, 120.0),
            proc(500, 300, "chill", 900, 0.0),
            proc(600, 1, "sshd", 20, 5.0),
            proc(700, 1, "memtrace", 10, 2.0),
        ];
        let extra = [
            (300, 300),
            (400, 300),
            (401, 300),
            (500, 300),
            (100, 100),
            (600, 600),
        ]
        .into_iter()
        .map(|(pid, session)| {
            (
                pid,
                Extra {
                    session,
                    ..Extra::default()
                },
            )
        })
        .collect();
        (procs, extra)
    }

    #[test]
    fn growing_pipeline_tree_ranks_first_and_protected_are_never_members() {
        let config = GuardConfig::default_config().expect("default");
        let protection = Protection {
            guard_pid: 700,
            victims: &config.victims,
            sshd: &sshd(),
        };
        let (procs, extra) = snapshot();
        let ranked = rank(&procs, &extra, &protection, &|_| true);
        let first = &ranked[0];
        assert_eq!(first.root.pid, 400, "the pipeline's parent is the root");
        let pids: Vec<u32> = first.members.iter().map(|t| t.pid).collect();
        assert_eq!(pids, vec![400, 401]);
        assert!(first.growing);
        for candidate in &ranked {
            for member in &candidate.members {
                assert!(
                    ![1, 100, 200, 300, 700].contains(&member.pid),
                    "{} must never be a member",
                    member.pid
                );
            }
        }
        let chill = ranked
            .iter()
            .find(|c| c.root.pid == 500)
            .expect("chill is its own tree");
        assert!(!chill.growing);
    }

    #[test]
    fn sshd_is_protected_by_its_executable_not_by_its_name() {
        // The default configuration protects no names of sshd's: the built-in protection acts.
        let config = GuardConfig::default_config().expect("default");
        let sshd = sshd();
        let protection = Protection {
            guard_pid: 700,
            victims: &config.victims,
            sshd: &sshd,
        };
        let (procs, extra) = snapshot();
        let table: HashMap<u32, &ProcSample> = procs.iter().map(|p| (p.pid, p)).collect();
        let hosts = terminal_hosts(&procs, &extra);
        let reason = |pid: u32| protection.reason(table[&pid], &extra, &hosts);
        assert_eq!(reason(100), Some(Protected::Sshd));
        assert_eq!(reason(200), Some(Protected::Sshd));
        assert_eq!(reason(300), Some(Protected::SshLoginShell));
        assert_eq!(reason(600), None, "named sshd, but runs another executable");
        let ranked = rank(&procs, &extra, &protection, &|_| true);
        assert!(
            ranked.iter().any(|c| c.root.pid == 600),
            "the renamed process is a candidate"
        );
        for candidate in &ranked {
            assert!(
                candidate
                    .members
                    .iter()
                    .all(|m| ![100, 200, 300].contains(&m.pid)),
                "{candidate:?}"
            );
        }
    }

    /// An ssh login shell running a tmux client; a tmux server whose panes run a bash with a
    /// hog in the foreground and a zsh at its prompt with a leak in the background; a terminal
    /// emulator whose terminal runs a hog directly; a daemon that left its terminal (setsid).
    fn terminals() -> (Vec<ProcSample>, HashMap<u32, Extra>) {
        let procs = vec![
            proc(1, 0, "systemd", 10, 0.0),
            proc(100, 1, "sshd", 8, 0.0),
            proc(200, 100, "sshd-session", 8, 0.0),
            proc(300, 200, "bash", 4, 0.0),
            proc(310, 300, "tmux: client", 4, 0.0),
            proc(400, 1, "tmux: server", 6, 0.0),
            proc(410, 400, "bash", 4, 0.0),
            proc(420, 410, "python3", 300, 100.0),
            proc(430, 400, "zsh", 4, 0.0),
            proc(440, 430, "leak", 200, 20.0),
            proc(500, 1, "xterm", 30, 0.0),
            proc(510, 500, "python3", 100, 50.0),
            proc(600, 1, "worker", 10, 0.0),
            proc(601, 600, "worker", 200, 30.0),
        ];
        // (pid, session, tty, foreground group of the tty)
        let pts = |n: i64| 136 * 256 + n;
        let extra = [
            (1, 1, 0, -1),
            (100, 100, 0, -1),
            (200, 200, 0, -1),
            (300, 300, pts(0), 310),
            (310, 300, pts(0), 310),
            (400, 400, 0, -1),
            (410, 410, pts(1), 420),
            (420, 410, pts(1), 420),
            (430, 430, pts(2), 430),
            (440, 430, pts(2), 430),
            (500, 500, 0, -1),
            (510, 510, pts(3), 510),
            (600, 600, 0, -1),
            (601, 600, 0, -1),
        ]
        .into_iter()
        .map(|(pid, session, tty, tpgid)| {
            (
                pid,
                Extra {
                    session,
                    tty,
                    tpgid,
                },
            )
        })
        .collect();
        (procs, extra)
    }

    #[test]
    fn shells_and_terminal_hosts_are_never_members_only_what_they_run() {
        let config = GuardConfig::default_config().expect("default");
        let sshd = sshd();
        let protection = Protection {
            guard_pid: 999,
            victims: &config.victims,
            sshd: &sshd,
        };
        let (procs, extra) = terminals();
        let table: HashMap<u32, &ProcSample> = procs.iter().map(|p| (p.pid, p)).collect();
        let hosts = terminal_hosts(&procs, &extra);
        let reason = |pid: u32| protection.reason(table[&pid], &extra, &hosts);
        assert_eq!(reason(300), Some(Protected::SshLoginShell));
        assert_eq!(
            reason(410),
            Some(Protected::InteractiveShell),
            "runs a foreground job"
        );
        assert_eq!(
            reason(430),
            Some(Protected::InteractiveShell),
            "a shell at its prompt"
        );
        assert_eq!(reason(400), Some(Protected::TerminalHost), "tmux server");
        assert_eq!(
            reason(500),
            Some(Protected::TerminalHost),
            "terminal emulator"
        );
        assert_eq!(
            reason(510),
            None,
            "a program run directly on a terminal is no shell"
        );
        assert_eq!(reason(600), None, "a leader without a terminal");
        assert_eq!(reason(420), None);

        let ranked = rank(&procs, &extra, &protection, &|_| true);
        let tree = |root: u32| -> Vec<u32> {
            ranked
                .iter()
                .find(|c| c.root.pid == root)
                .unwrap_or_else(|| panic!("{root} roots a tree: {ranked:?}"))
                .members
                .iter()
                .map(|m| m.pid)
                .collect()
        };
        assert_eq!(ranked[0].root.pid, 420, "the foreground hog ranks first");
        assert_eq!(tree(420), vec![420], "the hog alone, not its shell");
        assert_eq!(tree(440), vec![440], "the background job alone");
        assert_eq!(tree(510), vec![510]);
        assert_eq!(
            tree(600),
            vec![600, 601],
            "a daemon's tree keeps its leader"
        );
        for candidate in &ranked {
            for member in &candidate.members {
                assert!(
                    ![1, 100, 200, 300, 400, 410, 430, 500].contains(&member.pid),
                    "{} must never be a member: {candidate:?}",
                    member.pid
                );
            }
        }
    }

    #[test]
    fn avoid_and_prefer_reorder() {
        let text = "[victims]\navoid = [\"^python3$\"]\n";
        let config = GuardConfig::from_layers(Some((text, "t"))).expect("valid");
        let protection = Protection {
            guard_pid: 700,
            victims: &config.victims,
            sshd: &sshd(),
        };
        let (procs, extra) = snapshot();
        let ranked = rank(&procs, &extra, &protection, &|_| true);
        let roots: Vec<u32> = ranked.iter().map(|c| c.root.pid).collect();
        assert_eq!(roots, vec![600, 500, 400], "avoided trees go last");

        let text = "[victims]\nprefer = [\"chill\"]\n";
        let config = GuardConfig::from_layers(Some((text, "t"))).expect("valid");
        let protection = Protection {
            guard_pid: 700,
            victims: &config.victims,
            sshd: &sshd(),
        };
        assert_eq!(
            rank(&procs, &extra, &protection, &|_| true)[0].root.pid,
            500
        );
    }

    #[test]
    fn scope_limits_trees() {
        let config = GuardConfig::default_config().expect("default");
        let protection = Protection {
            guard_pid: 700,
            victims: &config.victims,
            sshd: &sshd(),
        };
        let (procs, extra) = snapshot();
        let ranked = rank(&procs, &extra, &protection, &|pid| pid == 401 || pid == 500);
        assert_eq!(ranked[0].root.pid, 401, "the parent is outside the scope");
        assert_eq!(ranked[0].members.len(), 1);
    }

    #[test]
    fn host_leaker_beats_big_stable_gpu_holder() {
        let config = GuardConfig::default_config().expect("default");
        let protection = Protection {
            guard_pid: 1,
            victims: &config.victims,
            sshd: &sshd(),
        };
        let mut gpu_holder = proc(10, 1, "trainer", 2000, 0.0);
        gpu_holder.gpu_bytes = Some(70 << 30);
        let leaker = proc(20, 1, "leaker", 500, 40.0);
        let ranked = rank(&[gpu_holder, leaker], &HashMap::new(), &protection, &|_| {
            true
        });
        assert_eq!(ranked[0].root.pid, 20);
        assert_eq!(ranked[1].held_bytes, (2000u64 << 20) + (70u64 << 30));
    }
}
