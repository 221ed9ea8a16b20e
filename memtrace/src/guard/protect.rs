//! Protecting the way into the box and the guard itself: the listening sshd gets a low
//! `oom_score_adj`; the guard locks its memory (mlockall) and makes itself unkillable by the
//! kernel OOM killer, so it keeps working under the pressure it exists for.
use std::{fs, path::Path};

use rustix::mm::{MlockAllFlags, mlockall};

use crate::host::sshd::sshd_listeners;

/// Sets `oom_score_adj` of every sshd listener; returns log lines (`old → new`).
pub fn protect_sshd(proc_root: &Path, value: i32, dry_run: bool) -> Vec<String> {
    if value == 0 {
        return Vec::new();
    }
    let mut log = Vec::new();
    for pid in sshd_listeners(proc_root) {
        let path = proc_root.join(pid.to_string()).join("oom_score_adj");
        let old = fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        if old == value.to_string() {
            continue;
        }
        if dry_run {
            log.push(format!(
                "dry run: would set sshd {pid} oom_score_adj {old} → {value}"
            ));
        } else {
            match fs::write(&path, value.to_string()) {
                Ok(()) => log.push(format!("sshd {pid} oom_score_adj {old} → {value}")),
                Err(err) => log.push(format!("sshd {pid} oom_score_adj: {err}")),
            }
        }
    }
    log
}

/// Locks the guard's memory and exempts it from the OOM killer; returns log lines.
pub fn protect_self(dry_run: bool) -> Vec<String> {
    let mut log = Vec::new();
    if dry_run {
        return log;
    }
    match fs::write("/proc/self/oom_score_adj", "-1000") {
        Ok(()) => log.push("guard oom_score_adj → -1000".to_owned()),
        Err(err) => log.push(format!("guard oom_score_adj: {err}")),
    }
    // Lock only what is or becomes resident (MCL_ONFAULT): the whole binary is not faulted in
    // just to be locked.
    match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT) {
        Ok(()) => log.push("guard memory locked (mlockall, on fault)".to_owned()),
        Err(errno) => log.push(format!("mlockall: {}", std::io::Error::from(errno))),
    }
    log
}
