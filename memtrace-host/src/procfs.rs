//! Parsers for the /proc files memtrace reads: `PID/stat`, `PID/status`, `PID/cmdline`,
//! `meminfo` and `pressure/memory`. Parsing is separate from reading so it can be tested on
//! hostile input (a comm of `a) R (b` must not shift the fields).
use std::{fs, io, path::Path};

/// A /proc file could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// Reading failed (the process may have exited).
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The content was not what the kernel writes.
    #[error("unexpected format in {0}")]
    Format(String),
}

/// The fields of `/proc/PID/stat` memtrace uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PidStat {
    /// Process id.
    pub pid: u32,
    /// Command name, exactly as between the outer parentheses.
    pub comm: String,
    /// State letter (R, S, D, T, Z, …).
    pub state: char,
    /// Parent pid.
    pub ppid: u32,
    /// Session id (a session leader has `session == pid`).
    pub session: u32,
    /// Controlling terminal as a device number (field 7; 0: none).
    pub tty_nr: i64,
    /// Foreground process group of the controlling terminal (field 8; -1: none).
    pub tpgid: i64,
    /// Minor faults (whole thread group, live and reaped threads).
    pub minflt: u64,
    /// Major faults.
    pub majflt: u64,
    /// User CPU time of the whole thread group, clock ticks.
    pub utime: u64,
    /// System CPU time of the whole thread group, clock ticks.
    pub stime: u64,
    /// Start time, clock ticks after boot.
    pub start_ticks: u64,
    /// Virtual memory size in bytes (field 23; 0 for a task without memory of its own).
    pub vsize: u64,
    /// Resident set in pages (anon + file + shmem; field 24).
    pub rss_pages: u64,
    /// The signal its parent gets at its exit (field 38; `None` when the line is shorter).
    pub exit_signal: Option<i32>,
}

impl PidStat {
    /// Whether this is a thread of a group rather than a process (the `stat` of a thread id,
    /// reachable in /proc though not listed): only threads have an exit signal of −1.
    pub fn is_thread(&self) -> bool {
        self.exit_signal == Some(-1)
    }

    /// What it says of the process's memory.
    pub fn memory(&self) -> StatMemory {
        StatMemory {
            rss_pages: self.rss_pages,
            vsize: self.vsize,
            faults: self.minflt.saturating_add(self.majflt),
        }
    }
}

/// What `/proc/PID/stat` says of a process's memory: resident set, virtual size and faults.
/// Resident memory only grows through a page fault, so while all three stay the same the
/// process cannot have reached a new peak since they were read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatMemory {
    /// Resident set in pages (field 24).
    pub rss_pages: u64,
    /// Virtual memory size in bytes (field 23).
    pub vsize: u64,
    /// Minor + major faults (fields 10 and 12).
    pub faults: u64,
}

impl StatMemory {
    /// Whether the task has no memory of its own: a kernel thread or a zombie (without an
    /// address space the kernel writes 0 for both sizes).
    pub fn is_none(&self) -> bool {
        self.rss_pages == 0 && self.vsize == 0
    }
}

/// The fields of one `stat` line, borrowed from its text.
struct StatLine<'t> {
    pid: &'t str,
    comm: &'t str,
    /// Fields 3 to 38 (`""` past the end of a short line).
    rest: [&'t str; STAT_FIELDS],
}

impl<'t> StatLine<'t> {
    /// Splits `text`; the comm is everything between the first `(` and the *last* `)`.
    fn split(text: &'t str) -> Option<Self> {
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        if close < open {
            return None;
        }
        // On the stack: this runs for every followed process at every sample.
        let mut rest = [""; STAT_FIELDS];
        for (slot, word) in rest
            .iter_mut()
            .zip(text.get(close + 1..)?.split_ascii_whitespace())
        {
            *slot = word;
        }
        Some(Self {
            pid: text.get(..open)?.trim(),
            comm: text.get(open + 1..close)?,
            rest,
        })
    }

    /// Field `n`, numbered as in proc(5) (3: state).
    fn field(&self, n: usize) -> Option<&'t str> {
        self.rest
            .get(n.checked_sub(3)?)
            .copied()
            .filter(|f| !f.is_empty())
    }

    fn number(&self, n: usize) -> Option<u64> {
        self.field(n)?.parse().ok()
    }

    fn memory(&self) -> Option<StatMemory> {
        Some(StatMemory {
            rss_pages: self.number(24)?,
            vsize: self.number(23)?,
            faults: self.number(10)?.saturating_add(self.number(12)?),
        })
    }
}

