//! Which processes the /proc source follows ([`Members`]), and how new ones are found.
//!
//! Nothing is looked for unless a process may have been born: the last field of `/proc/loadavg`
//! is the last pid this pid namespace handed out (the cursor). When /proc is this namespace's
//! and the cursor moved by a few pids since the previous look, only those pids are examined
//! (births cost in proportion to births, not to the processes on the machine); when it moved by
//! many or wrapped, or for a cgroup scope, the scope is listed (a readdir of /proc, or the
//! cgroup's `cgroup.procs` files). A full listing also happens every [`LIST_EVERY`] where the
//! cursor cannot be believed (another namespace's /proc, no loadavg) and every
//! [`LIST_EVERY_TRUSTED`] where it can. Pids found not to be members (other trees, kernel
//! threads) are remembered as foreign while they stay listed, so each is examined once; one
//! the cursor hands out again is examined anew. The cursor sees births, not moves: a process
//! that joins a cgroup scope after its birth (`echo $$ > cgroup.procs; exec …`, a process
//! systemd moves into a scope) moves no cursor, so a caller that reads only when it needs fresh
//! values (the guard) has a cgroup scope listed at every look ([`Discovery::list_every_look`]).
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::host::{
    cgroup,
    procfs::{self, OpenFile, ProcError},
};

/// The longest time between two listings where the cursor cannot be believed.
pub(super) const LIST_EVERY: Duration = Duration::from_millis(900);

/// The longest time between two listings where it can (a safety net: a pid handed out but not
/// yet visible when its range was examined is found by the next listing).
pub(super) const LIST_EVERY_TRUSTED: Duration = Duration::from_secs(10);

/// The most pids examined one by one; a cursor that moved further makes a listing.
const PROBE_MAX: u32 = 64;

/// Which processes the /proc source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Members {
    /// Every process (`top`, the guard's machine scope, `record` of everything).
    All,
    /// This process and its descendants, found through their parent pids (`run` and
    /// `record`); a descendant stays followed when its parent exits.
    Tree(u32),
    /// The processes of this cgroup and the cgroups below it (the guard's cgroup scope).
    Cgroup(PathBuf),
}

/// What to examine: a whole listing, or only the pids handed out since the last look.
#[derive(Debug)]
pub(super) struct Listing {
    /// Every pid of the scope, when it was listed in full (`None`: only new pids were looked at).
    pub(super) pids: Option<HashSet<u32>>,
    /// Pids neither followed nor known to be foreign, in ascending order.
    pub(super) candidates: Vec<u32>,
}

/// Decides when and how to look for new processes, and remembers foreign pids.
#[derive(Debug)]
pub(super) struct Discovery {
    pub(super) members: Members,
    proc_root: PathBuf,
    loadavg: Option<OpenFile>,
    /// The pid cursor at the previous look.
    cursor: Option<u32>,
    /// Whether the cursor numbers the pids this /proc lists (it is our pid namespace's).
    own_namespace: bool,
    foreign: HashSet<u32>,
    listed_at: Option<Instant>,
    /// List a cgroup scope at every look, cursor or not.
    every_look: bool,
}

/// The last pid handed out, from `/proc/loadavg` (`0.00 0.01 0.05 1/123 4567`).
pub(super) fn parse_cursor(loadavg: &str) -> Option<u32> {
    loadavg.split_ascii_whitespace().nth(4)?.parse().ok()
}

/// Whether `pid` was handed out after cursor `from`, up to cursor `to` (pids are handed out
/// upwards and wrap at `pid_max`).
pub(super) fn handed_out_between(pid: u32, from: u32, to: u32) -> bool {
    match from.cmp(&to) {
        std::cmp::Ordering::Equal => false,
        std::cmp::Ordering::Less => pid > from && pid <= to,
        std::cmp::Ordering::Greater => pid > from || pid <= to,
    }
}

