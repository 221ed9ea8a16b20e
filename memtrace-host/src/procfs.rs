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
    /// Resident set in pages (anon + file + shmem).
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
}

/// Parses the content of `/proc/PID/stat`.
///
/// The comm is everything between the first `(` and the *last* `)`: a comm may itself contain
/// parentheses and spaces.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields after the comm, numbered from 3 (state) as in proc(5), up to 38 (exit signal); on
    // the stack: this runs for every process at every sample.
    let mut rest = [""; STAT_FIELDS];
    for (slot, word) in rest
        .iter_mut()
        .zip(text.get(close + 1..)?.split_ascii_whitespace())
    {
        *slot = word;
    }
    let field = |n: usize| rest.get(n - 3).copied().filter(|f| !f.is_empty());
    let number = |n: usize| field(n).and_then(|f| f.parse::<u64>().ok());
    Some(PidStat {
        pid,
        comm,
        state: field(3)?.chars().next()?,
        ppid: u32::try_from(number(4)?).ok()?,
        session: u32::try_from(number(6)?).ok()?,
        tty_nr: field(7).and_then(|f| f.parse().ok()).unwrap_or(0),
        tpgid: field(8).and_then(|f| f.parse().ok()).unwrap_or(-1),
        minflt: number(10)?,
        majflt: number(12)?,
        utime: number(14)?,
        stime: number(15)?,
        start_ticks: number(22)?,
        rss_pages: number(24)?,
        exit_signal: field(38).and_then(|f| f.parse().ok()),
    })
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
mod tests {
    //! Parsing real and hostile /proc content.
    use super::*;

    const STAT_TAIL: &str = "S 1 42 42 0 -1 4194560 1234 0 5 0 10 20 0 0 20 0 1 0 987654 \
                             123456789 2048 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_plain() {
        let stat = parse_pid_stat(&format!("42 (python3) {STAT_TAIL}")).expect("parses");
        assert_eq!(stat.pid, 42);
        assert_eq!(stat.comm, "python3");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.session, 42);
        assert_eq!(stat.minflt, 1234);
        assert_eq!(stat.majflt, 5);
        assert_eq!((stat.utime, stat.stime), (10, 20));
        assert_eq!(stat.start_ticks, 987654);
        assert_eq!(stat.rss_pages, 2048);
        assert_eq!(stat.exit_signal, Some(17));
        assert_eq!(
            (stat.tty_nr, stat.tpgid),
            (0, -1),
            "no controlling terminal"
        );
        assert!(!stat.is_thread());
        // A shell on /dev/pts/1 (136:1) whose foreground job is process group 77.
        let shell = STAT_TAIL.replacen("S 1 42 42 0 -1", "S 1 42 42 34817 77", 1);
        let shell = parse_pid_stat(&format!("42 (bash) {shell}")).expect("parses");
        assert_eq!((shell.tty_nr, shell.tpgid), (34817, 77));
        let thread = STAT_TAIL.replace(" 17 1 0 0 0 0 0", " -1 1 0 0 0 0 0");
        let thread = parse_pid_stat(&format!("43 (python3) {thread}")).expect("parses");
        assert!(thread.is_thread());
        let short =
            parse_pid_stat("9 (x) S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0").expect("parses");
        assert_eq!(short.exit_signal, None, "a short line is no thread");
    }

    #[test]
    fn stat_hostile_comm() {
        let stat = parse_pid_stat(&format!("7 (a) R (b) {STAT_TAIL}")).expect("parses");
        assert_eq!(stat.comm, "a) R (b");
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.start_ticks, 987654);
        let stat = parse_pid_stat(&format!("8 (x y ) ) {STAT_TAIL}")).expect("parses");
        assert_eq!(stat.comm, "x y ) ");
        assert_eq!(stat.state, 'S');
    }

    #[test]
    fn stat_garbage_is_none() {
        assert_eq!(parse_pid_stat(""), None);
        assert_eq!(parse_pid_stat("12 (short) S 1"), None);
        assert_eq!(parse_pid_stat(") 12 ("), None);
    }

    #[test]
    fn status_kinds() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nRssAnon:\t  1024 kB\nRssFile:\t 512 kB\n\
                    RssShmem:\t 0 kB\nVmSwap:\t 4 kB\n";
        let memory = parse_pid_status(text).expect("parses");
        assert_eq!(memory.anon, 1024 * 1024);
        assert_eq!(memory.file, 512 * 1024);
        assert_eq!(memory.swap, 4 * 1024);
        assert_eq!(memory.hwm, 2048 * 1024);
        assert_eq!(memory.rss(), 1536 * 1024);
        assert_eq!(parse_pid_status("Name:\tkthreadd\nPid:\t2\n"), None);
    }

    #[test]
    fn meminfo_and_psi() {
        let text = "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 50 kB\nSwapTotal: 0 kB\n";
        let info = parse_meminfo(text).expect("parses");
        assert_eq!((info.total, info.available), (102_400, 51_200));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        let psi = parse_psi(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=123\nfull avg10=0.75 avg60=0.00 avg300=0.00 total=45\n",
        )
        .expect("parses");
        assert_eq!(psi.some.avg10, 1.5);
        assert_eq!(psi.full.total_us, 45);
        assert_eq!(parse_psi("some avg10=x\n"), None);
    }

    #[test]
    fn open_file_rereads_from_the_start() {
        let path = std::env::temp_dir().join(format!("memtrace-openfile-{}", std::process::id()));
        fs::write(&path, "one").expect("write");
        let mut file = OpenFile::open(&path).expect("open");
        assert_eq!(file.text().expect("read"), "one");
        fs::write(&path, "two, longer").expect("write");
        assert_eq!(file.text().expect("read"), "two, longer");
        // Longer than one read, then short again: the buffer grows and is reused.
        let long = "x".repeat(3 * OPEN_FILE_CHUNK + 17);
        fs::write(&path, &long).expect("write");
        assert_eq!(file.text().expect("read"), long);
        fs::write(&path, "three").expect("write");
        assert_eq!(file.text().expect("read"), "three");
        let meminfo = OpenFile::open(Path::new("/proc/meminfo")).and_then(|mut f| {
            let first = f.text()?.len();
            let second = f.text()?.len();
            Ok((first, second))
        });
        let (first, second) = meminfo.expect("meminfo twice");
        assert!(first > 100 && second > 100);
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn cmdline_joins() {
        assert_eq!(parse_cmdline(b"python3\0-m\0x y\0"), "python3 -m x y");
        assert_eq!(parse_cmdline(b""), "");
    }
}