/// Parses the content of `/proc/PID/stat`.
///
/// The comm is everything between the first `(` and the *last* `)`: a comm may itself contain
/// parentheses and spaces.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let line = StatLine::split(text)?;
    let memory = line.memory()?;
    Some(PidStat {
        pid: line.pid.parse().ok()?,
        comm: line.comm.to_owned(),
        state: line.field(3)?.chars().next()?,
        ppid: u32::try_from(line.number(4)?).ok()?,
        session: u32::try_from(line.number(6)?).ok()?,
        tty_nr: line.field(7).and_then(|f| f.parse().ok()).unwrap_or(0),
        tpgid: line.field(8).and_then(|f| f.parse().ok()).unwrap_or(-1),
        minflt: line.number(10)?,
        majflt: line.number(12)?,
        utime: line.number(14)?,
        stime: line.number(15)?,
        start_ticks: line.number(22)?,
        vsize: memory.vsize,
        rss_pages: memory.rss_pages,
        exit_signal: line.field(38).and_then(|f| f.parse().ok()),
    })
}

/// Parses only what `/proc/PID/stat` says of the process's memory (no allocation: a probe run
/// for every followed process at every sample); the line must still be a whole `stat` line up
/// to the resident set (field 24).
pub fn parse_stat_memory(text: &str) -> Option<StatMemory> {
    let line = StatLine::split(text)?;
    line.pid.parse::<u32>().ok()?;
    line.memory()
}

/// The fields of `stat` after the comm that [`parse_pid_stat`] looks at: 3 to 38.
const STAT_FIELDS: usize = 36;

/// Resident memory by kind from `/proc/PID/status`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidMemory {
    /// RssAnon.
    pub anon: u64,
    /// RssFile.
    pub file: u64,
    /// RssShmem.
    pub shmem: u64,
    /// VmSwap.
    pub swap: u64,
    /// VmHWM, the kernel's own peak resident set.
    pub hwm: u64,
}

impl PidMemory {
    /// anon + file + shmem.
    pub fn rss(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
}

/// Parses `/proc/PID/status`; `None` for kernel threads (no Rss lines).
pub fn parse_pid_status(text: &str) -> Option<PidMemory> {
    let mut memory = PidMemory::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let target = match key {
            "RssAnon" => &mut memory.anon,
            "RssFile" => &mut memory.file,
            "RssShmem" => &mut memory.shmem,
            "VmSwap" => &mut memory.swap,
            "VmHWM" => &mut memory.hwm,
            _ => continue,
        };
        *target = parse_kib(value)?;
        seen = true;
    }
    seen.then_some(memory)
}

/// `"  1234 kB"` → bytes.
fn parse_kib(value: &str) -> Option<u64> {
    let number = value.trim().strip_suffix("kB")?.trim();
    number.parse::<u64>().ok()?.checked_mul(1024)
}

/// The `/proc/meminfo` fields memtrace uses, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable.
    pub available: u64,
    /// Buffers.
    pub buffers: u64,
    /// Cached.
    pub cached: u64,
    /// SwapTotal.
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
}

/// Parses `/proc/meminfo`; MemTotal and MemAvailable are required.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut info = MemInfo::default();
    let (mut has_total, mut has_available) = (false, false);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let target = match key {
            "MemTotal" => {
                has_total = true;
                &mut info.total
            }
            "MemFree" => &mut info.free,
            "MemAvailable" => {
                has_available = true;
                &mut info.available
            }
            "Buffers" => &mut info.buffers,
            "Cached" => &mut info.cached,
            "SwapTotal" => &mut info.swap_total,
            "SwapFree" => &mut info.swap_free,
            _ => continue,
        };
        *target = parse_kib(value)?;
    }
    (has_total && has_available).then_some(info)
}

/// One line of a PSI file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    /// avg10, percent.
    pub avg10: f64,
    /// avg60, percent.
    pub avg60: f64,
    /// avg300, percent.
    pub avg300: f64,
    /// Total stall time, µs.
    pub total_us: u64,
}

/// `/proc/pressure/memory`: the `some` and `full` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Psi {
    /// Some task stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled.
    pub full: PsiLine,
}

