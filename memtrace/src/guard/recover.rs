//! Resuming what an earlier guard or `memtrace run` left suspended when it died. The state file
//! is a claim, not an order: a recorded process is resumed only if it is still the one recorded
//! (same start time, this boot), is really stopped (state `T`/`t`), is not init, a kernel thread
//! or the guard itself, and lies inside the scope (the guard's cgroup subtree, or for a run's
//! file the run's own recorded tree). A recorded frozen cgroup is thawed only if it is a real
//! cgroup of the recorded kind (v2, or a v1 freezer: canonical path below its mount, opened
//! without following symlinks), frozen, and holding a recorded process that passes the same
//! checks; members the guard had moved into it go back where they came from. A tree the guard
//! had only staged (moved ahead into a thawed cgroup, see [`freeze`]) is moved back one level,
//! if the cgroup is one the guard makes, real and not frozen. A dry run only says what it
//! would do, and touches no file.
use std::{collections::HashSet, fmt, path::Path, sync::Arc, time::Duration};

use rustix::process::Signal;

use super::{
    freeze,
    lock::{self, Lock, Probe},
    state::{StateDir, StateFile},
    suspend::{HeldRecord, Saved, boot_id},
    victim::untouchable,
};
use crate::host::{
    freezer::Freezer,
    pidfd::{ProcRef, ProcRefError},
    procfs::{self, PidStat},
};

/// Where the processes of a recovered record must lie.
#[derive(Clone, Copy, Debug)]
pub enum Within<'a> {
    /// Anywhere (a machine guard).
    Machine,
    /// In this set (the pids of a guarded cgroup's subtree).
    Pids(&'a HashSet<u32>),
    /// Among the record's own members (a run's file: the run's tree).
    Members,
}

/// Why a recorded process or cgroup is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The process exited (or the cgroup is gone).
    Gone,
    /// The pid belongs to another process now.
    Reused {
        /// Its start time.
        found: u64,
    },
    /// Not stopped: nothing to resume (and a SIGCONT could disturb it).
    NotStopped(char),
    /// Init, a kernel thread or the guard itself.
    Untouchable(&'static str),
    /// Outside the guard's scope.
    OutOfScope,
    /// The cgroup is not one memtrace thaws.
    Cgroup(String),
    /// The cgroup is not frozen.
    NotFrozen,
    /// No recorded process (alive, unchanged, in scope) is in the cgroup.
    NoMemberInside,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gone => write!(f, "gone"),
            Self::Reused { found } => {
                write!(f, "the pid was reused (start time now {found})")
            }
            Self::NotStopped(state) => write!(f, "not stopped (state {state})"),
            Self::Untouchable(what) => write!(f, "{what} is never touched"),
            Self::OutOfScope => write!(f, "outside the guarded scope"),
            Self::Cgroup(why) => write!(f, "{why}"),
            Self::NotFrozen => write!(f, "the cgroup is not frozen"),
            Self::NoMemberInside => write!(f, "no recorded process is in the cgroup"),
        }
    }
}

fn stat_of(proc_root: &Path, pid: u32) -> Option<PidStat> {
    procfs::parse_pid_stat(&procfs::read(&proc_root.join(pid.to_string()).join("stat")).ok()?)
}

/// Whether the recorded `member` may be resumed, given its `/proc/PID/stat` now (`None`: gone).
pub fn judge(
    member: &ProcRef,
    now: Option<&PidStat>,
    within: Within<'_>,
    guard_pid: u32,
) -> Result<(), Skip> {
    if let Some(what) = untouchable(member.pid, now.map_or(0, |s| s.ppid), guard_pid) {
        return Err(Skip::Untouchable(what));
    }
    let stat = now.ok_or(Skip::Gone)?;
    if stat.start_ticks != member.start_ticks {
        return Err(Skip::Reused {
            found: stat.start_ticks,
        });
    }
    if !matches!(stat.state, 'T' | 't') {
        return Err(Skip::NotStopped(stat.state));
    }
    match within {
        Within::Pids(pids) if !pids.contains(&member.pid) => Err(Skip::OutOfScope),
        _ => Ok(()),
    }
}

/// The frozen cgroup of a record, if it may be thawed.
pub fn judge_freeze(
    record: &HeldRecord,
    proc_root: &Path,
    within: Within<'_>,
    guard_pid: u32,
) -> Result<Freezer, Skip> {
    let (Some(kind), Some(cgroup)) = (freeze::kind_of(&record.how), record.cgroup.as_deref())
    else {
        return Err(Skip::Cgroup("a freeze record without a cgroup".to_owned()));
    };
    let dir = Freezer::open(proc_root, cgroup, kind).map_err(|err| {
        if err.is_gone() {
            Skip::Gone
        } else {
            Skip::Cgroup(err.to_string())
        }
    })?;
    let inside: Vec<&ProcRef> = record
        .members
        .iter()
        .filter(|m| dir.holds(proc_root, m.pid))
        .filter(|m| {
            let now = stat_of(proc_root, m.pid);
            // Frozen tasks show their own state letter; the cgroup's freeze file says frozen.
            match judge(m, now.as_ref(), Within::Machine, guard_pid) {
                Ok(()) | Err(Skip::NotStopped(_)) => true,
                Err(_) => false,
            }
        })
        .collect();
    if inside.is_empty() {
        return Err(Skip::NoMemberInside);
    }
    if let Within::Pids(pids) = within
        && inside.iter().any(|m| !pids.contains(&m.pid))
    {
        return Err(Skip::OutOfScope);
    }
    match dir.frozen() {
        Ok(true) => Ok(dir),
        Ok(false) => Err(Skip::NotFrozen),
        Err(err) => Err(Skip::Cgroup(err.to_string())),
    }
}

