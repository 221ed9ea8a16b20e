//! Which processes the /proc source follows ([`Members`]), and when to look for new ones.
//!
//! Listing (a readdir of /proc, or the cgroup's `cgroup.procs` files) happens only when a
//! process may have been born: when the pid cursor of this pid namespace (the last field of
//! `/proc/loadavg`, the last pid handed out) moved since the previous listing, and at least every
//! [`LIST_EVERY`] in case it cannot tell (another namespace's /proc, a virtualised loadavg).
//! Pids found not to be members (other users' trees, kernel threads) are remembered as foreign
//! while they stay listed, so each is examined once; one whose number the cursor handed out
//! again since is examined anew.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::host::{
    cgroup,
    procfs::{self, OpenFile, ProcError},
};

/// The longest time between two listings.
pub(super) const LIST_EVERY: Duration = Duration::from_millis(900);

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

/// A listing: every pid of the scope now, and those of them to examine.
#[derive(Debug)]
pub(super) struct Listing {
    /// Every pid listed.
    pub(super) pids: HashSet<u32>,
    /// Listed pids neither followed nor known to be foreign, in ascending order.
    pub(super) candidates: Vec<u32>,
}

/// Decides when to list and remembers foreign pids.
#[derive(Debug)]
pub(super) struct Discovery {
    pub(super) members: Members,
    proc_root: PathBuf,
    loadavg: Option<OpenFile>,
    /// The pid cursor at the previous listing.
    cursor: Option<u32>,
    /// Whether the cursor numbers the pids this /proc lists (it is our pid namespace's).
    own_namespace: bool,
    foreign: HashSet<u32>,
    listed_at: Option<Instant>,
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
        }
    }

    fn read_cursor(&mut self) -> Option<u32> {
        self.loadavg
            .as_mut()
            .and_then(|file| file.text().ok().and_then(parse_cursor))
    }

    /// Lists the scope if a process may have been born since the last listing, or if
    /// [`LIST_EVERY`] has passed; `None` otherwise. `followed` tells the pids already followed.
    pub(super) fn list(
        &mut self,
        now: Instant,
        followed: impl Fn(u32) -> bool,
    ) -> Result<Option<Listing>, ProcError> {
        let cursor = self.read_cursor();
        let due = self
            .listed_at
            .is_none_or(|at| now.duration_since(at) >= LIST_EVERY);
        if !due && cursor.is_some() && cursor == self.cursor {
            return Ok(None);
        }
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
        Ok(Some(Listing { pids, candidates }))
    }

    /// Remembers that `pid` is not a member (until it leaves the listing or is handed out again).
    pub(super) fn foreign(&mut self, pid: u32) {
        self.foreign.insert(pid);
    }
}
