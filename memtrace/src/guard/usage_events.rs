//! Wake-ups when a v1 memory cgroup's usage crosses a threshold (`cgroup.event_control` with an
//! eventfd): the guard is woken the moment a fast hog crosses warn or suspend, instead of at its
//! next polling round. cgroup v2 and the machine scope have no such notification; there the
//! guard polls (see `sampling.interval_*`).
use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

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
        // SAFETY: eventfd takes an initial value and flags and returns a new fd or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor we own from here on.
        let efd = unsafe { OwnedFd::from_raw_fd(raw) };
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
    pub fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Consumes the pending notifications.
    pub fn drain(&self) {
        let mut counter = 0u64;
        // SAFETY: reads at most 8 bytes into a valid u64; the fd is non-blocking.
        let _ = unsafe {
            libc::read(
                self.efd.as_raw_fd(),
                (&raw mut counter).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}
