//! Wake-ups when a v1 memory cgroup's usage crosses a threshold (`cgroup.event_control` with an
//! eventfd): the guard is woken the moment a fast hog crosses warn or suspend, instead of at its
//! next polling round. cgroup v2 and the machine scope have no such notification; there the
//! guard polls (see `sampling.interval_*`).
use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
    path::Path,
};

use rustix::event::{EventfdFlags, eventfd};

/// An eventfd registered for one or more usage thresholds of a v1 cgroup.
#[derive(Debug)]
pub struct UsageEvents {
    efd: OwnedFd,
    /// Kept open for as long as the registration lives.
    _usage: File,
}

impl UsageEvents {
    /// Registers `thresholds` (bytes of `memory.usage_in_bytes`) on the v1 cgroup `cgroup`.
    pub fn arm_v1(cgroup: &Path, thresholds: &[u64]) -> std::io::Result<Self> {
        let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let usage = File::open(cgroup.join("memory.usage_in_bytes"))?;
        let mut control = OpenOptions::new()
            .write(true)
            .open(cgroup.join("cgroup.event_control"))?;
        for threshold in thresholds {
            control.write_all(
                format!("{} {} {threshold}", efd.as_raw_fd(), usage.as_raw_fd()).as_bytes(),
            )?;
        }
        Ok(Self { efd, _usage: usage })
    }

    /// The fd to poll for POLLIN.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.efd.as_fd()
    }

    /// Consumes the pending notifications.
    pub fn drain(&self) {
        // The 8-byte counter; reading resets it. The fd is non-blocking.
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.efd, &mut counter);
    }
}
