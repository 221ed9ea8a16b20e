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

/// A Linux capability memtrace checks for (its bit in `linux/capability.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// CAP_SYS_ADMIN: swapon, mounts, eBPF on kernels without CAP_BPF.
    SysAdmin = 21,
    /// CAP_SYS_RESOURCE: lowering `oom_score_adj`, PSI trigger windows that are not 2 s
    /// multiples.
    SysResource = 24,
}

/// The effective capability set in a `/proc/PID/status` text (its `CapEff:` hex line).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Whether a `/proc/PID/uid_map` text is the initial user namespace's (all of 0…2³²−2 mapped
/// onto itself): only there do capabilities count for the whole machine (swapon needs
/// CAP_SYS_ADMIN in that namespace).
pub fn is_initial_user_namespace(uid_map: &str) -> bool {
    let fields: Vec<&str> = uid_map.split_ascii_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

/// Whether memtrace has `cap` in its effective set (`ROOT/self/status`), in whatever user
/// namespace it runs in (enough for `oom_score_adj` of its own container's processes). `false`
/// when the file cannot be read.
pub fn has_capability(proc_root: &std::path::Path, cap: Capability) -> bool {
    std::fs::read_to_string(proc_root.join("self/status"))
        .ok()
        .and_then(|status| parse_cap_eff(&status))
        .is_some_and(|set| set & (1 << cap as u32) != 0)
}

/// Whether memtrace holds `cap` for the whole machine: in its effective set
/// (`ROOT/self/status`) and in the initial user namespace (`ROOT/self/uid_map`). `false` when
/// either cannot be read.
pub fn has_machine_capability(proc_root: &std::path::Path, cap: Capability) -> bool {
    let initial = std::fs::read_to_string(proc_root.join("self/uid_map"))
        .is_ok_and(|map| is_initial_user_namespace(&map));
    initial && has_capability(proc_root, cap)
}

#[cfg(test)]
mod tests {
    //! Capability sets and user namespaces from /proc texts.
    use super::*;

    #[test]
    fn capabilities_from_status_and_uid_map() {
        // Full root, and Docker's default set (no CAP_SYS_ADMIN, no CAP_SYS_RESOURCE).
        let root = "Name:\tbash\nCapEff:\t000001ffffffffff\n";
        let docker = "Name:\tbash\nCapEff:\t00000000a80425fb\n";
        let cap = |status, cap: Capability| {
            parse_cap_eff(status).is_some_and(|set| set & (1 << cap as u32) != 0)
        };
        assert!(cap(root, Capability::SysAdmin) && cap(root, Capability::SysResource));
        assert!(!cap(docker, Capability::SysAdmin) && !cap(docker, Capability::SysResource));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert!(is_initial_user_namespace(
            "         0          0 4294967295\n"
        ));
        assert!(!is_initial_user_namespace(
            "         0     100000      65536\n"
        ));
        // Whatever this test runs as, reading the real files must not panic.
        let _ = has_machine_capability(std::path::Path::new("/proc"), Capability::SysAdmin);
    }
}
