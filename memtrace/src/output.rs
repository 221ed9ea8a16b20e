//! Where the commands' results go, and how a failure there ends.
//!
//! Stdout: every command prints through [`out!`](crate::out) / [`outln!`](crate::outln), which
//! write and flush and return a [`StdoutError`] instead of panicking like `print!`. `main.rs`
//! turns a broken pipe (`memtrace top --json | head`) into a quiet exit with status
//! [`BROKEN_PIPE_STATUS`], and any other failure (`>/dev/full`: ENOSPC, EIO) into one error line.
//!
//! Files: [`write_file`] writes a whole output file (an export, an HTML report) to a temporary
//! name in the destination's directory and renames it into place only once everything is
//! written and synced; on failure the temporary file is removed and an old file of that name
//! is left as it was.
use std::{
    fmt,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

/// The exit status after a broken pipe on stdout: what a shell reports for a process killed by
/// SIGPIPE (128 + 13), so `memtrace … | head` looks like any other filter cut short.
pub const BROKEN_PIPE_STATUS: u8 = 128 + 13;

/// Stdout could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout: {0}")]
pub struct StdoutError(#[from] pub io::Error);

impl StdoutError {
    /// Whether the reader went away (a closed pipe), which is no error worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes `args` to stdout and flushes it (use [`out!`](crate::out) and
/// [`outln!`](crate::outln)).
pub fn print_fmt(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.flush()?;
    Ok(())
}

/// Writes `bytes` to stdout and flushes it.
pub fn print_bytes(bytes: &[u8]) -> Result<(), StdoutError> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}

/// `print!` that returns a [`StdoutError`] instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print_fmt(format_args!($($arg)*))
    };
}

/// `println!` that returns a [`StdoutError`] instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::print_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// An output file could not be written; nothing was left at its path.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteFileError {
    /// The destination.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

/// Writes `path` whole or not at all: `fill` writes into a temporary file next to it (same
/// directory, so the rename stays on one filesystem), which is synced and renamed over `path`
/// (over a symlink itself, never through it). When `fill`, the sync or the rename fails, the
/// temporary file is removed and `path` is untouched. A `path` that exists and is no regular
/// file (`/dev/stdout`, a FIFO) is written directly.
pub fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), WriteFileError> {
    let fail = |source| WriteFileError {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        // `-o /dev/stdout`, a FIFO, a device: a stream, not a file to replace.
        let file = File::options().write(true).open(path).map_err(fail)?;
        return fill_and_flush(&file, fill).map_err(fail);
    }
    let temp = Temp::create(path).map_err(fail)?;
    fill_and_flush(&temp.file, fill)
        .and_then(|()| temp.file.sync_all())
        .map_err(fail)?;
    temp.persist(path).map_err(fail)
}

/// Runs `fill` on a buffered writer into `file` and flushes it.
fn fill_and_flush(
    file: &File,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = BufWriter::new(file);
    fill(&mut out)?;
    out.flush()
}

/// A temporary file next to the destination, removed on drop unless persisted.
struct Temp {
    file: File,
    path: PathBuf,
    persisted: bool,
}

impl Temp {
    /// Creates `.NAME.PID-N.tmp` in `dest`'s directory, exclusively (never an existing file or a
    /// symlink planted there), with `File::create`'s mode.
    fn create(dest: &Path) -> io::Result<Self> {
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut attempt = 0u32;
        loop {
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".{}-{attempt}.tmp", std::process::id()));
            let path = dir.join(temp_name);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(Self {
                        file,
                        path,
                        persisted: false,
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Renames the file over `dest`.
    fn persist(mut self, dest: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, dest)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Whole files or none: a failing writer leaves the old file and no temporary behind.
    use std::fs;

    use memtrace_testkit::files::entry_names as names;

    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.csv");
        write_file(&out, |w| w.write_all(b"first\n")).expect("written");
        assert_eq!(fs::read(&out).expect("read"), b"first\n");

        let err = write_file(&out, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .expect_err("fails");
        assert!(err.to_string().contains("out.csv"), "{err}");
        assert_eq!(fs::read(&out).expect("read"), b"first\n", "old file kept");
        assert_eq!(names(dir.path()), ["out.csv"], "no temporary left");

        let fresh = dir.path().join("fresh.html");
        write_file(&fresh, |_| Err(io::Error::other("boom"))).expect_err("fails");
        assert_eq!(names(dir.path()), ["out.csv"], "nothing created");
    }

    #[test]
    fn streams_are_written_in_place() {
        write_file(Path::new("/dev/null"), |w| w.write_all(b"gone")).expect("written");
        let meta = fs::symlink_metadata("/dev/null").expect("stat");
        assert!(!meta.is_file(), "/dev/null was not replaced by a file");
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let broken = StdoutError(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(broken.is_broken_pipe());
        let full = StdoutError(io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(!full.is_broken_pipe());
        assert!(
            full.to_string().starts_with("writing to stdout: "),
            "{full}"
        );
    }
}
