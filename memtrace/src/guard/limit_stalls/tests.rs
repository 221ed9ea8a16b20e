//! Stalls count while the scope stalls now, except those of cgroups at their own limits; with
//! no cgroup at its limit, the kernel's PSI passes as it is.
use std::fs;

use super::*;

const ROUND: u64 = 200_000;
/// The scope's limit: 1 GiB.
const SCOPE: u64 = 1 << 30;
/// A limited cgroup's limit: 1 MiB.
const LIMIT: u64 = 1 << 20;

fn round(machine_us: u64, own_us: u64, at_limit: bool) -> Round {
    Round {
        elapsed_us: ROUND,
        machine_us,
        own_us,
        at_limit,
    }
}

#[test]
fn the_cgroups_own_stalls_at_its_limit_are_not_pressure() {
    // Throttled at its memory.high: 30 % of the round stalled, all of it its own.
    assert!(!counts(round(60_000, 59_000, true)));
    // 40 % of a round, 5 % of it read a moment apart: still its own.
    assert!(!counts(round(80_000, 76_000, true)));
    // Others stall too (20 % of the round outside it): pressure.
    assert!(counts(round(60_000, 20_000, true)));
    // Below its limit, stalled by a full machine: pressure.
    assert!(counts(round(60_000, 60_000, false)));
}

#[test]
fn stalls_that_have_stopped_are_not_pressure() {
    // An ended run's stalls still in avg10, none this round.
    assert!(!counts(round(0, 0, false)));
    assert!(!counts(round(ROUND / 200, 0, false)), "0.5 % of a round");
    assert!(counts(round(ROUND / 50, 0, false)), "2 % of a round");
}

/// A fake v2 cgroup: its limits, stall total (µs), usage and limit hits.
fn cgroup(dir: &Path, own_us: u64, current: u64, hits: u64) {
    fs::create_dir_all(dir).expect("dir");
    fs::write(dir.join("memory.max"), format!("{LIMIT}\n")).expect("max");
    fs::write(dir.join("memory.high"), "max\n").expect("high");
    fs::write(
        dir.join("memory.pressure"),
        format!(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total={own_us}\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total={own_us}\n"
        ),
    )
    .expect("pressure");
    fs::write(dir.join("memory.current"), format!("{current}\n")).expect("current");
    fs::write(
        dir.join("memory.events"),
        format!("low 0\nhigh 0\nmax {hits}\noom 0\noom_kill 0\n"),
    )
    .expect("events");
}

/// A fake v2 cgroup with the memory controller and no limit.
fn unlimited(dir: &Path) {
    fs::create_dir_all(dir).expect("dir");
    fs::write(dir.join("memory.max"), "max\n").expect("max");
}

fn machine(total_us: u64) -> Psi {
    let mut psi = Psi::default();
    psi.some.avg10 = 12.0;
    psi.some.total_us = total_us;
    psi
}

/// A fake cgroup hierarchy and a meter searching it.
fn searched() -> (tempfile::TempDir, StallMeter) {
    let root = tempfile::tempdir().expect("tempdir");
    let meter = StallMeter::new(Some(root.path().to_owned()));
    (root, meter)
}

/// Times `ms` after a fixed start.
fn clock() -> impl Fn(u64) -> Instant {
    let t0 = Instant::now();
    move |ms| t0 + Duration::from_millis(ms)
}

