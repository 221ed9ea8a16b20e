//! Kernel PSI triggers: write `some STALL WINDOW` (µs) to a pressure file and poll() its fd for
//! POLLPRI, so the kernel wakes us when memory stalls pile up — no busy polling.
//!
//! The file is the scope's: a v2 cgroup's own `memory.pressure` (a container's), else
//! `/proc/pressure/memory`. Without CAP_SYS_RESOURCE (a container) the kernel takes only windows
//! that are multiples of 2 s, so the window is rounded up; where the scope's file is missing or
//! cannot be armed (read-only, refused) the guard polls instead, said in one line
//! ([`PsiTrigger::arm_or_poll`]).
use std::{
    fs::OpenOptions,
    io::Write as _,
    os::{
        fd::{AsFd as _, BorrowedFd},
        unix::fs::OpenOptionsExt as _,
    },
    path::Path,
    time::Duration,
};

/// PSI is missing or refused the trigger.
#[derive(Debug, thiserror::Error)]
pub enum PsiError {
    /// The pressure file does not exist or cannot be opened.
    #[error(
        "PSI is not available at {path} ({source}); boot with psi=1 (CONFIG_PSI) or run with --no-psi"
    )]
    Unavailable {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The kernel refused the trigger.
    #[error("arming the PSI trigger on {path}: {source}")]
    Arm {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// An armed trigger; closing it disarms.
#[derive(Debug)]
pub struct PsiTrigger {
    file: std::fs::File,
}

impl PsiTrigger {
    /// Arms `some STALL WINDOW` on `path`. Without CAP_SYS_RESOURCE the kernel accepts only
    /// windows that are multiples of 2 s; then the window is rounded up to one (the stall
    /// scaled with it) and a warning says so.
    pub fn arm(path: &Path, stall: Duration, window: Duration) -> Result<Self, PsiError> {
        match Self::try_arm(path, stall, window) {
            Err(PsiError::Arm { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                let two = Duration::from_secs(2).as_micros();
                let rounded = window.as_micros().div_ceil(two).max(1) * two;
                let scale = rounded as f64 / window.as_micros().max(1) as f64;
                let window2 = Duration::from_micros(u64::try_from(rounded).unwrap_or(u64::MAX));
                let stall2 = stall.mul_f64(scale);
                log::warn!(
                    "PSI trigger: the kernel refused a {window:?} window (no CAP_SYS_RESOURCE?); using {stall2:?} within {window2:?}"
                );
                Self::try_arm(path, stall2, window2)
            }
            other => other,
        }
    }

    /// [`PsiTrigger::arm`] on the scope's own pressure file; `None` (polling only) when the
    /// file is missing or the trigger refused, said in one warning line.
    pub fn arm_or_poll(path: &Path, stall: Duration, window: Duration) -> Option<Self> {
        match Self::arm(path, stall, window) {
            Ok(trigger) => Some(trigger),
            Err(err) => {
                let (PsiError::Unavailable { source, .. } | PsiError::Arm { source, .. }) = &err;
                log::warn!(
                    "no PSI trigger on {} ({source}): polling only, at the sampling intervals",
                    path.display()
                );
                None
            }
        }
    }

    fn try_arm(path: &Path, stall: Duration, window: Duration) -> Result<Self, PsiError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| PsiError::Unavailable {
                path: path.display().to_string(),
                source,
            })?;
        let spec = format!("some {} {}\0", stall.as_micros(), window.as_micros());
        file.write_all(spec.as_bytes())
            .map_err(|source| PsiError::Arm {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self { file })
    }

    /// The fd to poll for POLLPRI.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    //! A missing or unwritable pressure file means polling, not an error.
    use super::*;

    #[test]
    fn missing_or_read_only_pressure_file_degrades_to_polling() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let stall = Duration::from_millis(100);
        let window = Duration::from_secs(1);
        let missing = tmp.path().join("memory.pressure");
        assert!(matches!(
            PsiTrigger::arm(&missing, stall, window),
            Err(PsiError::Unavailable { .. })
        ));
        assert!(PsiTrigger::arm_or_poll(&missing, stall, window).is_none());
        // A directory cannot be opened for writing (as a read-only file cannot).
        assert!(PsiTrigger::arm_or_poll(tmp.path(), stall, window).is_none());
    }
}
