//! Directories root opens without being steered by other users. A path is walked from `/` one
//! component at a time with O_NOFOLLOW, so no symlink anywhere in it is followed and `.`/`..`
//! are refused: the directory reached is the one the path names. A *trusted* directory must
//! also be owned by root (the effective uid) and writable by nobody else, and every directory
//! above it owned by root and not writable by others unless sticky (as `/tmp`): then no other
//! user can swap, plant or rename anything in it. Files are opened relative to its fd.
use std::{
    ffi::OsStr,
    io,
    os::fd::OwnedFd,
    path::{Component, Path, PathBuf},
};

use rustix::{
    fs::{CWD, FileType, Mode, OFlags, Stat, fstat, mkdirat, openat},
    io::Errno,
};

/// Why a path is not one root may act on.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Relative, or with `.` or `..` components.
    #[error("{0} is not an absolute path without `.` or `..`")]
    NotCanonical(String),
    /// A component is a symlink (or not a directory).
    #[error("{0} is a symlink or not a directory")]
    NotDirectory(String),
    /// Owned by someone other than root.
    #[error("{path} is owned by uid {uid}, not root")]
    Owner {
        /// The directory or file.
        path: String,
        /// Its owner.
        uid: u32,
    },
    /// Writable by group or others.
    #[error(
        "{path} is writable by group or others (mode {mode:04o}; 0700 or 0755 for a directory, 0600 or 0644 for a file)"
    )]
    Writable {
        /// The directory or file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file.
    #[error("{0} is not a regular file")]
    NotFile(String),
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

impl PathError {
    /// Whether the path (or a directory on it) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    fn io(path: &Path, errno: Errno) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source: io::Error::from(errno),
        }
    }
}

/// Whether `uid` may own what root trusts: root, or the user memtrace runs as (the same thing
/// for the guard, which requires root; unit tests run as anyone).
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == crate::privilege::euid()
}

/// Why a directory or file owned by `uid` with permission bits `mode` is not trusted. `sticky_ok`:
/// a sticky, world-writable directory (as `/tmp`) is fine *above* the trusted one.
pub fn untrusted(path: &Path, uid: u32, mode: u32, sticky_ok: bool) -> Option<PathError> {
    let shown = || path.display().to_string();
    if !trusted_owner(uid) {
        return Some(PathError::Owner { path: shown(), uid });
    }
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky_ok && sticky) {
        return Some(PathError::Writable {
            path: shown(),
            mode: mode & 0o7777,
        });
    }
    None
}