/// Parses a PSI file (`some avg10=… avg60=… avg300=… total=…` and the `full` line).
pub fn parse_psi(text: &str) -> Option<Psi> {
    let mut psi = Psi::default();
    let (mut has_some, mut has_full) = (false, false);
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let target = match words.next() {
            Some("some") => {
                has_some = true;
                &mut psi.some
            }
            Some("full") => {
                has_full = true;
                &mut psi.full
            }
            _ => continue,
        };
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "avg10" => target.avg10 = value.parse().ok()?,
                "avg60" => target.avg60 = value.parse().ok()?,
                "avg300" => target.avg300 = value.parse().ok()?,
                "total" => target.total_us = value.parse().ok()?,
                _ => {}
            }
        }
    }
    (has_some && has_full).then_some(psi)
}

/// Parses `/proc/PID/cmdline` (NUL-separated) into one space-separated line.
pub fn parse_cmdline(raw: &[u8]) -> String {
    raw.split(|&b| b == 0)
        .filter(|part| !part.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A /proc or cgroup file kept open and re-read from offset 0: a hot loop that reads the same
/// files every round then skips the path lookup, open and close each time.
#[derive(Debug)]
pub struct OpenFile {
    file: fs::File,
    path: std::path::PathBuf,
    /// What [`text`](Self::text) reads into (allocated at its first use).
    buf: Vec<u8>,
}

/// What [`OpenFile`] asks for at once: more than any per-process /proc file memtrace reads.
const OPEN_FILE_CHUNK: usize = 4096;

impl OpenFile {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self, ProcError> {
        let file = fs::File::open(path).map_err(|source| ProcError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            file,
            path: path.to_owned(),
            buf: Vec::new(),
        })
    }

    /// The file's current content (a fresh read from offset 0), in a buffer of its own.
    pub fn text(&mut self) -> Result<&str, ProcError> {
        read_from_start(&self.file, &self.path, &mut self.buf)
    }

    /// The same, read into `buf` (e.g. one buffer shared by many files kept open, so that each
    /// file holds no buffer of its own).
    pub fn text_in<'b>(&self, buf: &'b mut Vec<u8>) -> Result<&'b str, ProcError> {
        read_from_start(&self.file, &self.path, buf)
    }
}

/// Reads `file` from offset 0 into `buf`, whose length is the room it offers (grown, never shrunk
/// or zeroed again: the kernel writes straight into it). A read shorter than asked for ends it:
/// /proc and cgroup files hand out everything they have in one read when it fits, and regular
/// files only return short at their end, so a small file costs one system call.
fn read_from_start<'b>(
    file: &fs::File,
    path: &Path,
    buf: &'b mut Vec<u8>,
) -> Result<&'b str, ProcError> {
    use std::os::unix::fs::FileExt as _;
    let mut len = 0;
    loop {
        if buf.len() - len < OPEN_FILE_CHUNK {
            buf.resize(len + OPEN_FILE_CHUNK, 0);
        }
        let room = &mut buf[len..];
        let asked = room.len();
        let n = file
            .read_at(room, len as u64)
            .map_err(|source| ProcError::Io {
                path: path.display().to_string(),
                source,
            })?;
        len += n;
        if n < asked {
            break;
        }
    }
    std::str::from_utf8(&buf[..len]).map_err(|_| ProcError::Format(path.display().to_string()))
}

/// Reads a file under /proc into a string.
pub fn read(path: &Path) -> Result<String, ProcError> {
    fs::read_to_string(path).map_err(|source| ProcError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads and parses `ROOT/meminfo`.
pub fn read_meminfo(proc_root: &Path) -> Result<MemInfo, ProcError> {
    let path = proc_root.join("meminfo");
    parse_meminfo(&read(&path)?).ok_or_else(|| ProcError::Format(path.display().to_string()))
}

/// Reads and parses `ROOT/pressure/memory`; `Ok(None)` when the kernel has no PSI.
pub fn read_memory_psi(proc_root: &Path) -> Result<Option<Psi>, ProcError> {
    let path = proc_root.join("pressure/memory");
    match fs::read_to_string(&path) {
        Ok(text) => parse_psi(&text)
            .map(Some)
            .ok_or_else(|| ProcError::Format(path.display().to_string())),
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(None)
        }
        // PSI disabled at boot (psi=0) makes the file exist but fail with EOPNOTSUPP.
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(source) => Err(ProcError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The numeric entries of `ROOT` (the pids), unsorted.
pub fn list_pids(proc_root: &Path) -> Result<Vec<u32>, ProcError> {
    let entries = fs::read_dir(proc_root).map_err(|source| ProcError::Io {
        path: proc_root.display().to_string(),
        source,
    })?;
    Ok(entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests;
