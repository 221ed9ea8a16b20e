//! One process the /proc source follows: its pidfd (how its exit is noticed), its `statm`,
//! `status` and `stat` kept open, its last values, and when it is read next. The files are read
//! into the source's one buffer: a followed process holds no buffer of its own (three 4 KiB
//! buffers each made the guard's steady RSS grow by 12 KiB per process).
//!
//! A read is `statm` alone (one short line) unless it changed since the previous read; only then
//! are `status` (resident memory by kind, swap, the kernel's peak) and `stat` (ppid, comm, faults)
//! read too. A process whose `statm` did not change lets 1, 3, 7, … samples pass before the next
//! read, and is re-read at least every [`IDLE_REREAD`] whatever the interval.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    collect::model::ProcSample,
    host::{
        pidfd::PidFd,
        procfs::{self, OpenFile, PidStat, ProcError},
    },
};

/// An idle process is re-read at least this often (a little under a second, so that a 1 s
/// interval's jitter never stretches it to two).
pub(super) const IDLE_REREAD: Duration = Duration::from_millis(900);

/// The most samples an idle process lets pass (the time bound usually comes first).
const MAX_SKIP: u32 = 63;

/// A followed process.
#[derive(Debug)]
pub(super) struct Tracked {
    /// In the source's epoll set until the process exits (dropping it leaves the set); `None`
    /// where pidfds are unavailable.
    _pidfd: Option<PidFd>,
    statm: OpenFile,
    status: OpenFile,
    stat: OpenFile,
    last_statm: String,
    /// Its last values (no rates: the sampler adds those).
    pub(super) sample: ProcSample,
    /// Samples to let pass before the next read.
    skip: u32,
    skipped: u32,
    read_at: Instant,
}

/// What opening a process gave.
#[derive(Debug)]
pub(super) enum Opened {
    /// Followed from now on.
    Tracked(Box<Tracked>),
    /// A kernel thread or a zombie: no memory of its own.
    NotUser,
    /// It vanished (or its pid now names another process).
    Gone,
    /// Its files could not be opened for lack of file descriptors.
    NoDescriptors(ProcError),
}

/// What a read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refresh {
    /// `statm` as before: nothing else was read.
    Unchanged,
    /// Read in full.
    Changed,
    /// The process has exited.
    Gone,
}

/// What a full read found.
enum Full {
    Read,
    NoMemory,
    Failed,
}

fn no_descriptors(err: &ProcError) -> bool {
    matches!(err, ProcError::Io { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
}

fn cmdline(dir: &Path) -> String {
    std::fs::read(dir.join("cmdline"))
        .map(|raw| procfs::parse_cmdline(&raw))
        .unwrap_or_default()
}

impl Tracked {
    /// Opens and reads the process that `stat` (read when it was listed) describes; it must
    /// still have the same start time.
    pub(super) fn open(
        proc_root: &Path,
        stat: PidStat,
        pidfd: Option<PidFd>,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Opened {
        let dir = proc_root.join(stat.pid.to_string());
        let open = |name: &str| OpenFile::open(&dir.join(name));
        let files = open("statm").and_then(|statm| {
            let status = open("status")?;
            Ok((statm, status, open("stat")?))
        });
        let (statm, status, stat_file) = match files {
            Ok(files) => files,
            Err(err) if no_descriptors(&err) => return Opened::NoDescriptors(err),
            Err(_) => return Opened::Gone,
        };
        let mut tracked = Self {
            _pidfd: pidfd,
            statm,
            status,
            stat: stat_file,
            last_statm: String::new(),
            sample: ProcSample {
                pid: stat.pid,
                ppid: stat.ppid,
                cmdline: cmdline(&dir).into(),
                comm: stat.comm.into(),
                start_ticks: stat.start_ticks,
                ..ProcSample::default()
            },
            skip: 0,
            skipped: 0,
            read_at: now,
        };
        if tracked
            .statm
            .text_in(buf)
            .map(|text| tracked.last_statm.push_str(text))
            .is_err()
        {
            return Opened::Gone;
        }
        match tracked.read_full(proc_root, buf) {
            Full::Read if tracked.sample.start_ticks == stat.start_ticks => {
                Opened::Tracked(Box::new(tracked))
            }
            Full::Read | Full::Failed => Opened::Gone,
            Full::NoMemory => Opened::NotUser,
        }
    }

    /// Whether to read it in this sample (`every_sample`: exits are only noticed by reading).
    /// Counts a sample it lets pass.
    pub(super) fn due(&mut self, now: Instant, every_sample: bool) -> bool {
        if self.read_at == now {
            return false;
        }
        let due = every_sample
            || self.skipped >= self.skip
            || now.duration_since(self.read_at) >= IDLE_REREAD;
        if !due {
            self.skipped += 1;
        }
        due
    }

    /// Reads `statm`, and the rest when it changed, through `buf` (the source's one buffer).
    pub(super) fn refresh(&mut self, proc_root: &Path, now: Instant, buf: &mut Vec<u8>) -> Refresh {
        self.read_at = now;
        self.skipped = 0;
        let Ok(text) = self.statm.text_in(buf) else {
            return Refresh::Gone;
        };
        if text == self.last_statm {
            self.skip = (self.skip * 2 + 1).min(MAX_SKIP);
            return Refresh::Unchanged;
        }
        self.last_statm.clear();
        self.last_statm.push_str(text);
        self.skip = 0;
        match self.read_full(proc_root, buf) {
            Full::Read => Refresh::Changed,
            // A zombie keeps its files but no memory: it has exited.
            Full::NoMemory | Full::Failed => Refresh::Gone,
        }
    }

    /// Reads `status` and `stat` into the sample.
    fn read_full(&mut self, proc_root: &Path, buf: &mut Vec<u8>) -> Full {
        let memory = match self.status.text_in(buf) {
            Ok(text) => procfs::parse_pid_status(text),
            Err(_) => return Full::Failed,
        };
        let Some(memory) = memory else {
            return Full::NoMemory;
        };
        let Some(stat) = self.stat.text_in(buf).ok().and_then(procfs::parse_pid_stat) else {
            return Full::Failed;
        };
        let sample = &mut self.sample;
        if *stat.comm != *sample.comm {
            // exec: a new command line goes with the new name.
            sample.cmdline = cmdline(&proc_root.join(stat.pid.to_string())).into();
            sample.comm = stat.comm.into();
        }
        sample.ppid = stat.ppid;
        sample.start_ticks = stat.start_ticks;
        sample.faults = stat.minflt + stat.majflt;
        sample.anon_bytes = memory.anon;
        sample.file_bytes = memory.file;
        sample.shmem_bytes = memory.shmem;
        sample.swap_bytes = memory.swap;
        sample.rss_bytes = memory.rss();
        sample.peak_rss_bytes = sample.peak_rss_bytes.max(memory.hwm).max(memory.rss());
        Full::Read
    }

    /// Its last values, marked exited (its files close as it is dropped).
    pub(super) fn into_exit(self) -> ProcSample {
        let mut sample = self.sample;
        sample.exited = true;
        sample
    }
}
