//! Signals that cannot hit the wrong process: a victim is named by (pid, start time); its pidfd
//! is opened and the start time checked once more before anything is sent, and every signal
//! then goes through that pidfd, so a recycled pid is never signalled.
use std::{
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::Path,
};

use rustix::{
    event::{PollFd, PollFlags, Timespec, poll},
    io::Errno,
    process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal},
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
        // A pid that does not fit pid_t (or is 0) is one the kernel refuses with EINVAL.
        let opened = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or(Errno::INVAL)
            .and_then(|raw| pidfd_open(raw, PidfdFlags::empty()));
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::SRCH) => return Err(ProcRefError::Gone(pid)),
            Err(errno) => {
                return Err(ProcRefError::Io {
                    pid,
                    source: io::Error::from(errno),
                });
            }
        };
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

impl AsFd for PidFd {
    /// The pidfd itself, e.g. to poll many at once for their exits.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PidFd {
    /// Sends `signal` through the pidfd.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcRefError> {
        match pidfd_send_signal(&self.fd, signal) {
            Ok(()) => Ok(()),
            Err(Errno::SRCH) => Err(ProcRefError::Gone(self.target.pid)),
            Err(errno) => Err(ProcRefError::Io {
                pid: self.target.pid,
                source: io::Error::from(errno),
            }),
        }
    }

    /// Whether the process has exited (the pidfd polls readable).
    pub fn exited(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        // A zero timeout: look, don't wait.
        matches!(poll(&mut fds, Some(&Timespec::default())), Ok(n) if n > 0)
            && fds[0].revents().contains(PollFlags::IN)
    }
}
