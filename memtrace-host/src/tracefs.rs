//! Makes sure tracefs is mounted at /sys/kernel/tracing (it is not at boot on our machines).
//! memtrace's own programs attach without it; bpftrace and perf need it.
use std::{fs, io, path::Path};

use rustix::mount::MountFlags;

/// Where tracefs belongs.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// tracefs is absent and could not be mounted.
#[derive(Debug, thiserror::Error)]
#[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
pub struct TracefsError(io::Error);

/// Whether `mounts` (the text of /proc/mounts) lists tracefs at [`TRACEFS`].
pub fn is_mounted_in(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_ascii_whitespace();
        let _source = fields.next();
        fields.next() == Some(TRACEFS) && fields.next() == Some("tracefs")
    })
}

/// Mounts tracefs at [`TRACEFS`] unless it is already there.
pub fn ensure_mounted() -> Result<(), TracefsError> {
    let mounts = fs::read_to_string("/proc/mounts").map_err(TracefsError)?;
    if is_mounted_in(&mounts) {
        return Ok(());
    }
    if !Path::new(TRACEFS).is_dir() {
        return Err(TracefsError(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{TRACEFS} does not exist (kernel without CONFIG_TRACING?)"),
        )));
    }
    let mounted = rustix::mount::mount(c"tracefs", TRACEFS, c"tracefs", MountFlags::empty(), None);
    match mounted {
        Ok(()) => {
            log::info!("mounted tracefs at {TRACEFS}");
            Ok(())
        }
        Err(errno) => Err(TracefsError(io::Error::from(errno))),
    }
}

#[cfg(test)]
mod tests {
    //! Recognising the mount in /proc/mounts.
    use super::*;

    #[test]
    fn finds_tracefs_line() {
        assert!(is_mounted_in(
            "tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n"
        ));
        assert!(!is_mounted_in(
            "tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n"
        ));
        assert!(!is_mounted_in("none /sys/kernel/tracing tmpfs rw 0 0\n"));
    }
}
