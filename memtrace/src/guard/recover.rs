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
mod tests {
    //! The checks, on hand-made /proc readings, fake records and a fake /proc tree.
    use std::path::PathBuf;

    use super::*;
    use crate::guard::suspend::How;

    fn stat(pid: u32, ppid: u32, state: char, start_ticks: u64) -> PidStat {
        PidStat {
            pid,
            comm: "job".to_owned(),
            state,
            ppid,
            start_ticks,
            ..PidStat::default()
        }
    }

    fn member(pid: u32, start_ticks: u64) -> ProcRef {
        ProcRef {
            pid,
            start_ticks,
            comm: "job".to_owned(),
        }
    }

    const GUARD: u32 = 999;

    #[test]
    fn only_stopped_unchanged_in_scope_processes_are_resumed() {
        let scope: HashSet<u32> = [100, 101, 102].into_iter().collect();
        let within = Within::Pids(&scope);
        let ok = |m: &ProcRef, s: &PidStat| judge(m, Some(s), within, GUARD);
        assert_eq!(ok(&member(100, 5), &stat(100, 1, 'T', 5)), Ok(()));
        assert_eq!(ok(&member(101, 5), &stat(101, 1, 't', 5)), Ok(()));
        // Running, sleeping, zombie: not stopped, so not ours to resume.
        for state in ['R', 'S', 'D', 'Z'] {
            assert_eq!(
                ok(&member(100, 5), &stat(100, 1, state, 5)),
                Err(Skip::NotStopped(state))
            );
        }
        assert_eq!(
            ok(&member(100, 5), &stat(100, 1, 'T', 6)),
            Err(Skip::Reused { found: 6 })
        );
        assert_eq!(
            ok(&member(500, 5), &stat(500, 1, 'T', 5)),
            Err(Skip::OutOfScope),
            "stopped, unchanged, but outside the guarded cgroup"
        );
        assert_eq!(
            judge(
                &member(500, 5),
                Some(&stat(500, 1, 'T', 5)),
                Within::Machine,
                GUARD
            ),
            Ok(())
        );
        assert_eq!(judge(&member(100, 5), None, within, GUARD), Err(Skip::Gone));
    }

    #[test]
    fn init_kernel_threads_and_the_guard_are_never_resumed() {
        let within = Within::Machine;
        assert_eq!(
            judge(&member(1, 5), Some(&stat(1, 0, 'T', 5)), within, GUARD),
            Err(Skip::Untouchable("init"))
        );
        assert_eq!(
            judge(&member(0, 5), None, within, GUARD),
            Err(Skip::Untouchable("init"))
        );
        assert_eq!(
            judge(&member(40, 5), Some(&stat(40, 2, 'T', 5)), within, GUARD),
            Err(Skip::Untouchable("kernel thread"))
        );
        assert_eq!(
            judge(
                &member(GUARD, 5),
                Some(&stat(GUARD, 1, 'T', 5)),
                within,
                GUARD
            ),
            Err(Skip::Untouchable("the guard itself"))
        );
    }

