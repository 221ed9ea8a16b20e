//! Where the guard keeps its state: a directory only root can change (see
//! [`crate::host::safe_path`]: root-owned, 0700 or 0755, no symlink on the way, created 0700
//! when missing), and in it files opened relative to the directory's fd, never through a
//! symlink, refused unless root-owned and 0600/0644. A file is replaced atomically: written to
//! a fresh temp file (random name, O_CREAT|O_EXCL|O_NOFOLLOW) in the same directory, synced,
//! then renamed over the old one.
use std::{
    hash::{BuildHasher as _, RandomState},
    io::{self, Read as _, Write as _},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

use rustix::{
    fs::{AtFlags, Mode, OFlags, fsync, openat, renameat, unlinkat},
    io::Errno,
};

use crate::host::safe_path::{self, PathError};

/// Where the guards and runs keep their state by default.
pub const STATE_DIR: &str = "/run/memtrace";

/// The most a state file may hold: a few thousand suspended processes fit in far less.
const MAX_BYTES: u64 = 4 << 20;

/// Why the state directory or a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state file path has no file name.
    #[error("state file {0}: not a file path")]
    NotAFile(String),
    /// The directory is not one root alone controls.
    #[error("state directory: {0}")]
    Dir(PathError),
    /// The file is not one root alone controls.
    #[error("state file: {0}")]
    File(PathError),
    /// The file is larger than a state file can be.
    #[error("state file {0} is larger than 4 MiB")]
    TooLarge(String),
    /// The file cannot be written.
    #[error("state file {path} cannot be written ({source}); nothing could be suspended safely")]
    NotWritable {
        /// The file.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

/// A directory root alone controls, open.
#[derive(Debug)]
pub struct StateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl StateDir {
    /// Opens (with `create`: creates 0700 when missing) and checks the directory.
    pub fn open(path: &Path, create: bool) -> Result<Arc<Self>, StateError> {
        let fd = safe_path::open_trusted_dir(path, create).map_err(StateError::Dir)?;
        Ok(Arc::new(Self {
            fd,
            path: path.to_owned(),
        }))
    }

    /// Opens and checks the directory, or `None` when it does not exist.
    pub fn open_existing(path: &Path) -> Result<Option<Arc<Self>>, StateError> {
        match safe_path::open_trusted_dir(path, false) {
            Ok(fd) => Ok(Some(Arc::new(Self {
                fd,
                path: path.to_owned(),
            }))),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(StateError::Dir(err)),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its fd, for operations relative to it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The names of the files in it.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let dir = rustix::fs::Dir::read_from(&self.fd)?;
        Ok(dir
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str().ok().map(str::to_owned))
            .filter(|name| name != "." && name != "..")
            .collect())
    }
}

/// A file in a [`StateDir`].
#[derive(Clone, Debug)]
pub struct StateFile {
    dir: Arc<StateDir>,
    name: String,
}

/// Splits a state file path into its directory and file name.
pub fn split(path: &Path) -> Result<(PathBuf, String), StateError> {
    let shown = || StateError::NotAFile(path.display().to_string());
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(shown)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(shown)?;
    Ok((dir.to_owned(), name.to_owned()))
}

fn random_suffix() -> u64 {
    // RandomState is keyed from the OS's random source; the name only needs to be unguessable
    // (O_EXCL already makes a planted file or symlink harmless).
    RandomState::new().hash_one(std::process::id())
}

impl StateFile {
    /// The file `name` in `dir`.
    pub fn new(dir: &Arc<StateDir>, name: &str) -> Self {
        Self {
            dir: Arc::clone(dir),
            name: name.to_owned(),
        }
    }

    /// Its path, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    /// Its file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory.
    pub fn dir(&self) -> &Arc<StateDir> {
        &self.dir
    }

    fn open_checked(&self) -> Result<Option<OwnedFd>, StateError> {
        match safe_path::open_trusted_file(&self.dir.fd, &self.name, OFlags::RDONLY, &self.path()) {
            Ok(fd) => Ok(Some(fd)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(StateError::File(err)),
        }
    }

    /// Checks that the file, if it exists, is one root alone controls.
    pub fn check(&self) -> Result<(), StateError> {
        self.open_checked().map(drop)
    }

    /// Reads the file (checked as in [`Self::check`]); `None` when it does not exist.
    pub fn read(&self) -> Result<Option<String>, StateError> {
        let Some(fd) = self.open_checked()? else {
            return Ok(None);
        };
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| {
                StateError::File(PathError::Io {
                    path: self.path().display().to_string(),
                    source,
                })
            })?;
        if text.len() as u64 > MAX_BYTES {
            return Err(StateError::TooLarge(self.path().display().to_string()));
        }
        Ok(Some(text))
    }

    /// Proves the directory takes new files (a temp file is created, synced and removed), so
    /// a guard that could never record a suspension refuses to start.
    pub fn check_writable(&self) -> Result<(), StateError> {
        let (fd, tmp) = self
            .create_temp()
            .map_err(|source| StateError::NotWritable {
                path: self.path().display().to_string(),
                source,
            })?;
        let synced = fsync(&fd).map_err(io::Error::from);
        let _ = unlinkat(&self.dir.fd, &tmp, AtFlags::empty());
        synced.map_err(|source| StateError::NotWritable {
            path: self.path().display().to_string(),
            source,
        })
    }

    fn create_temp(&self) -> io::Result<(OwnedFd, String)> {
        let mut last = Errno::EXIST;
        for _ in 0..8 {
            let tmp = format!(".{}.{:016x}.tmp", self.name, random_suffix());
            match openat(
                &self.dir.fd,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => return Ok((fd, tmp)),
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(errno) => return Err(errno.into()),
            }
        }
        Err(last.into())
    }

    /// Replaces the file with `text` atomically (temp file, fsync, rename, fsync of the
    /// directory).
    pub fn write(&self, text: &str) -> io::Result<()> {
        let (fd, tmp) = self.create_temp()?;
        let written = (|| -> io::Result<()> {
            let mut file = std::fs::File::from(fd);
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            renameat(&self.dir.fd, &tmp, &self.dir.fd, &self.name)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = unlinkat(&self.dir.fd, &tmp, AtFlags::empty());
        }
        written?;
        // The rename itself is durable once the directory is synced.
        fsync(&self.dir.fd)?;
        Ok(())
    }

    /// Removes the file (gone already is fine).
    pub fn remove(&self) -> io::Result<()> {
        match unlinkat(&self.dir.fd, &self.name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Permission checks, the write path and its refusal to follow planted symlinks.
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn directory_is_created_0700_and_open_modes_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("state");
        assert!(
            StateDir::open_existing(&path)
                .expect("missing is fine")
                .is_none()
        );
        let dir = StateDir::open(&path, true).expect("created");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777,
            0o700
        );
        chmod(&path, 0o755);
        assert!(StateDir::open(&path, false).is_ok(), "0755 is fine");
        for mode in [0o775, 0o757, 0o777] {
            chmod(&path, mode);
            let err = StateDir::open(&path, false).expect_err("group/world-writable");
            assert!(
                err.to_string().contains("writable by group or others"),
                "{err}"
            );
        }
        chmod(&path, 0o700);

        let file = StateFile::new(&dir, "guard.json");
        assert_eq!(file.read().expect("absent is fine"), None);
        file.write("{}").expect("write");
        assert_eq!(file.read().expect("read").as_deref(), Some("{}"));
        let mode = std::fs::metadata(file.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
        chmod(&file.path(), 0o644);
        assert!(file.check().is_ok(), "0644 is fine");
        chmod(&file.path(), 0o666);
        let err = file.check().expect_err("world-writable file");
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
        file.remove().expect("remove");
        file.remove().expect("removing twice is fine");
        assert_eq!(dir.names().expect("list"), Vec::<String>::new());
    }

    #[test]
    fn planted_symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(&tmp.path().join("state"), true).expect("dir");
        let victim = tmp.path().join("root-only-file");
        std::fs::write(&victim, "precious").expect("write");
        // The old write path went through `<name>.tmp`: plant it, and a symlink as the file.
        symlink(&victim, dir.path().join("guard.tmp")).expect("symlink");
        symlink(&victim, dir.path().join("guard.json.tmp")).expect("symlink");
        let file = StateFile::new(&dir, "guard.json");
        file.write("{\"state\":1}").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert_eq!(file.read().expect("read").as_deref(), Some("{\"state\":1}"));

        let linked = StateFile::new(&dir, "linked.json");
        symlink(&victim, linked.path()).expect("symlink");
        let err = linked.read().expect_err("a symlink is refused");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(linked.check().is_err());
    }

    #[test]
    fn unwritable_directory_and_oversized_file_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // /proc takes no new files, whoever asks (root included).
        let proc_dir = StateDir::open(Path::new("/proc"), false).expect("/proc is root's");
        let err = StateFile::new(&proc_dir, "guard.json")
            .check_writable()
            .expect_err("not writable");
        assert!(err.to_string().contains("cannot be written"), "{err}");

        let dir = StateDir::open(&tmp.path().join("state"), true).expect("dir");
        let file = StateFile::new(&dir, "big.json");
        file.check_writable().expect("writable");
        assert!(
            dir.names().expect("list").is_empty(),
            "the probe is removed"
        );
        std::fs::write(file.path(), vec![b' '; (MAX_BYTES + 1) as usize]).expect("write");
        chmod(&file.path(), 0o600);
        assert!(matches!(file.read(), Err(StateError::TooLarge(_))));
    }

    #[test]
    fn split_needs_a_file_name_in_a_directory() {
        assert_eq!(
            split(Path::new("/run/memtrace/x.json")).expect("ok"),
            (PathBuf::from("/run/memtrace"), "x.json".to_owned())
        );
        assert!(split(Path::new("x.json")).is_err());
        assert!(split(Path::new("/")).is_err());
    }
}
