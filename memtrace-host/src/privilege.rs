//! Privilege checks and process limits: root for eBPF, the effective uid and capabilities a
//! `/proc/PID/status` shows (what decides whether eBPF can load, e.g. in a container),
//! RLIMIT_MEMLOCK for older kernels' map accounting, RLIMIT_NOFILE for sources that keep files
//! open, the page size.
use std::path::Path;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

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

/// A Linux capability memtrace checks for; the value is its bit in `CapEff`
/// (`linux/capability.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `CAP_SYS_ADMIN`: everything eBPF needs, on any kernel; swapon, mounts.
    SysAdmin = 21,
    /// `CAP_SYS_RESOURCE`: lowering `oom_score_adj`, PSI trigger windows that are not 2 s
    /// multiples.
    SysResource = 24,
    /// `CAP_PERFMON` (5.8+): attaching tracing programs.
    Perfmon = 38,
    /// `CAP_BPF` (5.8+): creating maps and loading programs.
    Bpf = 39,
}

impl Capability {
    /// The name as `capabilities(7)` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::SysAdmin => "CAP_SYS_ADMIN",
            Self::SysResource => "CAP_SYS_RESOURCE",
            Self::Perfmon => "CAP_PERFMON",
            Self::Bpf => "CAP_BPF",
        }
    }
}

/// Who a process is, as its `/proc/PID/status` says: effective uid and capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The effective uid (`Uid:`, second field).
    pub euid: u32,
    /// The effective capability set (`CapEff:`).
    pub effective: u64,
}

impl Credentials {
    /// Whether `cap` is in the effective set.
    pub fn has(&self, cap: Capability) -> bool {
        self.effective & (1 << cap as u32) != 0
    }

    /// What is missing to load and attach tracing programs: nothing with `CAP_SYS_ADMIN`,
    /// else whichever of `CAP_BPF` and `CAP_PERFMON` is absent.
    pub fn missing_for_ebpf(&self) -> Vec<Capability> {
        if self.has(Capability::SysAdmin) {
            return Vec::new();
        }
        [Capability::Bpf, Capability::Perfmon]
            .into_iter()
            .filter(|&cap| !self.has(cap))
            .collect()
    }
}

/// Parses the `Uid:` and `CapEff:` lines of a `/proc/PID/status`.
pub fn parse_credentials(status: &str) -> Option<Credentials> {
    let value = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
    };
    let euid = value("Uid")?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let effective = parse_cap_eff(status)?;
    Some(Credentials { euid, effective })
}

/// The effective capability set in a `/proc/PID/status` text (its `CapEff:` hex line).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// This process's credentials, from `ROOT/self/status`.
pub fn credentials(proc_root: &Path) -> Option<Credentials> {
    parse_credentials(&std::fs::read_to_string(proc_root.join("self/status")).ok()?)
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
pub fn has_capability(proc_root: &Path, cap: Capability) -> bool {
    credentials(proc_root).is_some_and(|creds| creds.has(cap))
}

/// Whether memtrace holds `cap` for the whole machine: in its effective set
/// (`ROOT/self/status`) and in the initial user namespace (`ROOT/self/uid_map`). `false` when
/// either cannot be read.
pub fn has_machine_capability(proc_root: &Path, cap: Capability) -> bool {
    let initial = std::fs::read_to_string(proc_root.join("self/uid_map"))
        .is_ok_and(|map| is_initial_user_namespace(&map));
    initial && has_capability(proc_root, cap)
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

/// Raises the soft RLIMIT_NOFILE to the hard one, for a source that keeps a few files open per
/// process. Best effort: the soft limit stays where it was when that fails. Returns the soft
/// limit in force afterwards (`None`: unlimited).
pub fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(errno) => {
            log::debug!(
                "could not raise RLIMIT_NOFILE: {}",
                std::io::Error::from(errno)
            );
            limit.current
        }
    }
}

/// The system page size in bytes.
pub fn page_size() -> u32 {
    u32::try_from(rustix::param::page_size())
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    //! Reading the effective uid and capabilities a status file shows.
    use super::*;

    #[test]
    fn credentials_of_root_in_a_default_container_and_of_a_user() {
        // Docker's default set: no CAP_SYS_ADMIN, CAP_BPF or CAP_PERFMON.
        let docker = "Name:\tx\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\n\
                      CapEff:\t00000000a80425fb\n";
        let creds = parse_credentials(docker).expect("parses");
        assert_eq!(creds.euid, 0);
        assert_eq!(
            creds.missing_for_ebpf(),
            vec![Capability::Bpf, Capability::Perfmon]
        );
        let full =
            parse_credentials("Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n").expect("parses");
        assert!(full.missing_for_ebpf().is_empty());
        let admin_only = Credentials {
            euid: 0,
            effective: 1 << 21,
        };
        assert!(
            admin_only.missing_for_ebpf().is_empty(),
            "CAP_SYS_ADMIN suffices"
        );
        let user = parse_credentials("Uid:\t1000\t1001\t1000\t1000\nCapEff:\t0\n").expect("parses");
        assert_eq!(user.euid, 1001, "the effective uid is the second field");
        assert_eq!(parse_credentials("Uid:\t0\n"), None);
    }

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
