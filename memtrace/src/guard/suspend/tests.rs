//! A freeze that fails falls back to SIGSTOP, recorded as such before the signal; a staged
//! tree is recorded, moved back when dropped, and never out of a held tree's cgroup.
use std::process::Command;

use memtrace_testkit::{child::KillOnDrop, proc::state};

use super::*;
use crate::guard::state::StateDir;

/// A staged cgroup that a held tree is frozen in (it had become the tree's own) is left
/// alone when the staging is dropped: moving its processes out would thaw them.
#[test]
fn the_staged_cgroup_of_a_held_tree_is_not_emptied() {
    let proc_root = Path::new("/proc");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = StateDir::open(&tmp.path().join("state"), true).expect("state dir");
    let mut set = SuspendedSet::new(Some(StateFile::new(&dir, "s.json")), proc_root);
    let staged = tmp.path().join("memtrace-held-1-2");
    std::fs::create_dir(&staged).expect("mkdir");
    let member = ProcRef {
        pid: 2,
        start_ticks: 1,
        comm: "tree".to_owned(),
    };
    let candidate = Candidate {
        root: member.clone(),
        members: vec![member.clone()],
        growth_bytes_per_s: 1.0,
        rss_bytes: 0,
        held_bytes: 0,
        preferred: false,
        avoided: false,
        growing: true,
    };
    let placed = || Placed {
        how: How::FreezerV1,
        cgroup: staged.clone(),
        moved_from: Some(tmp.path().to_owned()),
        staged: true,
    };
    let line = set.stage(&candidate, placed());
    assert!(line.starts_with("staged 2 (tree)"), "{line}");
    let saved = std::fs::read_to_string(tmp.path().join("state/s.json")).expect("saved");
    assert!(
        saved.contains("\"staged\""),
        "the staged tree is recorded: {saved}"
    );
    set.trees.push(Suspended {
        record: HeldRecord {
            how: How::FreezerV1,
            members: vec![member.clone()],
            cgroup: Some(staged.clone()),
            moved_from: None,
            since_unix_ms: None,
            why: None,
        },
        fds: Vec::new(),
        since: Instant::now(),
        summary: String::new(),
        root: member,
        growth_bytes_per_s: 0.0,
        held_bytes: 0,
        why: String::new(),
    });
    assert_eq!(set.unstage(), None);
    assert!(staged.is_dir(), "the held tree's cgroup stays");
    set.trees.clear();
    // Not held there: moved back (nothing inside here) and removed.
    set.stage(&candidate, placed());
    let line = set.unstage().expect("a line");
    assert!(
        line.starts_with("moved the staged tree 2 (tree) back"),
        "{line}"
    );
    assert!(!staged.exists(), "removed");
}

#[test]
fn a_freeze_that_fails_falls_back_to_sigstop_and_records_it() {
    let proc_root = Path::new("/proc");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = StateDir::open(&tmp.path().join("state"), true).expect("state dir");
    let file = StateFile::new(&dir, "suspended.json");
    let mut set = SuspendedSet::new(Some(file), proc_root);
    let child = KillOnDrop::spawn(Command::new("sleep").arg("30"), "sleep").expect("sleep");
    let stat = crate::host::procfs::parse_pid_stat(
        &std::fs::read_to_string(format!("/proc/{}/stat", child.pid())).expect("stat"),
    )
    .expect("parses");
    let member = ProcRef {
        pid: child.pid(),
        start_ticks: stat.start_ticks,
        comm: stat.comm,
    };
    let candidate = Candidate {
        root: member.clone(),
        members: vec![member],
        growth_bytes_per_s: 0.0,
        rss_bytes: 0,
        held_bytes: 0,
        preferred: false,
        avoided: false,
        growing: true,
    };
    // Not a cgroup at all (as a cgroup on a read-only cgroupfs cannot be frozen either).
    let line = set
        .suspend(
            &candidate,
            Some(Placed {
                how: How::Freeze,
                cgroup: tmp.path().join("not-a-cgroup"),
                moved_from: None,
                staged: false,
            }),
            "test",
        )
        .expect("suspended anyway");
    assert!(
        line.starts_with("sent SIGSTOP to 1 process(es)") && line.contains("freezing"),
        "{line}"
    );
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        state(child.pid()) == Some('T')
    });
    assert!(stopped, "stopped by SIGSTOP: {:?}", state(child.pid()));
    assert_eq!(set.trees[0].record.how, How::Stop);
    assert_eq!(set.trees[0].record.cgroup, None);
    let saved =
        std::fs::read_to_string(tmp.path().join("state/suspended.json")).expect("state file");
    assert!(
        saved.contains("\"stop\"") && !saved.contains("freeze"),
        "{saved}"
    );
    assert!(
        saved.contains("\"since_unix_ms\": ") && saved.contains("\"why\": \"test\""),
        "when and why are recorded for `top`: {saved}"
    );
    set.resume_all();
    let resumed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        state(child.pid()) != Some('T')
    });
    assert!(resumed, "resumed by SIGCONT: {:?}", state(child.pid()));
}
