//! The identity cache: a `stat` file opened once and re-read, a reused pid and a changed comm
//! read anew, an exited process forgotten with its file closed, the descriptor budget.
use std::{fs, process::Command};

use memtrace_testkit::child::KillOnDrop;

use super::*;

/// A `/proc/PID/stat` line (minflt 1234, majflt 5, ppid 1).
fn stat_line(pid: u32, comm: &str, start_ticks: u64) -> String {
    format!(
        "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 1234 0 5 0 10 20 0 0 20 0 1 0 {start_ticks} \
         123456789 2048 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
    )
}

/// A fake /proc with one process.
fn fake_proc(pid: u32, comm: &str, start_ticks: u64, cmdline: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    write_proc(root.path(), pid, comm, start_ticks, cmdline);
    root
}

/// Rewrites a fake process's files in place (the open `stat` file sees the new content).
fn write_proc(root: &Path, pid: u32, comm: &str, start_ticks: u64, cmdline: &str) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).expect("pid dir");
    fs::write(dir.join("stat"), stat_line(pid, comm, start_ticks)).expect("stat");
    fs::write(dir.join("cmdline"), cmdline.replace(' ', "\0")).expect("cmdline");
}

#[test]
fn a_stat_file_is_opened_once_then_reread_and_identities_are_shared() {
    let root = fake_proc(100, "worker", 5000, "python3 train.py");
    let mut idents = Idents::new(root.path(), 16);
    let first = idents.get(100).expect("first read");
    assert_eq!(
        (&*first.comm, &*first.cmdline, first.ppid, first.start_ticks),
        ("worker", "python3 train.py", 1, 5000)
    );
    assert_eq!(first.faults, 1239, "minflt + majflt");
    let second = idents.get(100).expect("second read");
    assert_eq!(
        idents.counts,
        IdentCounts {
            opens: 1,
            rereads: 1,
            cmdlines: 1
        },
        "the second sample re-reads the open file and not the command line"
    );
    assert!(
        Arc::ptr_eq(&first.comm, &second.comm) && Arc::ptr_eq(&first.cmdline, &second.cmdline),
        "an unchanged comm and command line are shared, not copied"
    );
    assert_eq!(idents.held(), (1, 1));
}

#[test]
fn a_reused_pid_is_read_as_a_new_process() {
    let root = fake_proc(100, "worker", 5000, "python3 train.py");
    let mut idents = Idents::new(root.path(), 16);
    idents.get(100).expect("first process");
    // The pid now names another process: same comm, another start time and command line.
    write_proc(root.path(), 100, "worker", 7000, "python3 eval.py");
    let reused = idents.get(100).expect("second process");
    assert_eq!(reused.start_ticks, 7000);
    assert_eq!(
        &*reused.cmdline, "python3 eval.py",
        "its command line is read"
    );
    assert_eq!(idents.counts.cmdlines, 2);
}

#[test]
fn a_changed_comm_shows_at_the_next_sample() {
    let root = fake_proc(100, "python3", 5000, "python3 train.py");
    let mut idents = Idents::new(root.path(), 16);
    idents.get(100).expect("first read");
    // prctl(PR_SET_NAME) or an exec: same process, new comm.
    write_proc(root.path(), 100, "data-loader", 5000, "loader --shard 3");
    let renamed = idents.get(100).expect("second read");
    assert_eq!(&*renamed.comm, "data-loader", "at the very next sample");
    assert_eq!(
        &*renamed.cmdline, "loader --shard 3",
        "read again with the comm"
    );
    assert_eq!(idents.counts.opens, 1, "through the same open file");
}

#[test]
fn within_the_max_age_nothing_is_read() {
    let root = fake_proc(100, "worker", 5000, "python3 train.py");
    let mut idents = Idents::new(root.path(), 16);
    idents.max_age = Some(Duration::from_secs(3600));
    idents.get(100).expect("first read");
    write_proc(root.path(), 100, "renamed", 5000, "python3 train.py");
    assert_eq!(&*idents.get(100).expect("cached").comm, "worker");
    assert_eq!((idents.counts.opens, idents.counts.rereads), (1, 0));
}

#[test]
fn an_exited_process_leaves_the_cache_and_its_file_is_closed() {
    let mut child = KillOnDrop::spawn(Command::new("sleep").arg("30"), "sleep").expect("sleep");
    let pid = child.pid();
    let mut idents = Idents::new(Path::new("/proc"), 16);
    let ident = idents.get(pid).expect("the child");
    assert_eq!(&*ident.comm, "sleep");
    assert_eq!(idents.held(), (1, 1));
    child.kill();
    // The open file's process is gone (ESRCH); by path the pid is gone too (or another's).
    let after = idents.get(pid);
    assert!(
        after.is_none_or(|other| other.start_ticks != ident.start_ticks),
        "the exited process is not read through its old file"
    );
    // Not sampled for two rounds: dropped, its file closed.
    idents.end_round();
    idents.end_round();
    idents.end_round();
    assert_eq!(idents.held(), (0, 0));
}

#[test]
fn an_exit_event_drops_the_entry_at_once() {
    let root = fake_proc(100, "worker", 5000, "python3 train.py");
    let mut idents = Idents::new(root.path(), 16);
    idents.get(100).expect("read");
    let last = idents.remove(100).expect("its last identity");
    assert_eq!(&*last.cmdline, "python3 train.py");
    assert_eq!(idents.held(), (0, 0));
}

#[test]
fn processes_sampled_in_the_last_two_rounds_stay() {
    let root = fake_proc(100, "a", 5000, "a");
    write_proc(root.path(), 101, "b", 5001, "b");
    let mut idents = Idents::new(root.path(), 16);
    idents.get(100).expect("a");
    idents.get(101).expect("b");
    idents.end_round();
    idents.get(100).expect("a again");
    idents.end_round();
    assert_eq!(
        idents.held(),
        (2, 2),
        "b missed one round: kept for a late exit event"
    );
    idents.get(100).expect("a again");
    idents.end_round();
    assert_eq!(idents.held(), (1, 1), "b missed two rounds: dropped");
    assert!(idents.last(101).is_none());
}

#[test]
fn beyond_the_budget_stat_is_read_by_path() {
    let root = fake_proc(100, "a", 5000, "a");
    write_proc(root.path(), 101, "b", 5001, "b");
    let mut idents = Idents::new(root.path(), 1);
    for _ in 0..3 {
        idents.get(100).expect("a");
        idents.get(101).expect("b");
    }
    assert_eq!(idents.held(), (2, 1), "one file kept open");
    assert_eq!(
        (idents.counts.opens, idents.counts.rereads),
        (1 + 3, 2),
        "pid 100 opened once, pid 101 read by path every time"
    );
    assert_eq!(
        idents.counts.cmdlines, 2,
        "each command line still read once"
    );
}
