//! What a guard takes at start, before it acts: its state directory and file checked (only
//! root can change them, and the file can be written: [`super::state`]), its scope's lock and
//! its state file's ([`super::lock`]: a second guard of the scope refuses, naming the first),
//! and the recovery of what a dead guard of its scope or a dead `memtrace run` left suspended
//! ([`super::recover`]). A dry run creates and locks nothing and only says what it would resume.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use super::{
    lock::{self, Lock},
    recover::{self, Within},
    state::{self, StateDir, StateFile},
};
use crate::collect::scope::Scope;

/// The state file a guard of `scope` uses without `--state-file`.
pub fn default_state_file(scope: &Scope) -> PathBuf {
    let dir = Path::new(state::STATE_DIR);
    match scope {
        Scope::Machine => dir.join("guard-suspended.json"),
        Scope::Cgroup { .. } => {
            dir.join(format!("guard-{}-suspended.json", lock::scope_key(scope)))
        }
    }
}

/// The guard's claim on its scope and state file, held for its lifetime.
#[derive(Debug)]
pub struct Claim {
    _scope: Lock,
    _state: Lock,
}

/// Opens and checks the state directory and file; an armed guard also proves the file can be
/// written and takes its locks. A dry run creates nothing and locks nothing.
pub fn claim(
    scope: &Scope,
    path: &Path,
    dry_run: bool,
) -> anyhow::Result<(Option<StateFile>, Option<Claim>)> {
    let (dir_path, name) = state::split(path)?;
    let dir = if dry_run {
        StateDir::open_existing(&dir_path)?
    } else {
        Some(StateDir::open(&dir_path, true)?)
    };
    let Some(dir) = dir else {
        return Ok((None, None));
    };
    let file = StateFile::new(&dir, &name);
    file.check()?;
    if dry_run {
        return Ok((Some(file), None));
    }
    file.check_writable()?;
    let scope_lock = Lock::acquire(
        &dir,
        &lock::scope_lock_name(scope),
        &format!(
            "another memtrace guard already guards {} (one guard per scope)",
            scope.describe()
        ),
        Duration::ZERO,
    )?;
    let state_lock = Lock::acquire(
        &dir,
        &lock::state_lock_name(&name),
        &format!(
            "state file {} is in use (give each guard its own --state-file)",
            path.display()
        ),
        Duration::ZERO,
    )?;
    Ok((
        Some(file),
        Some(Claim {
            _scope: scope_lock,
            _state: state_lock,
        }),
    ))
}

/// Resumes what a dead guard of this scope (its state file) and dead `memtrace run`s left
/// suspended, then removes the empty freezer cgroups dead guards made; a dry run only says what
/// it would do. Logs each line.
pub fn recover_at_start(scope: &Scope, file: Option<&StateFile>, proc_root: &Path, dry_run: bool) {
    let (prefix, run_prefix) = if dry_run {
        (
            "dry run, nothing sent: recovery",
            "dry run, nothing sent: recovery of a dead `memtrace run`",
        )
    } else {
        (
            "recovered from an earlier guard",
            "recovered from a dead `memtrace run`",
        )
    };
    let pids = match scope.pids() {
        Ok(pids) => pids,
        Err(err) => {
            log::warn!("not recovering: {err}");
            return;
        }
    };
    let within = pids.as_ref().map_or(Within::Machine, Within::Pids);
    if let Some(file) = file {
        // A dry run beside an armed guard must not claim that guard's file.
        let holder = if dry_run {
            match Lock::probe(file.dir(), &lock::state_lock_name(file.name())) {
                Ok(lock::Probe::Held(pid)) => Some(pid),
                _ => None,
            }
        } else {
            None
        };
        match holder {
            Some(pid) => log::info!(
                "{} belongs to the running memtrace pid {}: nothing to recover",
                file.path().display(),
                pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
            ),
            None => {
                for line in recover::recover_file(file, proc_root, within, dry_run) {
                    log::warn!("{prefix}: {line}");
                }
            }
        }
    }
    let runs = match file.map(StateFile::dir) {
        Some(dir) if dir.path() == Path::new(state::STATE_DIR) => Ok(Some(Arc::clone(dir))),
        _ => StateDir::open_existing(Path::new(state::STATE_DIR)),
    };
    match runs {
        Ok(Some(dir)) => {
            for line in recover::recover_runs(&dir, proc_root, dry_run, None) {
                log::warn!("{run_prefix}: {line}");
            }
        }
        Ok(None) => {}
        Err(err) => log::warn!("not recovering `memtrace run` state files: {err}"),
    }
    if !dry_run {
        // After the recovery above, which thawed and emptied what dead guards held.
        for line in super::freeze::remove_leftovers(proc_root) {
            log::info!("{line}");
        }
    }
}
