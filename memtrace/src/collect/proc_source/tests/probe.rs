//! What the `stat` probe decides: a process whose resident set, size or faults changed is read
//! in full (and a transient peak shows through `VmHWM`), one that only ran is not, a task
//! without memory is never followed; and the cadence of idle processes. And the guard's `statm`
//! probe ([`ProcSource::sizes_only`]): sizes only.
use super::*;

#[test]
fn idle_processes_are_read_less_often_and_changes_in_full() {
    let fake = FakeProc::new();
    let child = sleeper();
    let pid = child.pid();
    fake.process(pid, "idle", IDLE);
    let mut source = ProcSource::new(fake.root(), Members::All, OomSource::Machine);
    let t0 = Instant::now();
    let anon_at = |source: &mut ProcSource, ms: u64| {
        source.read_at(after(t0, ms)).expect("read");
        live(source, pid).expect("live").anon_bytes
    };
    anon_at(&mut source, 0);
    // status changes but stat's memory values do not: nothing new is read.
    let status = fake.root().join(format!("{pid}/status"));
    let text = fs::read_to_string(&status).expect("status");
    fs::write(&status, text.replace("VmSwap:\t0 kB", "VmSwap:\t4 kB")).expect("write");
    source.read_at(after(t0, 100)).expect("read");
    let swap = live(&source, pid).expect("live").swap_bytes;
    assert_eq!(
        swap, 0,
        "status is read only when stat's memory values changed"
    );
    // Unchanged at 100 ms: it lets 1 sample pass (200), is read at 300, then lets 3 pass.
    anon_at(&mut source, 200);
    anon_at(&mut source, 300);
    let changed = Shows {
        anon_kib: 4096,
        ..IDLE
    };
    fake.process(pid, "idle", changed);
    let seen: Vec<u64> = (4..=7)
        .map(|step| anon_at(&mut source, 100 * step))
        .collect();
    assert_eq!(
        seen,
        vec![
            IDLE.anon_kib * KIB,
            IDLE.anon_kib * KIB,
            IDLE.anon_kib * KIB,
            4096 * KIB
        ],
        "read at the 4th sample after the last read"
    );
    // A process that changed is read at every sample until it settles.
    fake.process(
        pid,
        "idle",
        Shows {
            anon_kib: 8192,
            ..IDLE
        },
    );
    assert_eq!(
        anon_at(&mut source, 800),
        8192 * KIB,
        "the very next sample"
    );
    // Idle for 3 s: however many samples it now lets pass, it is read within a second.
    for step in 9..=38 {
        anon_at(&mut source, 100 * step);
    }
    fake.process(
        pid,
        "idle",
        Shows {
            anon_kib: 1,
            ..IDLE
        },
    );
    let first_seen = (39..=60)
        .map(|step| 100 * step)
        .find(|&ms| anon_at(&mut source, ms) == KIB)
        .expect("read again");
    assert!(
        first_seen - 3800 <= 1000,
        "seen {} ms later",
        first_seen - 3800
    );
}

#[test]
fn every_sample_reads_each_process_without_pidfds() {
    let fake = FakeProc::new();
    fake.process(100, "p", IDLE);
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    source.read_at(after(t0, 100)).expect("read");
    fake.process(
        100,
        "p",
        Shows {
            anon_kib: 4,
            ..IDLE
        },
    );
    source.read_at(after(t0, 200)).expect("read");
    assert_eq!(live(&source, 100).expect("live").anon_bytes, 4 * KIB);
}

#[test]
fn idle_processes_cost_no_full_reads() {
    let fake = FakeProc::new();
    let children: Vec<KillOnDrop> = (0..3).map(|_| sleeper()).collect();
    for child in &children {
        fake.process(child.pid(), "idle", IDLE);
    }
    let mut source = ProcSource::new(fake.root(), Members::All, OomSource::Machine);
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    let admitted = source.counts();
    assert_eq!(admitted.full, 3);
    for step in 1..=20 {
        source.read_at(after(t0, 100 * step)).expect("read");
    }
    let counts = source.counts();
    assert_eq!(counts.full, 3, "nothing changed: stat only");
    // 2 s at 100 ms: each is read at samples 1, 3, 7, 15 and when a second has passed.
    assert!(
        counts.unchanged <= 3 * 6,
        "idle processes are not read every sample: {counts:?}"
    );
}

