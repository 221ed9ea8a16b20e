//! One guard per scope, one writer per state file: exclusive `flock(2)` locks on files in the
//! state directory. The holder writes its pid into the lock file so that the one refused can
//! name it. The file is removed on release while still locked, and a lock won on a file that
//! was removed meanwhile is taken again on the new one, so two holders can never coexist.
//! The kernel drops the lock with its holder, whatever way it ends: a free lock next to a
//! state file means that file's writer is gone.
use std::{
    io,
    os::fd::OwnedFd,
    sync::Arc,
    time::{Duration, Instant},
};

use rustix::{
    fs::{
        AtFlags, FlockOperation, Mode, OFlags, flock, fstat, ftruncate, openat, statat, unlinkat,
    },
    io::{Errno, pread, pwrite},
};

use super::state::StateDir;
use crate::{collect::scope::Scope, host::safe_path};

/// A lock that could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it.
    #[error("{what}: {} holds {path}", holder(.pid))]
    Held {
        /// What the lock protects, as a sentence.
        what: String,
        /// The lock file.
        path: String,
        /// The holder's pid, when it has written it.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("lock {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

fn holder(pid: &Option<u32>) -> String {
    pid.map_or_else(
        || "another memtrace process".to_owned(),
        |pid| format!("memtrace pid {pid}"),
    )
}

/// An exclusive lock, held until dropped.
#[derive(Debug)]
pub struct Lock {
    dir: Arc<StateDir>,
    name: String,
    /// Holds the lock: closing it releases.
    _fd: OwnedFd,
}

/// Whether a lock is free, as a probe that takes nothing sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nobody holds it (or the file does not exist).
    Free,
    /// Held, by this pid if it says.
    Held(Option<u32>),
}

fn io_err(dir: &StateDir, name: &str, source: impl Into<io::Error>) -> LockError {
    LockError::Io {
        path: dir.path().join(name).display().to_string(),
        source: source.into(),
    }
}

fn open(dir: &StateDir, name: &str, create: bool) -> Result<OwnedFd, LockError> {
    let mut flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if create {
        flags |= OFlags::CREATE;
    }
    let fd = openat(dir.fd(), name, flags, Mode::from_raw_mode(0o600))
        .map_err(|errno| io_err(dir, name, errno))?;
    let stat = fstat(&fd).map_err(|errno| io_err(dir, name, errno))?;
    let path = dir.path().join(name);
    if let Some(err) = safe_path::untrusted(&path, stat.st_uid, stat.st_mode, false) {
        return Err(io_err(dir, name, io::Error::other(err)));
    }
    Ok(fd)
}

fn read_pid(fd: &OwnedFd) -> Option<u32> {
    let mut buf = [0u8; 32];
    let n = pread(fd, &mut buf, 0).ok()?;
    std::str::from_utf8(buf.get(..n)?).ok()?.trim().parse().ok()
}

/// The pid in a held lock file; a holder that only just won may not have written it yet.
fn holder_pid(fd: &OwnedFd) -> Option<u32> {
    for _ in 0..10 {
        if let Some(pid) = read_pid(fd) {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

impl Lock {
    /// Takes the lock `name` in `dir`, retrying for up to `wait`; `what` says what it protects
    /// in the refusal.
    pub fn acquire(
        dir: &Arc<StateDir>,
        name: &str,
        what: &str,
        wait: Duration,
    ) -> Result<Self, LockError> {
        let deadline = Instant::now() + wait;
        loop {
            let fd = open(dir, name, true)?;
            match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    // Won, but on the file a releasing holder removed? Then take the new one.
                    let ours = fstat(&fd).map_err(|errno| io_err(dir, name, errno))?;
                    let linked = statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|now| now.st_dev == ours.st_dev && now.st_ino == ours.st_ino);
                    if !linked {
                        continue;
                    }
                    let pid = format!("{}\n", std::process::id());
                    ftruncate(&fd, 0)
                        .and_then(|()| pwrite(&fd, pid.as_bytes(), 0))
                        .map_err(|errno| io_err(dir, name, errno))?;
                    return Ok(Self {
                        dir: Arc::clone(dir),
                        name: name.to_owned(),
                        _fd: fd,
                    });
                }
                Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(Errno::WOULDBLOCK) => {
                    return Err(LockError::Held {
                        what: what.to_owned(),
                        path: dir.path().join(name).display().to_string(),
                        pid: holder_pid(&fd),
                    });
                }
                Err(errno) => return Err(io_err(dir, name, errno)),
            }
        }
    }

    /// Whether the lock `name` in `dir` is held, without taking it for longer than a look.
    pub fn probe(dir: &StateDir, name: &str) -> Result<Probe, LockError> {
        let fd = match open(dir, name, false) {
            Ok(fd) => fd,
            Err(LockError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(Probe::Free);
            }
            Err(err) => return Err(err),
        };
        match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            // Closing the fd releases the lock at once.
            Ok(()) => Ok(Probe::Free),
            Err(Errno::WOULDBLOCK) => Ok(Probe::Held(holder_pid(&fd))),
            Err(errno) => Err(io_err(dir, name, errno)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join(&self.name)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held; the lock itself goes when the fd closes right after.
        let _ = unlinkat(self.dir.fd(), &self.name, AtFlags::empty());
    }
}

/// A file-name-safe spelling of `text`: letters, digits, `.`, `_` and `-` stay, `/` becomes
/// `+`, anything else `%XX`; over-long names are shortened to a hash.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                out.push(char::from(byte))
            }
            b'/' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    if out.len() > 160 {
        // FNV-1a: stable across builds, which a lock name must be.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        return format!("{}~{hash:016x}", out.get(..64).unwrap_or_default());
    }
    out
}

