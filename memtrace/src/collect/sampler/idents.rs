//! What the eBPF side of the sampler knows of each live process from /proc: parent, comm,
//! command line, start time and fault count — the counters come from the maps, these do not.
//!
//! Each process's `/proc/PID/stat` is kept open and re-read from offset 0 (one `pread`, no path
//! lookup, no open or close): at a 1 s refresh with ~600 processes, opening, reading and closing
//! every `stat` file by path was most of the sampler's CPU. The file names the process, not the
//! pid: once the process is gone a read fails (`ESRCH`), and the pid is then opened anew by path;
//! an entry whose start time changed is another process (pid reuse) and is read as a new one.
//!
//! The comm is part of `stat`, so a comm changed by exec or `prctl(PR_SET_NAME)` shows at the
//! next sample (with [`Idents::max_age`], within that age). The command line is read when the
//! process is new and again when its comm changes (exec); a program that rewrites its own
//! arguments without an exec keeps its first command line. Comm and command line are shared
//! (`Arc<str>`) with the snapshots, not copied per sample.
//!
//! At most [`Idents::new`]'s budget of files is kept open (half the descriptor limit, so the rest
//! of memtrace keeps room); processes beyond it are read by path, as before. All kept files are
//! read into one shared buffer, so an entry costs its descriptor and a few hundred bytes. Entries
//! of processes that were neither sampled in the current round nor in the one before are dropped,
//! their file closed (an exit event drops one at once).
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::host::procfs::{self, OpenFile, PidStat};

/// Identity of a live process, from /proc.
#[derive(Clone, Debug)]
pub(super) struct Ident {
    pub(super) ppid: u32,
    pub(super) comm: Arc<str>,
    pub(super) cmdline: Arc<str>,
    pub(super) start_ticks: u64,
    /// minflt + majflt of the whole thread group.
    pub(super) faults: u64,
    read_at: Instant,
}

/// A process's entry: its identity and its `stat` file, kept open.
#[derive(Debug)]
struct Known {
    ident: Ident,
    /// `None`: read by path (no budget left, or the open failed).
    stat: Option<OpenFile>,
    /// The last round it was sampled in.
    seen: u64,
}

/// How a `stat` was read.
enum Through {
    /// The entry's open file.
    Kept,
    /// A file opened by path now, to be kept.
    Opened(OpenFile),
    /// By path, not kept (no budget left).
    Path,
}

/// What the cache did, for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct IdentCounts {
    /// `stat` files opened by path (and kept open when the budget allows).
    pub(super) opens: u64,
    /// `stat` reads through a file kept open.
    pub(super) rereads: u64,
    /// Command lines read.
    pub(super) cmdlines: u64,
}

/// The identities of the live processes, one entry per process.
#[derive(Debug)]
pub(super) struct Idents {
    proc_root: PathBuf,
    known: HashMap<u32, Known>,
    /// Most `stat` files kept open at once.
    budget: usize,
    /// Every kept file is read into this one buffer (none holds a buffer of its own).
    scratch: Vec<u8>,
    open: usize,
    round: u64,
    /// Reuse an identity this long without reading (None: read every sample).
    pub(super) max_age: Option<Duration>,
    pub(super) counts: IdentCounts,
}

impl Idents {
    /// An empty cache reading `proc_root`, keeping at most `budget` files open.
    pub(super) fn new(proc_root: &Path, budget: usize) -> Self {
        Self {
            proc_root: proc_root.to_owned(),
            known: HashMap::new(),
            budget,
            scratch: Vec::new(),
            open: 0,
            round: 0,
            max_age: None,
            counts: IdentCounts::default(),
        }
    }

    /// The identity of `pid` now; `None` when it is gone from /proc (or is unreadable).
    pub(super) fn get(&mut self, pid: u32) -> Option<Ident> {
        let round = self.round;
        if let (Some(max_age), Some(known)) = (self.max_age, self.known.get_mut(&pid))
            && known.ident.read_at.elapsed() < max_age
        {
            known.seen = round;
            return Some(known.ident.clone());
        }
        let (stat, through) = self.read_stat(pid)?;
        let same = self
            .known
            .get(&pid)
            .filter(|known| known.ident.start_ticks == stat.start_ticks);
        let (comm, cmdline) = match same {
            Some(old) if *old.ident.comm == *stat.comm => {
                (old.ident.comm.clone(), old.ident.cmdline.clone())
            }
            // New, a reused pid, or an exec: the command line is read (again).
            _ => {
                self.counts.cmdlines += 1;
                let dir = self.proc_root.join(pid.to_string());
                let cmdline = std::fs::read(dir.join("cmdline"))
                    .map(|raw| procfs::parse_cmdline(&raw))
                    .unwrap_or_default();
                (Arc::from(stat.comm), Arc::from(cmdline))
            }
        };
        let ident = Ident {
            ppid: stat.ppid,
            comm,
            cmdline,
            start_ticks: stat.start_ticks,
            faults: stat.minflt + stat.majflt,
            read_at: Instant::now(),
        };
        let known = self.known.entry(pid).or_insert_with(|| Known {
            ident: ident.clone(),
            stat: None,
            seen: round,
        });
        known.ident = ident.clone();
        known.seen = round;
        match through {
            Through::Kept => {}
            Through::Opened(file) => {
                known.stat = Some(file);
                self.open += 1;
            }
            Through::Path => known.stat = None,
        }
        Some(ident)
    }

    /// Reads and parses `pid`'s `stat` through its open file, or by path when it has none or the
    /// file's process is gone.
    fn read_stat(&mut self, pid: u32) -> Option<(PidStat, Through)> {
        if let Some(known) = self.known.get_mut(&pid)
            && let Some(file) = known.stat.as_ref()
        {
            self.counts.rereads += 1;
            let text = file.text_in(&mut self.scratch);
            if let Some(stat) = text.ok().and_then(procfs::parse_pid_stat) {
                return Some((stat, Through::Kept));
            }
            // Gone (ESRCH): the pid may name another process by now.
            known.stat = None;
            self.open -= 1;
        }
        self.counts.opens += 1;
        let path = self.proc_root.join(pid.to_string()).join("stat");
        if self.open < self.budget {
            let file = OpenFile::open(&path).ok()?;
            let stat = procfs::parse_pid_stat(file.text_in(&mut self.scratch).ok()?)?;
            Some((stat, Through::Opened(file)))
        } else {
            let stat = procfs::parse_pid_stat(&procfs::read(&path).ok()?)?;
            Some((stat, Through::Path))
        }
    }

    /// The identity last read of `pid`, if any.
    pub(super) fn last(&self, pid: u32) -> Option<&Ident> {
        self.known.get(&pid).map(|known| &known.ident)
    }

    /// Forgets `pid` (it exited), closing its file; its last identity.
    pub(super) fn remove(&mut self, pid: u32) -> Option<Ident> {
        let known = self.known.remove(&pid)?;
        if known.stat.is_some() {
            self.open -= 1;
        }
        Some(known.ident)
    }

    /// Ends a round of samples: forgets the processes sampled neither in it nor in the one before
    /// (their exit event, if one comes late, still finds them for one round).
    pub(super) fn end_round(&mut self) {
        let round = self.round;
        let mut closed = 0;
        self.known.retain(|_, known| {
            let keep = known.seen + 1 >= round;
            if !keep && known.stat.is_some() {
                closed += 1;
            }
            keep
        });
        self.open -= closed;
        self.round += 1;
    }

    /// Entries held and files kept open.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.known.len(), self.open)
    }
}

#[cfg(test)]
#[path = "idents_tests.rs"]
mod tests;
