//! One process the /proc source follows: its pidfd (how its exit is noticed), its `stat` and
//! `status` kept open, its last values, and when it is read next. The files are read into the
//! source's one buffer: a followed process holds no buffer of its own (three 4 KiB buffers each
//! made the guard's steady RSS grow by 12 KiB per process).
//!
//! A read is `stat` alone (one line) unless what it says of the process's memory — resident
//! pages, virtual size, minor + major faults ([`StatMemory`]) — changed since the previous
//! read; only then is `status` (resident memory by kind, swap, the kernel's peak `VmHWM`) read
//! too, with ppid, comm and faults taken from the `stat` just read. Its CPU times are not
//! compared: they move whenever the process runs. Faults are, because resident memory only
//! grows through a fault: a process that mapped, touched and unmapped memory between two reads
//! comes back to the same resident set and size, but not to the same fault count, and the
//! `VmHWM` then read still holds the peak it reached (the kernel raises its high-water mark
//! before every unmap or reclaim that lowers the resident set). A process whose three values
//! stay the same cannot have had a new peak: it lets 1, 3, 7, … samples pass before the next
//! read, and is re-read at least every [`IDLE_REREAD`] whatever the interval. A task without
//! memory of its own (a kernel thread, a zombie) shows 0 for both sizes, and `status` without
//! its `Rss` lines.
//!
//! The guard, which uses no peak and reads every process of its scope at every round near
//! pressure, probes with `statm` instead ([`Probe::Sizes`]: sizes only, a third of the cost),
//! and reads `stat` and `status` when it changed.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    collect::model::ProcSample,
    host::{
        pidfd::PidFd,
        procfs::{self, OpenFile, PidStat, ProcError, StatMemory},
    },
};

/// An idle process is re-read at least this often (a little under a second, so that a 1 s
/// interval's jitter never stretches it to two).
pub(super) const IDLE_REREAD: Duration = Duration::from_millis(900);

/// The most samples an idle process lets pass (the time bound usually comes first).
const MAX_SKIP: u32 = 63;

/// What a read consults first, to tell whether anything else must be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Probe {
    /// `stat`: the sizes and the fault count, so that a peak reached and let go between two
    /// reads is seen (in `VmHWM`) at the next one: `top`, `run`, `record`.
    #[default]
    Peaks,
    /// `statm`: the sizes only, about a third of a `stat` read; memory mapped, touched and
    /// unmapped between two reads goes unseen until the sizes change. For the guard, which
    /// reads every process of its scope at every round near pressure and uses no peak.
    Sizes,
}

/// A followed process.
#[derive(Debug)]
pub(super) struct Tracked {
    /// In the source's epoll set until the process exits (dropping it leaves the set); `None`
    /// where pidfds are unavailable.
    _pidfd: Option<PidFd>,
    stat: OpenFile,
    status: OpenFile,
    /// With [`Probe::Sizes`]: `statm`, and its text at the previous read.
    statm: Option<(OpenFile, String)>,
    /// What `stat` said of its memory at the previous read.
    last_memory: StatMemory,
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
    /// `stat`'s resident set, size and faults as before: nothing else was read.
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
    /// Opens and reads the process that `listed` (its `stat`, read when it was listed)
    /// describes; it must still have the same start time.
    pub(super) fn open(
        proc_root: &Path,
        listed: PidStat,
        pidfd: Option<PidFd>,
        probe: Probe,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Opened {
        if listed.memory().is_none() {
            return Opened::NotUser;
        }
        let dir = proc_root.join(listed.pid.to_string());
        let open = |name: &str| OpenFile::open(&dir.join(name));
        let files = open("stat").and_then(|stat| {
            let status = open("status")?;
            let statm = match probe {
                Probe::Peaks => None,
                Probe::Sizes => Some(open("statm")?),
            };
            Ok((stat, status, statm))
        });
        let (stat_file, status, statm) = match files {
            Ok(files) => files,
            Err(err) if no_descriptors(&err) => return Opened::NoDescriptors(err),
            Err(_) => return Opened::Gone,
        };
        let statm = match statm {
            Some(file) => match file.text_in(buf) {
                Ok(text) => Some((file, text.to_owned())),
                Err(_) => return Opened::Gone,
            },
            None => None,
        };
        // Read again through the file now held: the pid may name another process by now.
        let Some(stat) = stat_file.text_in(buf).ok().and_then(procfs::parse_pid_stat) else {
            return Opened::Gone;
        };
        if stat.start_ticks != listed.start_ticks {
            return Opened::Gone;
        }
        let memory = stat.memory();
        if memory.is_none() {
            return Opened::NotUser;
        }
        let mut tracked = Self {
            _pidfd: pidfd,
            stat: stat_file,
            status,
            statm,
            last_memory: memory,
            sample: ProcSample {
                pid: listed.pid,
                cmdline: cmdline(&dir).into(),
                comm: listed.comm.into(),
                ..ProcSample::default()
            },
            skip: 0,
            skipped: 0,
            read_at: now,
        };
        match tracked.read_full(stat, proc_root, buf) {
            Full::Read => Opened::Tracked(Box::new(tracked)),
            Full::Failed => Opened::Gone,
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

    /// Reads `stat`, and `status` when its memory values changed, through `buf` (the source's
    /// one buffer).
    pub(super) fn refresh(&mut self, proc_root: &Path, now: Instant, buf: &mut Vec<u8>) -> Refresh {
        self.read_at = now;
        self.skipped = 0;
        if let Some((statm, last)) = &mut self.statm {
            let Ok(text) = statm.text_in(buf) else {
                return Refresh::Gone;
            };
            if text == last.as_str() {
                return self.unchanged();
            }
            last.clear();
            last.push_str(text);
        }
        let Ok(text) = self.stat.text_in(buf) else {
            return Refresh::Gone;
        };
        let Some(memory) = procfs::parse_stat_memory(text) else {
            return Refresh::Gone;
        };
        if memory == self.last_memory && self.statm.is_none() {
            return self.unchanged();
        }
        // A zombie keeps its files but no memory: it has exited.
        if memory.is_none() {
            return Refresh::Gone;
        }
        let Some(stat) = procfs::parse_pid_stat(text) else {
            return Refresh::Gone;
        };
        self.last_memory = memory;
        self.skip = 0;
        match self.read_full(stat, proc_root, buf) {
            Full::Read => Refresh::Changed,
            Full::NoMemory | Full::Failed => Refresh::Gone,
        }
    }

    /// A read that found nothing changed: twice as many samples (plus one) pass before the next.
    fn unchanged(&mut self) -> Refresh {
        self.skip = (self.skip * 2 + 1).min(MAX_SKIP);
        Refresh::Unchanged
    }

    /// Reads `status` into the sample, with `stat` (just read through the file held).
    fn read_full(&mut self, stat: PidStat, proc_root: &Path, buf: &mut Vec<u8>) -> Full {
        let memory = match self.status.text_in(buf) {
            Ok(text) => procfs::parse_pid_status(text),
            Err(_) => return Full::Failed,
        };
        let Some(memory) = memory else {
            return Full::NoMemory;
        };
        let faults = stat.memory().faults;
        let sample = &mut self.sample;
        if *stat.comm != *sample.comm {
            // exec: a new command line goes with the new name.
            sample.cmdline = cmdline(&proc_root.join(stat.pid.to_string())).into();
            sample.comm = stat.comm.into();
        }
        sample.ppid = stat.ppid;
        sample.start_ticks = stat.start_ticks;
        sample.faults = faults;
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
