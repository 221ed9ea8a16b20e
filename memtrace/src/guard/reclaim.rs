//! The reclaim rung: give back what the kernel can drop without harming anyone — the page
//! cache (machine scope, after sync), `memory.reclaim` on a v2 cgroup, and old temp files in
//! the configured directories (via the walk `memtrace clean` uses: no symlinks followed, never outside
//! the roots, open files skipped).
use std::{fs, path::Path};

use crate::{
    guard::{
        config::Actions,
        scope::{Scope, Usage},
    },
    host::{
        cgroup::Version,
        reclaim::{TempCleanup, clean_temp, drop_caches},
    },
};

/// Runs every enabled reclaim step once; returns one log line per step.
pub fn reclaim(
    scope: &Scope,
    usage: &Usage,
    actions: &Actions,
    proc_root: &Path,
    dry_run: bool,
) -> Vec<String> {
    let mut log = Vec::new();
    match scope {
        Scope::Cgroup {
            path,
            version: Version::V2,
        } if actions.cgroup_reclaim => {
            // Ask for a quarter of what is in use; the kernel reclaims what it can (EAGAIN when
            // it could not reach the target, which is fine).
            let amount = usage.used_bytes / 4;
            if dry_run {
                log.push(format!(
                    "dry run: would write {amount} to {}/memory.reclaim",
                    path.display()
                ));
            } else {
                match fs::write(path.join("memory.reclaim"), amount.to_string()) {
                    Ok(()) => log.push(format!(
                        "memory.reclaim {amount} bytes on {}",
                        path.display()
                    )),
                    Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => log.push(format!(
                        "memory.reclaim on {}: reclaimed less than asked",
                        path.display()
                    )),
                    Err(err) => log.push(format!("memory.reclaim on {}: {err}", path.display())),
                }
            }
        }
        _ if actions.drop_caches => match drop_caches(proc_root, dry_run) {
            Ok(text) => log.push(text.trim_end().to_owned()),
            Err(err) => log.push(format!("drop caches: {err:#}")),
        },
        _ => {}
    }
    if !actions.temp_dirs.is_empty() {
        let cleanup = TempCleanup {
            roots: actions.temp_dirs.clone(),
            older_than: actions.temp_older_than,
            dry_run,
        };
        match clean_temp(proc_root, &cleanup) {
            Ok((text, _)) => log.extend(text.lines().map(str::to_owned)),
            Err(err) => log.push(format!("temp cleanup: {err:#}")),
        }
    }
    log
}