impl Discovery {
    /// Discovery of `members` under `proc_root`.
    pub(super) fn new(proc_root: &Path, members: Members) -> Self {
        let own_namespace = std::fs::read_link(proc_root.join("self"))
            .ok()
            .and_then(|link| link.to_str()?.parse::<u32>().ok())
            == Some(std::process::id());
        Self {
            members,
            proc_root: proc_root.to_owned(),
            loadavg: OpenFile::open(&proc_root.join("loadavg")).ok(),
            cursor: None,
            own_namespace,
            foreign: HashSet::new(),
            listed_at: None,
            every_look: false,
        }
    }

    /// Lists a cgroup scope at every look, whether or not the cursor moved: a process moved into
    /// the cgroup is found at the next look, not at the next periodic listing.
    pub(super) fn list_every_look(&mut self) {
        self.every_look = true;
    }

    fn read_cursor(&mut self) -> Option<u32> {
        self.loadavg
            .as_mut()
            .and_then(|file| file.text().ok().and_then(parse_cursor))
    }

    /// What to examine now, or `None` when no process can have been born since the last look.
    /// `followed` tells the pids already followed.
    pub(super) fn look(
        &mut self,
        now: Instant,
        followed: impl Fn(u32) -> bool,
    ) -> Result<Option<Listing>, ProcError> {
        let cursor = self.read_cursor();
        let trusted = self.own_namespace && cursor.is_some();
        let every = if trusted {
            LIST_EVERY_TRUSTED
        } else {
            LIST_EVERY
        };
        let due = self
            .listed_at
            .is_none_or(|at| now.duration_since(at) >= every);
        if due {
            return self.list(now, cursor, true, followed).map(Some);
        }
        let by_pid = !matches!(self.members, Members::Cgroup(_));
        if !by_pid && self.every_look {
            return self.list(now, cursor, false, followed).map(Some);
        }
        match (trusted, self.cursor, cursor) {
            (_, Some(from), Some(to)) if from == to => Ok(None),
            (true, Some(from), Some(to)) if by_pid && from < to && to - from <= PROBE_MAX => {
                Ok(Some(self.births(from, to, followed)))
            }
            _ => self.list(now, cursor, false, followed).map(Some),
        }
    }

    /// The pids handed out after `from` up to `to`, as candidates (for a cgroup scope the
    /// cgroup decides: it is listed instead).
    fn births(&mut self, from: u32, to: u32, followed: impl Fn(u32) -> bool) -> Listing {
        self.foreign
            .retain(|&pid| !handed_out_between(pid, from, to));
        self.cursor = Some(to);
        Listing {
            pids: None,
            candidates: (from + 1..=to).filter(|&pid| !followed(pid)).collect(),
        }
    }

    /// Lists the scope in full (`due`: the periodic listing).
    fn list(
        &mut self,
        now: Instant,
        cursor: Option<u32>,
        due: bool,
        followed: impl Fn(u32) -> bool,
    ) -> Result<Listing, ProcError> {
        let pids: HashSet<u32> = match &self.members {
            Members::All | Members::Tree(_) => {
                procfs::list_pids(&self.proc_root)?.into_iter().collect()
            }
            Members::Cgroup(dir) => cgroup::pids_below(dir).map_err(|source| ProcError::Io {
                path: dir.display().to_string(),
                source,
            })?,
        };
        match (self.own_namespace, self.cursor, cursor) {
            // A foreign pid handed out again since names a new process.
            (true, Some(from), Some(to)) => self
                .foreign
                .retain(|&pid| !handed_out_between(pid, from, to)),
            // Without a usable cursor, every foreign pid is examined again now and then.
            _ if due => self.foreign.clear(),
            _ => {}
        }
        self.foreign.retain(|pid| pids.contains(pid));
        let mut candidates: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| !followed(pid) && !self.foreign.contains(&pid))
            .collect();
        candidates.sort_unstable();
        self.cursor = cursor;
        self.listed_at = Some(now);
        Ok(Listing {
            pids: Some(pids),
            candidates,
        })
    }

    /// Remembers that `pid` is not a member (until it leaves the listing or is handed out again).
    pub(super) fn foreign(&mut self, pid: u32) {
        self.foreign.insert(pid);
    }
}
