//! Files a user names as input (a config, a trace): refused unless they are regular files — a
//! FIFO would block the read forever and `/dev/zero` never ends — and read only up to a cap,
//! larger ones refused. Errors are `std::io::Error`s whose text names no path (callers already
//! name the file), one line each: `not a regular file (a FIFO)`, `larger than 1.0 MiB, the most
//! memtrace reads from a config file`.
use std::{
    fs::File,
    io::{self, Read as _},
    path::Path,
};

use rustix::fs::{FileType, Mode, OFlags};

use crate::units::human_bytes;

/// The most memtrace reads from a configuration file (the documented default is ~10 KiB).
pub const CONFIG_MAX_BYTES: u64 = 1 << 20;

fn kind_words(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Symlink => "a symbolic link",
        FileType::RegularFile => "a regular file",
        FileType::Unknown => "of an unknown kind",
    }
}

fn not_regular(path: &Path, kind: FileType) -> io::Error {
    // Only for the message: say when the name is a link to the thing refused.
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let what = kind_words(kind);
    let text = if link {
        format!("not a regular file (a symbolic link to {what})")
    } else {
        format!("not a regular file ({what})")
    };
    io::Error::new(io::ErrorKind::InvalidInput, text)
}

fn too_large(cap: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "larger than {}, the most memtrace reads from {what}",
            human_bytes(cap)
        ),
    )
}

/// Reads the regular file at `path` (following symbolic links), at most `cap` bytes; `what`
/// names it in the error for a larger one (`a config file`). Never blocks on a FIFO or a
/// device: those are refused before anything is read.
pub fn read(path: &Path, cap: u64, what: &str) -> io::Result<Vec<u8>> {
    // Refuse what is not a regular file before opening it (opening some devices does
    // something), then again on the opened file, in case the name changed in between.
    let kind = FileType::from_raw_mode(rustix::fs::stat(path)?.st_mode);
    if kind != FileType::RegularFile {
        return Err(not_regular(path, kind));
    }
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(not_regular(path, kind));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > cap {
        return Err(too_large(cap, what));
    }
    // The size can change after fstat (and is 0 for some kernel files): never read past the
    // cap, whatever the file does.
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    File::from(fd)
        .take(cap.saturating_add(1))
        .read_to_end(&mut data)?;
    if data.len() as u64 > cap {
        return Err(too_large(cap, what));
    }
    Ok(data)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, cap: u64, what: &str) -> io::Result<String> {
    String::from_utf8(read(path, cap, what)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    //! Regular files read whole up to the cap; FIFOs, devices, links to devices, directories and
    //! larger files refused at once with one line.
    use std::{os::unix::fs::symlink, time::Duration};

    use super::*;

    /// Runs `read` on another thread, failing the test instead of hanging when it blocks.
    fn read_soon(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
        let path = path.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read(&path, cap, "a test file"));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("read returned within 10 s (it must not block)")
    }

    fn refusal(path: &Path, cap: u64) -> String {
        let err = read_soon(path, cap).expect_err("refused");
        let text = err.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        text
    }

    #[test]
    fn regular_files_up_to_the_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.toml");
        std::fs::write(&path, b"12345").expect("write");
        assert_eq!(read_soon(&path, 5).expect("fits"), b"12345");
        assert_eq!(
            read_to_string(&path, 100, "a test file").expect("text"),
            "12345"
        );
        let text = refusal(&path, 4);
        assert!(text.contains("larger than 4 B"), "{text}");
        assert!(text.contains("a test file"), "{text}");
        let link = dir.path().join("link.toml");
        symlink(&path, &link).expect("symlink");
        assert_eq!(
            read_soon(&link, 5).expect("a link to a file is read"),
            b"12345"
        );
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        assert!(read_to_string(&path, 100, "a test file").is_err());
        let missing = refusal(&dir.path().join("missing"), 5);
        assert!(missing.contains("No such file"), "{missing}");
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        assert!(refusal(&fifo, 1 << 20).contains("not a regular file (a FIFO)"));
        let zero = Path::new("/dev/zero");
        assert!(refusal(zero, 1 << 20).contains("not a regular file (a character device)"));
        let link = dir.path().join("zero.toml");
        symlink(zero, &link).expect("symlink");
        let text = refusal(&link, 1 << 20);
        assert!(
            text.contains("not a regular file (a symbolic link to a character device)"),
            "{text}"
        );
        assert!(refusal(dir.path(), 1 << 20).contains("(a directory)"));
    }

    #[test]
    fn kernel_files_that_report_no_size_stop_at_the_cap() {
        // /proc files are regular with size 0 but have content: the cap still holds.
        let text = refusal(Path::new("/proc/self/status"), 16);
        assert!(text.contains("larger than 16 B"), "{text}");
    }
}
