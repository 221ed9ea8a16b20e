//! Privilege checks and process limits: root for eBPF, RLIMIT_MEMLOCK for older kernels' map
//! accounting, the page size.
use rustix::process::{Resource, Rlimit, setrlimit};

/// The caller lacks the privileges a command needs.
#[derive(Debug, thiserror::Error)]
#[error(
    "{action} needs root (effective uid is {euid}); run it with sudo, or use `memtrace status` which needs no privileges"
)]
pub struct PrivilegeError {
    /// What was being attempted.
    pub action: &'static str,
    /// The effective uid.
    pub euid: u32,
}

/// The effective uid.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether the effective uid is root.
pub fn is_root() -> bool {
    euid() == 0
}

/// Fails unless running as root.
pub fn require_root(action: &'static str) -> Result<(), PrivilegeError> {
    let euid = euid();
    if euid == 0 {
        Ok(())
    } else {
        Err(PrivilegeError { action, euid })
    }
}

/// Lifts RLIMIT_MEMLOCK: kernels before 5.11 charge BPF maps against it. Best effort: newer
/// kernels charge the memory cgroup instead, so a failure here only matters on old kernels.
pub fn raise_memlock() {
    // `None` is RLIM_INFINITY.
    let unlimited = Rlimit {
        current: None,
        maximum: None,
    };
    if let Err(errno) = setrlimit(Resource::Memlock, unlimited) {
        log::debug!(
            "could not lift RLIMIT_MEMLOCK: {}",
            std::io::Error::from(errno)
        );
    }
}

/// The system page size in bytes.
pub fn page_size() -> u32 {
    u32::try_from(rustix::param::page_size())
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}