#[test]
fn a_pinned_pipeline_is_compared_over_the_last_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let after = clock();
    // The machine stalls, the pipeline (far below its limit) does not.
    cgroup(dir.path(), 0, 1000, 0);
    let mut meter = StallMeter::new(None);
    meter.pin(dir.path(), LIMIT);
    assert_eq!(
        meter.filter(machine(0), SCOPE, after(0)),
        None,
        "nothing to compare"
    );
    assert!(meter.wants_reading(after(100)), "a second reading decides");
    assert_eq!(
        meter.filter(machine(60_000), SCOPE, after(200)),
        None,
        "under MIN_SPAN"
    );
    assert_eq!(
        meter.filter(machine(300_000), SCOPE, after(600)),
        Some(machine(300_000)),
        "half of 600 ms stalled, none of it the pipeline's"
    );
    // An earlier run's stalls: the totals no longer move, avg10 still shows them.
    let mut meter = StallMeter::new(None);
    meter.pin(dir.path(), LIMIT);
    meter.filter(machine(900_000), SCOPE, after(0));
    assert_eq!(meter.filter(machine(900_000), SCOPE, after(600)), None);
}

#[test]
fn the_pipelines_stalls_stay_its_own_after_its_memory_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let after = clock();
    // At its limit, then ended (usage 0): the window still saw it near the limit.
    cgroup(dir.path(), 0, LIMIT, 0);
    let mut meter = StallMeter::new(None);
    meter.pin(dir.path(), LIMIT);
    meter.filter(machine(0), SCOPE, after(0));
    cgroup(dir.path(), 290_000, LIMIT, 0);
    assert_eq!(meter.filter(machine(300_000), SCOPE, after(600)), None);
    cgroup(dir.path(), 330_000, 0, 0);
    assert_eq!(meter.filter(machine(340_000), SCOPE, after(700)), None);
    // Never seen near it, but it hit memory.max (an OOM kill freed the memory).
    cgroup(dir.path(), 0, 0, 0);
    let mut meter = StallMeter::new(None);
    meter.pin(dir.path(), LIMIT);
    meter.filter(machine(0), SCOPE, after(0));
    cgroup(dir.path(), 300_000, 0, 4);
    assert_eq!(meter.filter(machine(300_000), SCOPE, after(600)), None);
}

#[test]
fn a_cgroup_found_at_its_limit_explains_the_machines_stalls() {
    let (root, mut meter) = searched();
    let pipeline = root.path().join("user.slice/memtrace-run-7.scope/pipeline");
    let after = clock();
    unlimited(&root.path().join("user.slice"));
    unlimited(&root.path().join("user.slice/memtrace-run-7.scope"));
    // Nothing limited is at its limit: the kernel's PSI passes as it is, stalls or not.
    let mut judge = |machine_us: u64, ms: u64| meter.judge(&machine(machine_us), SCOPE, after(ms));
    let own = |dirs: &[&PathBuf]| Verdict::Own {
        dirs: dirs.iter().map(|d| (*d).clone()).collect(),
    };
    cgroup(&pipeline, 0, 1000, 0);
    assert_eq!(judge(0, 0), Verdict::Unattributed);
    assert_eq!(
        judge(0, 1000),
        Verdict::Unattributed,
        "avg10, no new stalls"
    );
    // Throttled at its limit: found, then compared once a second reading spans MIN_SPAN.
    cgroup(&pipeline, 0, LIMIT, 10);
    assert_eq!(judge(0, 2000), own(&[&pipeline]), "at its limit, no stall");
    cgroup(&pipeline, 190_000, LIMIT, 60);
    assert_eq!(judge(200_000, 2600), own(&[&pipeline]));
    // Others stall as much as it does: pressure.
    cgroup(&pipeline, 380_000, LIMIT, 90);
    assert_eq!(judge(600_000, 3200), Verdict::Pressure);
    // It ends: its last stalls cannot be compared, then the avg10 it left is not pressure
    // while nothing stalls, until AFTERWARDS has passed.
    fs::remove_dir_all(root.path().join("user.slice")).expect("rm");
    assert_eq!(judge(700_000, 3800), own(&[&pipeline]));
    assert_eq!(judge(700_000, 4800), own(&[]));
    assert_eq!(judge(700_000, 3200 + 31_000), Verdict::Unattributed);
}

