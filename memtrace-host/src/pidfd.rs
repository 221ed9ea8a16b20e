//! Signals that cannot hit the wrong process: a victim is named by (pid, start time); its pidfd
//! is opened and the start time checked once more before anything is sent, and every signal
//! then goes through that pidfd, so a recycled pid is never signalled.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use serde::{Deserialize, Serialize};

use crate::procfs;

/// A process named unambiguously.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcRef {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks after boot), from `/proc/PID/stat`.
    pub start_ticks: u64,
    /// Its command name, for logs.
    pub comm: String,
}

/// Why a target can't be signalled.
#[derive(Debug, thiserror::Error)]
pub enum ProcRefError {
    /// The process is gone.
    #[error("pid {0} has exited")]
    Gone(u32),
    /// The pid now belongs to another process.
    #[error(
        "pid {pid} was reused by another process (start time {found} != {expected}); nothing sent"
    )]
    Reused {
        /// The pid.
        pid: u32,
        /// Start time we chose.
        expected: u64,
        /// Start time found now.
        found: u64,
    },
    /// A system call failed.
    #[error("pid {pid}: {source}")]
    Io {
        /// The pid.
        pid: u32,
        /// Cause.
        source: io::Error,
    },
}

/// An open pidfd whose process was verified to be the target.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    /// The verified target.
    pub target: ProcRef,
}

fn start_ticks(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = procfs::read(&proc_root.join(pid.to_string()).join("stat")).ok()?;
    procfs::parse_pid_stat(&text).map(|stat| stat.start_ticks)
}

impl ProcRef {
    /// Opens a pidfd, then checks the start time again (a pidfd pins the process it was opened
    /// on, so a match after opening proves it is the same process).
    pub fn open(&self, proc_root: &Path) -> Result<PidFd, ProcRefError> {
        let pid = self.pid;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ESRCH) => ProcRefError::Gone(pid),
                _ => ProcRefError::Io { pid, source: err },
            });
        }
        // SAFETY: raw is a fresh file descriptor that we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        match start_ticks(proc_root, pid) {
            Some(found) if found == self.start_ticks => Ok(PidFd {
                fd,
                target: self.clone(),
            }),
            Some(found) => Err(ProcRefError::Reused {
                pid,
                expected: self.start_ticks,
                found,
            }),
            None => Err(ProcRefError::Gone(pid)),
        }
    }
}

impl PidFd {
    /// Sends `signal` through the pidfd.
    pub fn signal(&self, signal: i32) -> Result<(), ProcRefError> {
        // SAFETY: pidfd_send_signal takes a valid pidfd, a signal number, a null siginfo and
        // zero flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        Err(match err.raw_os_error() {
            Some(libc::ESRCH) => ProcRefError::Gone(self.target.pid),
            _ => ProcRefError::Io {
                pid: self.target.pid,
                source: err,
            },
        })
    }

    /// Whether the process has exited (the pidfd polls readable).
    pub fn exited(&self) -> bool {
        let mut fds = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let rc = unsafe { libc::poll(&mut fds, 1, 0) };
        rc > 0 && fds.revents & libc::POLLIN != 0
    }
}