/// Acts on one record (or, in a dry run, says what it would do); returns log lines.
pub fn recover_record(
    record: &HeldRecord,
    proc_root: &Path,
    within: Within<'_>,
    guard_pid: u32,
    dry_run: bool,
) -> Vec<String> {
    let mut log = Vec::new();
    if record.how.frozen() {
        let shown = record
            .cgroup
            .as_deref()
            .map_or_else(String::new, |c| c.display().to_string());
        match judge_freeze(record, proc_root, within, guard_pid) {
            Ok(_) if dry_run => log.push(format!("would thaw cgroup {shown}")),
            Ok(_) => log.extend(freeze::thaw(proc_root, record)),
            Err(Skip::Gone) => {}
            Err(why) => log.push(format!("not thawing cgroup {shown}: {why}")),
        }
        return log;
    }
    for member in &record.members {
        let now = stat_of(proc_root, member.pid);
        let shown = format!("{} ({})", member.pid, member.comm);
        match judge(member, now.as_ref(), within, guard_pid) {
            Ok(()) if dry_run => log.push(format!("would resume {shown}")),
            // The pidfd checks the start time once more, then pins the process.
            Ok(()) => match member
                .open(proc_root)
                .and_then(|fd| fd.signal(Signal::CONT))
            {
                Ok(()) => log.push(format!("resumed {shown}")),
                Err(ProcRefError::Gone(_)) => {}
                Err(err) => log.push(format!("not resuming {shown}: {err}")),
            },
            Err(Skip::Gone) => {}
            Err(why) => log.push(format!("not resuming {shown}: {why}")),
        }
    }
    log
}

/// Recovers every record of `file` (then removes it, unless `dry_run`); returns log lines.
pub fn recover_file(
    file: &StateFile,
    proc_root: &Path,
    within: Within<'_>,
    dry_run: bool,
) -> Vec<String> {
    let shown = file.path().display().to_string();
    let text = match file.read() {
        Ok(Some(text)) => text,
        Ok(None) => return Vec::new(),
        Err(err) => return vec![format!("not recovering: {err}")],
    };
    let guard_pid = std::process::id();
    let mut log = Vec::new();
    match serde_json::from_str::<Saved>(&text) {
        Ok(saved) if saved.boot_id.is_some() && saved.boot_id != boot_id(proc_root) => log.push(
            format!("{shown} was written before the last boot: its processes are gone"),
        ),
        Ok(saved) => {
            for record in &saved.suspended {
                log.extend(recover_record(
                    record, proc_root, within, guard_pid, dry_run,
                ));
            }
            if let Some(record) = &saved.staged {
                log.extend(freeze::recover_staged(proc_root, record, dry_run));
            }
        }
        Err(err) => log.push(format!("ignoring unreadable state file {shown}: {err}")),
    }
    if !dry_run && let Err(err) = file.remove() {
        log.push(format!("removing {shown}: {err}"));
    }
    log
}

/// Recovers the state files of `memtrace run`s that died holding their pipeline: every
/// `run-PID-suspended.json` in `dir` whose lock no live run holds (or, for a file without a
/// lock file, whose pid is gone). `own` is the caller's own run file, whose lock it holds: one
/// found there was left by an earlier process with the same pid. Leftover locks of dead runs
/// are removed. Returns log lines, each naming the run.
pub fn recover_runs(
    dir: &Arc<StateDir>,
    proc_root: &Path,
    dry_run: bool,
    own: Option<&str>,
) -> Vec<String> {
    let names = match dir.names() {
        Ok(names) => names,
        Err(err) => return vec![format!("listing {}: {err}", dir.path().display())],
    };
    let mut log = Vec::new();
    let named =
        |pid: u32, lines: Vec<String>| lines.into_iter().map(move |l| format!("run {pid}: {l}"));
    for name in &names {
        let Some(pid) = lock::run_of(name) else {
            continue;
        };
        let file = StateFile::new(dir, name);
        if Some(name.as_str()) == own {
            log.extend(named(
                pid,
                recover_file(&file, proc_root, Within::Members, dry_run),
            ));
            continue;
        }
        let lock_name = lock::state_lock_name(name);
        if !lock::exists(dir, &lock_name) && proc_root.join(pid.to_string()).exists() {
            // No lock file: an older memtrace run, maybe still alive.
            continue;
        }
        if dry_run {
            if Lock::probe(dir, &lock_name).is_ok_and(|p| p == Probe::Free) {
                log.extend(named(
                    pid,
                    recover_file(&file, proc_root, Within::Members, true),
                ));
            }
            continue;
        }
        match Lock::acquire(dir, &lock_name, "run", Duration::ZERO) {
            Ok(_held) => {
                log.extend(named(
                    pid,
                    recover_file(&file, proc_root, Within::Members, false),
                ));
            }
            Err(lock::LockError::Held { .. }) => {}
            Err(err) => log.push(format!("run {pid}: {err}")),
        }
    }
    if !dry_run {
        // Locks of runs killed before they suspended anything: free ones are dead runs'.
        for name in &names {
            let Some(state) = name.strip_suffix(".lock") else {
                continue;
            };
            if lock::run_of(state).is_some() && Some(state) != own && !lock::exists(dir, state) {
                drop(Lock::acquire(dir, name, "run", Duration::ZERO));
            }
        }
    }
    log
}

#[cfg(test)]
mod tests;