#[test]
fn read_every_sample_sees_an_idle_process_change_at_the_next_sample() {
    let fake = FakeProc::new();
    let child = sleeper();
    let pid = child.pid();
    fake.process(pid, "idle", IDLE);
    let mut source = ProcSource::new(fake.root(), Members::All, OomSource::Machine).every_sample();
    let t0 = Instant::now();
    // Idle long enough that the backoff would let several samples pass.
    for step in 0..=8 {
        source.read_at(after(t0, 50 * step)).expect("read");
    }
    let before = source.counts().unchanged;
    fake.process(
        pid,
        "idle",
        Shows {
            anon_kib: 4096,
            ..IDLE
        },
    );
    source.read_at(after(t0, 450)).expect("read");
    assert_eq!(live(&source, pid).expect("live").anon_bytes, 4096 * KIB);
    assert_eq!(before, 8, "every idle sample read its stat");
}

#[test]
fn a_process_that_faulted_is_read_in_full_and_its_peak_is_the_kernels() {
    let fake = FakeProc::new();
    let child = sleeper();
    let pid = child.pid();
    fake.process(pid, "pipeline", IDLE);
    let mut source = ProcSource::new(fake.root(), Members::All, OomSource::Machine);
    let t0 = Instant::now();
    // Idle: read at 0, 100 and 300 ms, letting samples pass in between.
    for step in 0..=3 {
        source.read_at(after(t0, 100 * step)).expect("read");
    }
    let before = source.counts();
    // A clip maps 1 GiB, touches it and unmaps it between two samples: its resident set and
    // size are back where they were, but not its faults, and the kernel's VmHWM kept the peak.
    let peak_kib = IDLE.hwm_kib + 1024 * 1024;
    let faulted = Shows {
        minflt: IDLE.minflt + 262_144,
        hwm_kib: peak_kib,
        ..IDLE
    };
    fake.process(pid, "pipeline", faulted);
    let seen_at = (4..=13)
        .map(|step| 100 * step)
        .find(|&ms| {
            source.read_at(after(t0, ms)).expect("read");
            live(&source, pid).expect("live").peak_rss_bytes == peak_kib * KIB
        })
        .expect("the peak is seen");
    assert!(
        Duration::from_millis(seen_at - 300) < tracked::IDLE_REREAD,
        "seen {} ms later",
        seen_at - 300
    );
    let p = live(&source, pid).expect("live");
    assert_eq!(
        p.rss_bytes,
        (IDLE.anon_kib + IDLE.file_kib) * KIB,
        "back down"
    );
    assert_eq!(p.faults, faulted.minflt + faulted.majflt);
    let counts = source.counts();
    assert_eq!(counts.full - before.full, 1, "one full read: {counts:?}");
    // Settled again: nothing more is read in full.
    for step in seen_at / 100 + 1..=seen_at / 100 + 10 {
        source.read_at(after(t0, 100 * step)).expect("read");
    }
    assert_eq!(source.counts().full, counts.full);
}

#[test]
fn a_process_that_only_ran_is_unchanged() {
    let fake = FakeProc::new();
    fake.process(100, "busy", IDLE);
    // Read at every sample: no backoff to wait for.
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    let before = source.counts();
    // Its CPU times moved (and its status, which only a full read would show), not its
    // resident set, size or faults.
    let ran = Shows {
        cpu_ticks: 500,
        swap_kib: 64,
        hwm_kib: 2 * IDLE.hwm_kib,
        ..IDLE
    };
    fake.process(100, "busy", ran);
    source.read_at(after(t0, 100)).expect("read");
    let counts = source.counts();
    assert_eq!(
        (
            counts.unchanged - before.unchanged,
            counts.full - before.full
        ),
        (1, 0),
        "{counts:?}"
    );
    let p = live(&source, 100).expect("live");
    assert_eq!(
        (p.swap_bytes, p.peak_rss_bytes),
        (0, IDLE.hwm_kib * KIB),
        "status was not read"
    );
    // One major fault: read in full.
    fake.process(
        100,
        "busy",
        Shows {
            cpu_ticks: 501,
            majflt: IDLE.majflt + 1,
            ..ran
        },
    );
    source.read_at(after(t0, 200)).expect("read");
    assert_eq!(source.counts().full - counts.full, 1);
    let p = live(&source, 100).expect("live");
    assert_eq!(
        (p.swap_bytes, p.peak_rss_bytes),
        (64 * KIB, 2 * IDLE.hwm_kib * KIB)
    );
}

