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
        let err = judge_freeze(&record, &proc_root, Within::Machine, GUARD).expect_err("refused");
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

/// A state file recording the fake tree's job 300 as stopped, for the boot `boot_id`.
fn stopped_job_file(boot_id: Option<&str>) -> String {
    serde_json::to_string(&Saved {
        version: 2,
        boot_id: boot_id.map(str::to_owned),
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
}

#[test]
fn files_of_another_boot_are_not_acted_on_and_dry_runs_keep_the_file() {
    let (tmp, proc_root, _cg) = fake_tree();
    std::fs::create_dir_all(proc_root.join("sys/kernel/random")).expect("mkdir");
    std::fs::write(proc_root.join("sys/kernel/random/boot_id"), "this-boot\n").expect("id");
    let dir = StateDir::open(&tmp.path().join("state"), true).expect("dir");
    let file = StateFile::new(&dir, "guard.json");
    let saved = |boot: &str| stopped_job_file(Some(boot));
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
    let record = stopped_job_file(None);
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
