//! Swap files on disk: creating one (fallocate or zeros, mode 0600, no-CoW on btrfs) that
//! deletes itself unless committed, its mkswap signature, mkswap, swapon/swapoff, and the errors
//! of every swap command. Active swap is read in [`super::active`], the filesystem and
//! free-space checks are in [`super::fs`], `/etc/fstab` editing in [`super::fstab`].
use std::{
    ffi::CString,
    fs, io,
    io::{Read as _, Seek as _, Write as _},
    os::unix::{
        ffi::OsStrExt as _,
        fs::{OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
    process::Command,
};

use rustix::{
    fs::{FallocateFlags, IFlags, ioctl_getflags, ioctl_setflags},
    io::Errno,
};

use super::fs::FsKind;

/// What the swap commands refuse or fail at; each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// Needs root.
    #[error("{0} must be run as root")]
    NotRoot(&'static str),
    /// A filesystem swap files cannot live on.
    #[error("{path}: swap files are not supported on {fs} ({why})")]
    UnsupportedFs {
        /// The directory checked.
        path: String,
        /// The filesystem's name.
        fs: &'static str,
        /// Why not.
        why: &'static str,
    },
    /// Too little free space.
    #[error(
        "not enough free disk space in {path}: {available} available, need {needed} plus a {margin} margin"
    )]
    NotEnoughDisk {
        /// The directory checked.
        path: String,
        /// Free for unprivileged use, human-readable.
        available: String,
        /// The swap size, human-readable.
        needed: String,
        /// The margin kept free, human-readable.
        margin: String,
    },
    /// The path holds something memtrace did not make.
    #[error("{0} exists and is not a swap file; refusing to touch it")]
    NotSwapFile(String),
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A required program is missing.
    #[error("`{0}` not found (install util-linux)")]
    ToolMissing(&'static str),
    /// A program failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Its stderr (first line) or exit status.
        message: String,
    },
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SwapError {
    let what = what.into();
    move |source| SwapError::Io { what, source }
}

/// Whether `path` is a regular file carrying mkswap's signature (`SWAPSPACE2` at the end of the
/// first page). Symlinks are never followed.
pub fn has_swap_signature(path: &Path) -> Result<bool, SwapError> {
    let page = u64::from(crate::privilege::page_size());
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(io_err(format!("stat {}", path.display())))?;
    if !meta.file_type().is_file() || meta.len() < page {
        return Ok(false);
    }
    let mut magic = [0u8; 10];
    file.seek(io::SeekFrom::Start(page - 10))
        .and_then(|_| file.read_exact(&mut magic))
        .map_err(io_err(format!("reading {}", path.display())))?;
    Ok(&magic == b"SWAPSPACE2")
}

pub(super) fn c_path(path: &Path) -> Result<CString, SwapError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io_err(format!("path {}", path.display()))(io::Error::from(io::ErrorKind::InvalidInput))
    })
}

/// A swap file being set up: deleted on drop (after swapoff if it was enabled) unless
/// [`PartialFile::commit`] was called, so a failed setup leaves nothing behind.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    enabled: bool,
    committed: bool,
}

impl PartialFile {
    /// Takes charge of `path`, a file this process just created.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            enabled: false,
            committed: false,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs mkswap on the file.
    pub fn mkswap(&self) -> Result<(), SwapError> {
        run_mkswap(&self.path)
    }

    /// Enables the file as swap (the guard will swapoff it if not committed).
    pub fn enable(&mut self) -> Result<(), SwapError> {
        swapon(&self.path)?;
        self.enabled = true;
        Ok(())
    }

    /// Keeps the file.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.enabled
            && let Err(err) = swapoff(&self.path)
        {
            log::warn!("undoing a failed setup: {err}");
        }
        match fs::remove_file(&self.path) {
            Ok(()) => log::debug!("removed the partial {}", self.path.display()),
            Err(err) => log::warn!("could not remove partial {}: {err}", self.path.display()),
        }
    }
}