#[test]
fn tasks_without_memory_are_not_followed_and_a_zombie_has_exited() {
    let fake = FakeProc::new();
    fake.kernel_thread(2);
    // No address space in stat: not followed, whatever its status says.
    fake.kernel_thread(3);
    fake.write(
        "3/status",
        "Name:\tkworker/1:0\nVmHWM:\t4 kB\nRssAnon:\t4 kB\n",
    );
    // No memory lines in status: not followed either.
    fake.process(4, "exiting", IDLE);
    fake.write("4/status", "Name:\texiting\nState:\tZ (zombie)\n");
    fake.process(100, "user", IDLE);
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    assert_eq!(live_pids(&source), vec![100]);
    assert_eq!(source.counts().full, 1, "only the user process is read");
    // A followed process becomes a zombie, still listed (its parent has not reaped it).
    fake.zombie(100);
    let reading = source.read_at(after(t0, 100)).expect("read");
    assert_eq!(pids(&reading.exited), vec![100]);
    assert_eq!(
        reading.exited[0].anon_bytes,
        IDLE.anon_kib * KIB,
        "its last values"
    );
    // The next listing sees it again, as a task without memory: not followed, not exited twice.
    let reading = source.read_at(after(t0, 1100)).expect("read");
    assert!(reading.exited.is_empty(), "{:?}", reading.exited);
    assert!(live_pids(&source).is_empty());
    assert_eq!(source.counts().listings, 2);
}

#[test]
fn the_sizes_only_probe_reads_statm_and_the_rest_only_when_the_sizes_changed() {
    let fake = FakeProc::new();
    let child = sleeper();
    let pid = child.pid();
    fake.process(pid, "hog", IDLE);
    let mut source = ProcSource::new(fake.root(), Members::All, OomSource::Machine)
        .every_sample()
        .sizes_only();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    // Faults alone (a peak let go): the guard's probe does not look, nothing else is read.
    let peak_kib = IDLE.hwm_kib + 1024 * 1024;
    fake.process(
        pid,
        "hog",
        Shows {
            minflt: IDLE.minflt + 262_144,
            hwm_kib: peak_kib,
            ..IDLE
        },
    );
    source.read_at(after(t0, 100)).expect("read");
    let counts = source.counts();
    assert_eq!((counts.full, counts.unchanged), (1, 1), "{counts:?}");
    assert!(live(&source, pid).expect("live").peak_rss_bytes < peak_kib * KIB);
    // Growth changes statm: read in full at once, faults and peak included.
    let grown = Shows {
        anon_kib: 64 * 1024,
        minflt: IDLE.minflt + 300_000,
        hwm_kib: peak_kib,
        ..IDLE
    };
    fake.process(pid, "hog", grown);
    source.read_at(after(t0, 200)).expect("read");
    let p = live(&source, pid).expect("live");
    assert_eq!(p.anon_bytes, 64 * 1024 * KIB);
    assert_eq!(p.faults, grown.minflt + grown.majflt);
    assert_eq!(p.peak_rss_bytes, peak_kib * KIB);
    assert_eq!(source.counts().full, 2);
    // A zombie's statm is all zeros: it has exited.
    fake.zombie(pid);
    let reading = source.read_at(after(t0, 300)).expect("read");
    assert_eq!(
        reading.exited.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [pid]
    );
}