#[test]
fn a_first_reading_at_the_limit_waits_for_a_second() {
    let (root, mut meter) = searched();
    let after = clock();
    unlimited(&root.path().join("docker"));
    cgroup(&root.path().join("docker/c1"), 50_000, LIMIT, 3);
    assert_eq!(
        meter.judge(&machine(100_000), SCOPE, after(0)),
        Verdict::Undecided
    );
    assert!(meter.wants_reading(after(10)));
    assert!(!meter.wants_reading(after(10_000)), "too old to compare");
    cgroup(&root.path().join("docker/c1"), 150_000, LIMIT, 3);
    assert_eq!(
        meter.judge(&machine(200_000), SCOPE, after(500)),
        Verdict::Own {
            dirs: vec![root.path().join("docker/c1")]
        }
    );
    assert!(!meter.wants_reading(after(510)), "decided");
}

#[test]
fn nested_limits_count_the_outer_cgroups_stalls_once() {
    let (root, mut meter) = searched();
    let outer = root.path().join("c1");
    let inner = outer.join("inner");
    let after = clock();
    cgroup(&outer, 0, LIMIT, 0);
    cgroup(&inner, 0, LIMIT, 0);
    meter.judge(&machine(0), SCOPE, after(0));
    // The inner cgroup's 300 ms are in the outer's; the machine stalled 300 ms more elsewhere.
    cgroup(&outer, 300_000, LIMIT, 0);
    cgroup(&inner, 300_000, LIMIT, 0);
    assert_eq!(
        meter.judge(&machine(600_000), SCOPE, after(600)),
        Verdict::Pressure
    );
}

#[test]
fn limits_at_or_above_the_scopes_are_not_looked_at() {
    let (root, mut meter) = searched();
    let after = clock();
    cgroup(&root.path().join("c1"), 0, LIMIT, 0);
    assert_eq!(
        meter.judge(&machine(100_000), LIMIT, after(0)),
        Verdict::Unattributed
    );
}

#[test]
fn a_trigger_waits_for_the_verdict_and_the_log_names_a_cgroup_once() {
    let mut note = StallNote::default();
    let own = Verdict::Own {
        dirs: vec![PathBuf::from("/sys/fs/cgroup/c1")],
    };
    assert!(
        note.triggered(&Verdict::Unattributed, true),
        "as the kernel says"
    );
    assert!(!note.triggered(&Verdict::Unattributed, false));
    // Fired too early to tell: it counts if the next reading says pressure...
    assert!(!note.triggered(&Verdict::Undecided, true));
    assert!(note.triggered(&Verdict::Pressure, false));
    // ...and not if the stalls were a cgroup's own.
    assert!(!note.triggered(&Verdict::Undecided, true));
    assert!(!note.triggered(&own, false));
    assert_eq!(note.said, vec![PathBuf::from("/sys/fs/cgroup/c1")]);
    assert!(!note.triggered(&own, true));
    assert!(
        !note.triggered(&Verdict::Pressure, false),
        "the pending trigger was used"
    );
    assert!(note.said.is_empty(), "said again after pressure in between");
}

#[test]
fn a_cgroup_found_between_two_readings_is_compared_from_the_next() {
    let (root, mut meter) = searched();
    let after = clock();
    let c1 = root.path().join("c1");
    // Stalls before anything limited exists: as the kernel says.
    assert_eq!(
        meter.judge(&machine(0), SCOPE, after(0)),
        Verdict::Unattributed
    );
    // A cgroup throttled at its limit appears: no baseline for it yet.
    cgroup(&c1, 400_000, LIMIT, 7);
    assert_eq!(
        meter.judge(&machine(500_000), SCOPE, after(1000)),
        Verdict::Undecided
    );
    assert!(meter.wants_reading(after(1100)));
    cgroup(&c1, 600_000, LIMIT, 9);
    assert_eq!(
        meter.judge(&machine(700_000), SCOPE, after(1500)),
        Verdict::Own { dirs: vec![c1] }
    );
}