/// The name scope locks and default state files carry: `machine`, or `cgroup` and the
/// cgroup's canonical path.
pub fn scope_key(scope: &Scope) -> String {
    match scope {
        Scope::Machine => "machine".to_owned(),
        Scope::Cgroup { path, .. } => {
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            format!("cgroup{}", escape(&canonical.display().to_string()))
        }
    }
}

/// The lock file of a scope.
pub fn scope_lock_name(scope: &Scope) -> String {
    format!("guard-{}.lock", scope_key(scope))
}

/// The lock file that guards a state file.
pub fn state_lock_name(state_file: &str) -> String {
    format!("{state_file}.lock")
}

/// The state file a run records its suspensions in.
pub fn run_state_name(pid: u32) -> String {
    format!("run-{pid}-suspended.json")
}

/// The pid of a run's state file name.
pub fn run_of(name: &str) -> Option<u32> {
    name.strip_prefix("run-")?
        .strip_suffix("-suspended.json")?
        .parse()
        .ok()
}

/// Whether `path` exists, without following it.
pub fn exists(dir: &StateDir, name: &str) -> bool {
    statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

#[cfg(test)]
mod tests {
    //! A second holder is refused with the first's pid; release frees the lock and the file.
    use super::*;

    fn dir() -> (tempfile::TempDir, Arc<StateDir>) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(&tmp.path().join("state"), true).expect("dir");
        (tmp, dir)
    }

    #[test]
    fn second_holder_is_refused_with_the_first_ones_pid() {
        let (_tmp, dir) = dir();
        assert_eq!(Lock::probe(&dir, "x.lock").expect("probe"), Probe::Free);
        let first = Lock::acquire(&dir, "x.lock", "scope taken", Duration::ZERO).expect("first");
        // flock locks belong to the open file, so a second open in this process conflicts
        // exactly as another process would.
        let err = Lock::acquire(&dir, "x.lock", "scope taken", Duration::from_millis(60))
            .expect_err("second");
        let me = std::process::id();
        assert!(
            matches!(&err, LockError::Held { pid: Some(pid), .. } if *pid == me),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "scope taken: memtrace pid {me} holds {}",
                first.path().display()
            )
        );
        assert_eq!(
            Lock::probe(&dir, "x.lock").expect("probe"),
            Probe::Held(Some(me))
        );
        drop(first);
        assert!(!exists(&dir, "x.lock"), "released and removed");
        assert_eq!(Lock::probe(&dir, "x.lock").expect("probe"), Probe::Free);
        let again = Lock::acquire(&dir, "x.lock", "scope taken", Duration::ZERO);
        assert!(again.is_ok(), "free again after release");
    }

    #[test]
    fn names() {
        assert_eq!(scope_lock_name(&Scope::Machine), "guard-machine.lock");
        let scope = Scope::Cgroup {
            path: "/sys/fs/cgroup/memory/a b/x-1".into(),
            version: crate::host::cgroup::Version::V1,
        };
        assert_eq!(
            scope_lock_name(&scope),
            "guard-cgroup+sys+fs+cgroup+memory+a%20b+x-1.lock"
        );
        let long = escape(&"/deep".repeat(100));
        assert!(long.len() < 100, "{long}");
        assert_ne!(long, escape(&"/deeq".repeat(100)));
        assert_eq!(run_of(&run_state_name(4242)), Some(4242));
        assert_eq!(run_of("run-x-suspended.json"), None);
        assert_eq!(state_lock_name("g.json"), "g.json.lock");
    }
}
