//! Makes sure tracefs is mounted at /sys/kernel/tracing (it is not at boot on our machines).
//! memtrace's own programs attach without it; bpftrace and perf need it.
use std::{ffi::CString, fs, io, path::Path};

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
    let (source, target, fstype) = (c"tracefs", CString::new(TRACEFS), c"tracefs");
    let target = target.map_err(|err| TracefsError(io::Error::other(err)))?;
    // SAFETY: all pointers are valid NUL-terminated strings living across the call; data is null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        log::info!("mounted tracefs at {TRACEFS}");
        Ok(())
    } else {
        Err(TracefsError(io::Error::last_os_error()))
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