/// Creates `path` (which must not exist) as a `size`-byte file, mode 0600, with its blocks
/// allocated (fallocate, or written zeros where the filesystem lacks it) and marked no-CoW first
/// on btrfs. The returned guard deletes the file unless committed.
pub fn create(path: &Path, size: u64, fs_kind: FsKind) -> Result<PartialFile, SwapError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    let guard = PartialFile::new(path.to_path_buf());
    let what = |step: &str| format!("{step} {}", path.display());
    // The umask can only take bits away, but say exactly what is meant.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err(what("chmod 0600")))?;
    if fs_kind.name == "btrfs" {
        set_nocow(&file).map_err(io_err(what("marking no-CoW (chattr +C) on btrfs:")))?;
    }
    // fallocate's length is a signed off_t: refuse what it cannot express.
    if libc::off_t::try_from(size).is_err() {
        return Err(io_err(what("size of"))(io::Error::from(
            io::ErrorKind::InvalidInput,
        )));
    }
    match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, size) {
        Ok(()) => {}
        Err(Errno::OPNOTSUPP | Errno::INVAL) => {
            write_zeros(&file, size).map_err(io_err(what("writing zeros to")))?;
        }
        Err(errno) => return Err(io_err(what("fallocate"))(io::Error::from(errno))),
    }
    file.sync_all().map_err(io_err(what("fsync")))?;
    Ok(guard)
}

fn write_zeros(mut file: &fs::File, size: u64) -> io::Result<()> {
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(chunk.get(..n).unwrap_or(&chunk))?;
        left -= n as u64;
    }
    Ok(())
}

/// Sets FS_NOCOW_FL (`chattr +C`); must happen while the file is still empty.
fn set_nocow(file: &fs::File) -> io::Result<()> {
    let flags = ioctl_getflags(file)?;
    ioctl_setflags(file, flags | IFlags::NOCOW)?;
    Ok(())
}

/// Finds a util-linux program on PATH or in the sbin directories (sudo and cron often drop them
/// from PATH).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `mkswap PATH`.
pub fn run_mkswap(path: &Path) -> Result<(), SwapError> {
    let tool = find_tool("mkswap").ok_or(SwapError::ToolMissing("mkswap"))?;
    let output = Command::new(tool)
        .arg(path)
        .output()
        .map_err(io_err("running mkswap"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .map_or_else(|| output.status.to_string(), |line| line.trim().to_owned());
    Err(SwapError::Tool {
        tool: "mkswap",
        message,
    })
}

/// Enables swap on `path` (the swapon(2) system call).
pub fn swapon(path: &Path) -> Result<(), SwapError> {
    let c_path = c_path(path)?;
    // rustix has no swapon.
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call; swapon
    // only reads it (flags 0: no priority, no discard).
    if unsafe { libc::swapon(c_path.as_ptr(), 0) } != 0 {
        return Err(swap_call_error("swapon", path));
    }
    Ok(())
}

/// Disables swap on `path` (the swapoff(2) system call); its pages move back into RAM first.
pub fn swapoff(path: &Path) -> Result<(), SwapError> {
    let c_path = c_path(path)?;
    // rustix has no swapoff.
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call; swapoff
    // only reads it.
    if unsafe { libc::swapoff(c_path.as_ptr()) } != 0 {
        return Err(swap_call_error("swapoff", path));
    }
    Ok(())
}

fn swap_call_error(call: &str, path: &Path) -> SwapError {
    let err = io::Error::last_os_error();
    let hint = match err.raw_os_error() {
        Some(libc::EPERM) => " (needs root)",
        Some(libc::EINVAL) if call == "swapon" => {
            " (the filesystem cannot host swap files, or the file has holes)"
        }
        Some(libc::ENOMEM) => " (not enough free RAM to take the swapped pages back)",
        _ => "",
    };
    io_err(format!("{call} {}{hint}", path.display()))(err)
}

#[cfg(test)]
mod tests {
    //! The self-deleting partial file.
    use super::*;
    use crate::swap::fs::filesystem_of;

    #[test]
    fn partial_file_deletes_unless_committed() {
        let dir = std::env::temp_dir().join(format!("memtrace-partial-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let kind = filesystem_of(&dir).expect("statfs");
        let dropped = dir.join("dropped");
        drop(create(&dropped, 1 << 20, kind).expect("creates"));
        assert!(!dropped.exists(), "an uncommitted file is removed");
        let kept = dir.join("kept");
        let guard = create(&kept, 1 << 20, kind).expect("creates");
        guard.commit();
        let meta = fs::metadata(&kept).expect("kept");
        assert_eq!(meta.len(), 1 << 20);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(!has_swap_signature(&kept).expect("reads"));
        assert!(create(&kept, 1 << 20, kind).is_err(), "never overwrites");
        assert!(
            kept.exists(),
            "a refused create leaves the existing file alone"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
