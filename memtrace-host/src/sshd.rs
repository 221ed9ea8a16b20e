//! Which processes are the way into the box: sshd (the listener and its per-connection
//! children). Guard protection, the doctor's check and the stall signal all ask here.
use std::path::Path;

use crate::procfs;

/// Whether a command name is sshd's: the listener and, since OpenSSH 9.8, its
/// per-connection `sshd-session` processes.
pub fn is_sshd(comm: &str) -> bool {
    matches!(comm, "sshd" | "sshd-session")
}

/// The listening sshd processes: sshd with a parent that is not sshd, sorted by pid.
pub fn sshd_listeners(proc_root: &Path) -> Vec<u32> {
    let stat_of = |pid: u32| -> Option<procfs::PidStat> {
        procfs::parse_pid_stat(&procfs::read(&proc_root.join(pid.to_string()).join("stat")).ok()?)
    };
    let mut listeners: Vec<u32> = procfs::list_pids(proc_root)
        .unwrap_or_default()
        .into_iter()
        .filter_map(stat_of)
        .filter(|s| s.comm == "sshd" && stat_of(s.ppid).is_none_or(|p| !is_sshd(&p.comm)))
        .map(|s| s.pid)
        .collect();
    listeners.sort_unstable();
    listeners
}

#[cfg(test)]
mod tests {
    //! Names.
    use super::*;

    #[test]
    fn names() {
        assert!(is_sshd("sshd") && is_sshd("sshd-session"));
        assert!(!is_sshd("ssh") && !is_sshd("sshd2"));
    }
}
