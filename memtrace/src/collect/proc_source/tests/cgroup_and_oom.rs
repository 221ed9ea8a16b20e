//! The /proc source's cgroup scope (its own processes only; one moved in after its birth) and
//! the OOM counter naming a probable victim (cgroup or machine), on the fake /proc tree.
use super::*;
use crate::host::cgroup::Version;

/// A source for the (v2) cgroup `dir` of `fake`, its OOM kills counted there, without pidfds.
fn cgroup_source(fake: &FakeProc, dir: PathBuf) -> ProcSource {
    ProcSource::new(
        fake.root(),
        Members::Cgroup(dir.clone()),
        OomSource::Cgroup {
            dir,
            version: Version::V2,
        },
    )
    .without_pidfds()
}

#[test]
fn a_cgroup_scope_reads_only_its_processes() {
    let fake = FakeProc::new();
    fake.process(100, "in", IDLE);
    fake.process(101, "out", IDLE);
    let dir = fake.cgroup(&[100], 0);
    let mut source = cgroup_source(&fake, dir);
    source.read_at(Instant::now()).expect("read");
    assert_eq!(live_pids(&source), vec![100]);
}

#[test]
fn a_process_moved_into_a_cgroup_scope_is_read_at_the_next_reading_when_reading_every_sample() {
    // The cursor does not move (no birth): only a listing finds the process that joined.
    for every_sample in [false, true] {
        let fake = FakeProc::new();
        fake.own_namespace();
        fake.process(100, "in", IDLE);
        fake.process(101, "joins", IDLE);
        let dir = fake.cgroup(&[100], 0);
        let source = cgroup_source(&fake, dir);
        let mut source = if every_sample {
            source.every_sample()
        } else {
            source
        };
        let t0 = Instant::now();
        source.read_at(t0).expect("read");
        assert_eq!(live_pids(&source), vec![100]);
        fake.cgroup(&[100, 101], 0);
        source.read_at(after(t0, 100)).expect("read");
        let expected = if every_sample {
            vec![100, 101]
        } else {
            // Found by the periodic listing only.
            vec![100]
        };
        assert_eq!(live_pids(&source), expected, "every_sample {every_sample}");
    }
}

#[test]
fn a_rise_of_the_oom_counter_names_the_largest_vanished_process_as_probable() {
    let fake = FakeProc::new();
    fake.process(100, "small", IDLE);
    fake.process(
        101,
        "hog",
        Shows {
            anon_kib: 512 * 1024,
            ..IDLE
        },
    );
    fake.process(102, "bystander", IDLE);
    let dir = fake.cgroup(&[100, 101, 102], 2);
    let mut source = cgroup_source(&fake, dir);
    let t0 = Instant::now();
    let first = source.read_at(t0).expect("read");
    assert!(
        first.oom_kills.is_empty(),
        "kills before the start are not reported"
    );
    fake.exit(100);
    fake.exit(101);
    fake.cgroup(&[102], 3);
    let reading = source.read_at(after(t0, 100)).expect("read");
    assert_eq!(pids(&reading.exited), vec![100, 101]);
    assert_eq!(reading.oom_kills.len(), 1, "{:?}", reading.oom_kills);
    let kill = &reading.oom_kills[0];
    assert_eq!(kill.pid, 101, "the largest that vanished");
    assert_eq!(kill.comm, format!("hog{PROBABLE}"));
    assert_eq!(kill.rss_bytes, (512 * 1024 + 512) * KIB);
    let exit = reading.exited.iter().find(|p| p.pid == 101).expect("exit");
    assert!(!exit.oom_killed, "never claimed as certain");
    // A rise with nothing vanished (a victim born and killed between two samples) is seen at
    // the next periodic read, within a second, as a kill whose victim is unknown.
    fake.cgroup(&[102], 4);
    let quiet = source.read_at(after(t0, 200)).expect("read");
    assert!(quiet.oom_kills.is_empty(), "not read again so soon");
    let reading = source.read_at(after(t0, 1100)).expect("read");
    assert_eq!(reading.oom_kills.len(), 1);
    assert_eq!(
        (reading.oom_kills[0].pid, reading.oom_kills[0].comm.as_str()),
        (0, UNKNOWN_VICTIM)
    );
}

#[test]
fn the_machine_counter_is_vmstat() {
    let fake = FakeProc::new();
    fake.process(100, "p", IDLE);
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    fake.write("vmstat", "nr_free_pages 1\noom_kill 1\n");
    fake.exit(100);
    let reading = source.read_at(after(t0, 100)).expect("read");
    assert_eq!(reading.oom_kills.len(), 1);
    assert_eq!(reading.oom_kills[0].pid, 100);
}

#[test]
fn more_kills_than_vanished_processes() {
    let vanished = [
        ProcSample {
            pid: 1,
            comm: "a".to_owned().into(),
            rss_bytes: 10,
            ..ProcSample::default()
        },
        ProcSample {
            pid: 2,
            comm: "b".to_owned().into(),
            rss_bytes: 5,
            swap_bytes: 20,
            ..ProcSample::default()
        },
    ];
    let kills = oom::attribute(3, &vanished, 7);
    let named: Vec<(u32, &str)> = kills.iter().map(|k| (k.pid, k.comm.as_str())).collect();
    assert_eq!(
        named,
        vec![
            (2, "b (probable victim)"),
            (1, "a (probable victim)"),
            (0, UNKNOWN_VICTIM)
        ],
        "resident + swapped decides"
    );
    assert!(oom::attribute(0, &vanished, 7).is_empty());
}

#[test]
fn without_the_oom_counter_no_kill_is_guessed() {
    let fake = FakeProc::new();
    fake.process(100, "victim", IDLE);
    let mut counting =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    let mut silent = ProcSource::new(fake.root(), Members::All, OomSource::Machine)
        .without_pidfds()
        .without_oom_counter();
    let t0 = Instant::now();
    counting.read_at(t0).expect("read");
    silent.read_at(t0).expect("read");
    fake.exit(100);
    fake.write("vmstat", "nr_free_pages 1\noom_kill 1\n");
    let counted = counting.read_at(after(t0, 100)).expect("read");
    let unguessed = silent.read_at(after(t0, 100)).expect("read");
    assert_eq!(
        counted.oom_kills.len(),
        1,
        "the counter names a probable victim"
    );
    assert_eq!(pids(&unguessed.exited), vec![100]);
    assert!(unguessed.oom_kills.is_empty(), "{:?}", unguessed.oom_kills);
}