    fn fake_tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let proc_root = tmp.path().join("proc");
        let cg = tmp.path().join("cg");
        std::fs::create_dir_all(proc_root.join("300")).expect("mkdir");
        std::fs::create_dir_all(cg.join("job")).expect("mkdir");
        std::fs::write(
            proc_root.join("mounts"),
            format!("cgroup2 {} cgroup2 rw 0 0\n", cg.display()),
        )
        .expect("mounts");
        std::fs::write(
            proc_root.join("300/stat"),
            "300 (job) T 1 300 300 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 1000 10 0\n",
        )
        .expect("stat");
        std::fs::write(proc_root.join("300/cgroup"), "0::/job\n").expect("cgroup");
        (tmp, proc_root, cg)
    }

    fn freeze(cgroup: PathBuf) -> HeldRecord {
        HeldRecord {
            how: How::Freeze,
            members: vec![member(300, 77)],
            cgroup: Some(cgroup),
            moved_from: None,
            since_unix_ms: None,
            why: None,
        }
    }

    #[test]
    fn freeze_records_outside_cgroup2_or_through_symlinks_are_refused() {
        let (tmp, proc_root, cg) = fake_tree();
        let elsewhere = tmp.path().join("etc");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        std::fs::write(elsewhere.join("cgroup.freeze"), "1").expect("write");
        std::os::unix::fs::symlink(&elsewhere, cg.join("link")).expect("symlink");
        for (path, needle) in [
            (elsewhere.clone(), "not below a cgroup2 mount"),
            (cg.join("link"), "symlink"),
            (cg.join("job/../../etc"), "without `.` or `..`"),
            // A real directory below the mount, but not on a cgroup2 filesystem.
            (cg.join("job"), "not on a cgroup2 filesystem"),
        ] {
            let record = freeze(path.clone());
            let err =
                judge_freeze(&record, &proc_root, Within::Machine, GUARD).expect_err("refused");
            assert!(
                err.to_string().contains(needle),
                "{}: {err}",
                path.display()
            );
            let log = recover_record(&record, &proc_root, Within::Machine, GUARD, false);
            assert!(log[0].starts_with("not thawing"), "{log:?}");
        }
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("cgroup.freeze")).expect("read"),
            "1",
            "nothing was written outside the cgroup mounts"
        );
        let gone = freeze(cg.join("gone"));
        assert!(recover_record(&gone, &proc_root, Within::Machine, GUARD, false).is_empty());
    }

    /// A staged record is moved back only when its cgroup is one the guard makes below where
    /// the tree came from, and a real, thawed cgroup; nothing is moved otherwise.
    #[test]
    fn staged_records_are_moved_back_only_from_real_memtrace_cgroups() {
        let (tmp, proc_root, cg) = fake_tree();
        let staged = |cgroup: PathBuf, from: PathBuf| HeldRecord {
            moved_from: Some(from),
            ..freeze(cgroup)
        };
        let made = cg.join("job/memtrace-held-9-300");
        std::fs::create_dir_all(&made).expect("mkdir");
        std::fs::write(made.join("cgroup.procs"), "300\n").expect("procs");
        for (record, needle) in [
            (
                staged(cg.join("job/other"), cg.join("job")),
                "not a memtrace cgroup made below",
            ),
            (
                staged(made.clone(), cg.clone()),
                "not a memtrace cgroup made below",
            ),
            // Named as the guard names it, but not on a cgroup2 filesystem.
            (staged(made.clone(), cg.join("job")), "not on a cgroup2"),
        ] {
            let line = freeze::recover_staged(&proc_root, &record, false).expect("a line");
            assert!(line.starts_with("not moving"), "{line}");
            assert!(line.contains(needle), "{line}");
        }
        assert!(made.exists(), "nothing removed");
        let gone = staged(cg.join("job/memtrace-held-9-301"), cg.join("job"));
        assert_eq!(freeze::recover_staged(&proc_root, &gone, false), None);
        // Through the state file, as a guard starting after a crash reads it.
        let dir = StateDir::open(&tmp.path().join("state"), true).expect("dir");
        let file = StateFile::new(&dir, "guard.json");
        let text = serde_json::to_string(&Saved {
            version: 2,
            boot_id: None,
            suspended: Vec::new(),
            staged: Some(staged(made.clone(), cg.join("job"))),
        })
        .expect("json");
        file.write(&text).expect("write");
        let log = recover_file(&file, &proc_root, Within::Machine, true);
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(log[0].contains("not on a cgroup2"), "{log:?}");
    }

    #[test]
    fn stop_records_are_judged_on_the_fake_proc_and_dry_run_only_says() {
        let (_tmp, proc_root, _cg) = fake_tree();
        let record = HeldRecord {
            how: How::Stop,
            members: vec![member(300, 77), member(301, 1), member(1, 1)],
            cgroup: None,
            moved_from: None,
            since_unix_ms: None,
            why: None,
        };
        let log = recover_record(&record, &proc_root, Within::Machine, GUARD, true);
        assert_eq!(
            log,
            vec![
                "would resume 300 (job)".to_owned(),
                "not resuming 1 (job): init is never touched".to_owned(),
            ]
        );
        let scope: HashSet<u32> = [42].into_iter().collect();
        let log = recover_record(&record, &proc_root, Within::Pids(&scope), GUARD, true);
        assert_eq!(log[0], "not resuming 300 (job): outside the guarded scope");
    }

    #[test]
    fn files_of_another_boot_are_not_acted_on_and_dry_runs_keep_the_file() {
        let (tmp, proc_root, _cg) = fake_tree();
        std::fs::create_dir_all(proc_root.join("sys/kernel/random")).expect("mkdir");
        std::fs::write(proc_root.join("sys/kernel/random/boot_id"), "this-boot\n").expect("id");
        let dir = StateDir::open(&tmp.path().join("state"), true).expect("dir");
        let file = StateFile::new(&dir, "guard.json");
        let saved = |boot: &str| {
            serde_json::to_string(&Saved {
                version: 2,
                boot_id: Some(boot.to_owned()),
                suspended: vec![HeldRecord {
                    how: How::Stop,
                    members: vec![member(300, 77)],
                    cgroup: None,
                    moved_from: None,
                    since_unix_ms: None,
                    why: None,
                }],
                staged: None,
            })
            .expect("json")
        };
        file.write(&saved("this-boot")).expect("write");
        let log = recover_file(&file, &proc_root, Within::Machine, true);
        assert_eq!(log, vec!["would resume 300 (job)".to_owned()]);
        assert!(
            file.read().expect("read").is_some(),
            "a dry run keeps the file"
        );

        file.write(&saved("another-boot")).expect("write");
        let log = recover_file(&file, &proc_root, Within::Machine, false);
        assert!(log[0].contains("before the last boot"), "{log:?}");
        assert!(
            file.read().expect("read").is_none(),
            "removed once recovered"
        );
    }

    #[test]
    fn run_files_are_recovered_only_when_their_run_is_dead() {
        let (tmp, proc_root, _cg) = fake_tree();
        let dir = StateDir::open(&tmp.path().join("state"), true).expect("dir");
        let record = serde_json::to_string(&Saved {
            version: 2,
            boot_id: None,
            suspended: vec![HeldRecord {
                how: How::Stop,
                members: vec![member(300, 77)],
                cgroup: None,
                moved_from: None,
                since_unix_ms: None,
                why: None,
            }],
            staged: None,
        })
        .expect("json");
        // A live run holds its lock; a dead one left a free lock file; an old one none, pid gone.
        let live = lock::run_state_name(11);
        let dead = lock::run_state_name(12);
        let old = lock::run_state_name(13);
        for name in [&live, &dead, &old] {
            StateFile::new(&dir, name).write(&record).expect("write");
        }
        let held = Lock::acquire(&dir, &lock::state_lock_name(&live), "run", Duration::ZERO)
            .expect("live run's lock");
        std::fs::write(dir.path().join(lock::state_lock_name(&dead)), "12\n").expect("lock");
        std::fs::write(
            dir.path()
                .join(lock::state_lock_name("run-14-suspended.json")),
            "",
        )
        .expect("leftover lock of a run that suspended nothing");

        let log = recover_runs(&dir, &proc_root, true, None);
        let mut sorted = log.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                "run 12: would resume 300 (job)".to_owned(),
                "run 13: would resume 300 (job)".to_owned(),
            ]
        );
        let mut names = dir.names().expect("list");
        names.sort();
        assert_eq!(names.len(), 6, "a dry run changes nothing: {names:?}");

        // Armed, with records whose process is gone: this fake /proc must never lead to a
        // signal to whatever process has that pid on the real machine.
        let gone = record.replace("\"pid\":300", "\"pid\":301");
        assert_ne!(gone, record);
        for name in [&live, &dead, &old] {
            StateFile::new(&dir, name).write(&gone).expect("write");
        }
        let log = recover_runs(&dir, &proc_root, false, None);
        assert!(log.is_empty(), "{log:?}");
        let mut names = dir.names().expect("list");
        names.sort();
        assert_eq!(
            names,
            vec![live.clone(), lock::state_lock_name(&live)],
            "recovered files and dead runs' locks are gone, the live run's stay"
        );
        drop(held);
    }
}