fn check(stat: &Stat, path: &Path, sticky_ok: bool) -> Result<(), PathError> {
    match untrusted(path, stat.st_uid, stat.st_mode, sticky_ok) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The components of an absolute path without `.`/`..`, or an error.
fn normal_components(path: &Path) -> Result<Vec<&OsStr>, PathError> {
    let mut parts = Vec::new();
    for (i, component) in path.components().enumerate() {
        match component {
            Component::RootDir if i == 0 => {}
            Component::Normal(name) if i > 0 => parts.push(name),
            _ => return Err(PathError::NotCanonical(path.display().to_string())),
        }
    }
    if !path.has_root() {
        return Err(PathError::NotCanonical(path.display().to_string()));
    }
    Ok(parts)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn walk(path: &Path, trust: bool, create_last: bool) -> Result<OwnedFd, PathError> {
    let parts = normal_components(path)?;
    let mut shown = PathBuf::from("/");
    let mut dir =
        openat(CWD, "/", DIR_FLAGS, Mode::empty()).map_err(|e| PathError::io(&shown, e))?;
    if trust {
        let stat = fstat(&dir).map_err(|e| PathError::io(&shown, e))?;
        check(&stat, &shown, !parts.is_empty())?;
    }
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        shown.push(name);
        let mut opened = openat(&dir, *name, DIR_FLAGS, Mode::empty());
        if matches!(opened, Err(Errno::NOENT)) && last && create_last {
            match mkdirat(&dir, *name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => return Err(PathError::io(&shown, errno)),
            }
            opened = openat(&dir, *name, DIR_FLAGS, Mode::empty());
        }
        let next = opened.map_err(|errno| match errno {
            Errno::LOOP | Errno::NOTDIR => PathError::NotDirectory(shown.display().to_string()),
            errno => PathError::io(&shown, errno),
        })?;
        if trust {
            let stat = fstat(&next).map_err(|e| PathError::io(&shown, e))?;
            check(&stat, &shown, !last)?;
        }
        dir = next;
    }
    Ok(dir)
}

/// Opens the directory `path` names, following no symlink on the way.
pub fn open_dir(path: &Path) -> Result<OwnedFd, PathError> {
    walk(path, false, false)
}

/// Opens the trusted directory `path` (see the module doc), creating it with mode 0700 when it
/// is missing and `create` is set (its parent must exist).
pub fn open_trusted_dir(path: &Path, create: bool) -> Result<OwnedFd, PathError> {
    walk(path, true, create)
}

/// Opens `name` in the directory `dir` without following a symlink, and checks that it is a
/// regular file that root trusts (owned by root, writable by nobody else). `shown` names it in
/// errors.
pub fn open_trusted_file(
    dir: &OwnedFd,
    name: &str,
    flags: OFlags,
    shown: &Path,
) -> Result<OwnedFd, PathError> {
    let fd = openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|errno| match errno {
        Errno::LOOP => PathError::NotFile(shown.display().to_string()),
        errno => PathError::io(shown, errno),
    })?;
    let stat = fstat(&fd).map_err(|e| PathError::io(shown, e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(PathError::NotFile(shown.display().to_string()));
    }
    check(&stat, shown, false)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    //! The ownership and mode rule, and the walk on real directories.
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    #[test]
    fn owner_and_mode_rule() {
        let p = Path::new("/x");
        assert!(untrusted(p, 0, 0o40700, false).is_none());
        assert!(untrusted(p, 0, 0o40755, false).is_none());
        assert!(untrusted(p, 0, 0o100644, false).is_none());
        assert!(matches!(
            untrusted(p, 0, 0o40775, false),
            Some(PathError::Writable { mode: 0o775, .. })
        ));
        assert!(matches!(
            untrusted(p, 0, 0o100666, false),
            Some(PathError::Writable { .. })
        ));
        // Sticky and world-writable: fine above the trusted directory, never as it.
        assert!(untrusted(p, 0, 0o41777, true).is_none());
        assert!(untrusted(p, 0, 0o41777, false).is_some());
        assert!(untrusted(p, 0, 0o40777, true).is_some());
        // Someone else's (65534 is nobody; the tests do not run as nobody).
        assert!(matches!(
            untrusted(p, 65534, 0o40700, false),
            Some(PathError::Owner { uid: 65534, .. })
        ));
    }

    #[test]
    fn walk_refuses_symlinks_dots_and_open_modes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path();
        std::fs::create_dir(base.join("real")).expect("mkdir");
        symlink(base.join("real"), base.join("link")).expect("symlink");
        assert!(open_dir(&base.join("real")).is_ok());
        assert!(matches!(
            open_dir(&base.join("link")),
            Err(PathError::NotDirectory(_))
        ));
        assert!(matches!(
            open_dir(&base.join("link/x")),
            Err(PathError::NotDirectory(_))
        ));
        assert!(matches!(
            open_dir(&base.join("real/../real")),
            Err(PathError::NotCanonical(_))
        ));
        assert!(matches!(
            open_dir(Path::new("relative")),
            Err(PathError::NotCanonical(_))
        ));

        let state = base.join("state");
        assert!(open_trusted_dir(&state, false).is_err_and(|e| e.is_not_found()));
        open_trusted_dir(&state, true).expect("created");
        let mode = std::fs::metadata(&state)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700, "created 0700");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            open_trusted_dir(&state, false),
            Err(PathError::Writable { .. })
        ));
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let dir = open_trusted_dir(&state, false).expect("0755 is fine");

        std::fs::write(state.join("f"), "x").expect("write");
        std::fs::set_permissions(state.join("f"), std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
        assert!(matches!(
            open_trusted_file(&dir, "f", OFlags::RDONLY, &state.join("f")),
            Err(PathError::Writable { .. })
        ));
        std::fs::set_permissions(state.join("f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert!(open_trusted_file(&dir, "f", OFlags::RDONLY, &state.join("f")).is_ok());
        symlink(state.join("f"), state.join("l")).expect("symlink");
        assert!(matches!(
            open_trusted_file(&dir, "l", OFlags::RDONLY, &state.join("l")),
            Err(PathError::NotFile(_))
        ));
    }
}
