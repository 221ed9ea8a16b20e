//! The engine, reading and acting, on made-up time (no sleep) in a dry run: suspend at
//! pressure, resume after calm only what will hold (and not a tree cycled `max_cycles` times),
//! GPU warn names holders; the sshd stall signal follows sshd's executable, not a process's
//! name; every decision returned is counted by action and outcome. (The policy alone is in
//! `scenarios`.)
use std::time::Duration;

use super::*;
use crate::{
    collect::{gpu::GpuProcess, model::GpuDevice},
    host::units::MIB,
};

fn engine() -> Engine {
    engine_with("")
}

/// A dry-run engine resuming after 1 ms of calm, with more `[thresholds]` keys.
fn engine_with(thresholds: &str) -> Engine {
    let text = format!("[thresholds]\nresume_after = \"1ms\"\n{thresholds}");
    let config = GuardConfig::from_layers(Some((&text, "test"))).expect("config");
    Engine::new(
        config,
        Scope::Machine,
        Path::new("/nonexistent-proc"),
        None,
        true,
    )
}

fn snapshot() -> Snapshot {
    Snapshot {
        procs: vec![ProcSample {
            pid: 4242,
            ppid: 1,
            comm: "leaker".to_owned().into(),
            start_ticks: 1,
            anon_bytes: 900 << 20,
            rss_bytes: 900 << 20,
            growth_bytes_per_s: 50.0 * MIB as f64,
            footprint_growth_bytes_per_s: 50.0 * MIB as f64,
            ..ProcSample::default()
        }],
        ..Snapshot::default()
    }
}

fn usage(percent: u64) -> Usage {
    Usage {
        used_bytes: percent << 20,
        limit_bytes: 100 << 20,
    }
}

/// The victim must exist in /proc (identities are re-read before choosing): a snapshot of this
/// test process growing 50 MiB/s and holding 900 MiB, with an engine that believes the guard
/// is someone else. Returns the snapshot and this process's pid.
fn me_growing(engine: &mut Engine) -> (Snapshot, u32) {
    engine.effects.pretend(Path::new("/proc"), 1);
    let me = procfs::parse_pid_stat(&procfs::read(Path::new("/proc/self/stat")).expect("stat"))
        .expect("parse");
    let mut snap = snapshot();
    snap.procs[0].pid = me.pid;
    snap.procs[0].start_ticks = me.start_ticks;
    (snap, me.pid)
}

/// One round, 10 ms of made-up time after the previous one (no sleep).
fn tick(
    engine: &mut Engine,
    usage: Usage,
    snap: &Snapshot,
    gpu: Option<&GpuSample>,
) -> Vec<Decision> {
    thread_local! {
        static NOW: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = NOW.with(|cell| {
        let now = cell
            .get()
            .map_or_else(Instant::now, |t| t + Duration::from_millis(10));
        cell.set(Some(now));
        now
    });
    engine.tick_at(
        now,
        Reading {
            usage,
            psi: None,
            psi_triggered: false,
            snapshot: snap,
            scope_pids: None,
            gpu,
        },
    )
}

fn actions(decisions: &[Decision]) -> Vec<&'static str> {
    decisions.iter().map(|d| d.action.as_str()).collect()
}

#[test]
fn dry_run_suspends_then_resumes_without_sending() {
    // 50 MiB below the suspend line (90 % of 100 MiB) last the 50 MiB/s tree 1 s.
    let mut engine = engine_with("resume_hold = \"1s\"\n");
    let (snap, me) = me_growing(&mut engine);
    let decisions = tick(&mut engine, usage(92), &snap, None);
    let suspend = decisions
        .iter()
        .find(|d| d.action == Act::Suspend)
        .expect("a suspend decision");
    assert!(
        suspend.reason.starts_with("dry run, nothing sent"),
        "{}",
        suspend.reason
    );
    assert_eq!(suspend.pids, vec![me]);
    assert_eq!(engine.state.suspended, 1);
    assert!(
        engine.effects.suspended.trees.is_empty(),
        "nothing really suspended"
    );
    let calm = tick(&mut engine, usage(40), &snap, None);
    assert!(
        calm.iter().all(|d| d.action != Act::Resume),
        "resume waits for resume_after"
    );
    let calm = tick(&mut engine, usage(40), &snap, None);
    assert!(calm.iter().any(|d| d.action == Act::Resume), "{calm:?}");
    assert_eq!(engine.state.suspended, 0);
}

#[test]
fn gpu_over_threshold_warns_with_holders() {
    let mut engine = engine();
    let snap = snapshot();
    let gpu = GpuSample {
        devices: vec![GpuDevice {
            index: 0,
            name: "Test GPU".to_owned(),
            used_bytes: 97 << 30,
            total_bytes: 100 << 30,
            utilization_percent: None,
        }],
        processes: vec![GpuProcess {
            pid: 4242,
            gpu_index: 0,
            used_bytes: 90 << 30,
        }],
    };
    let decisions = tick(&mut engine, usage(10), &snap, Some(&gpu));
    let warn = decisions
        .iter()
        .find(|d| d.action == Act::Warn)
        .expect("a warn decision");
    assert!(
        warn.reason.contains("GPU 0 memory 97.0 %"),
        "{}",
        warn.reason
    );
    assert!(
        warn.reason.contains("4242 (leaker) 90.0 GiB"),
        "{}",
        warn.reason
    );
    assert_eq!(engine.state.level, Level::Warn);
}

#[test]
fn sshd_stall_signal_follows_the_executable_not_the_name() {
    // A fake /proc where 4242 runs a (user-owned, as the test runs) file named sshd.
    let tmp = tempfile::tempdir().expect("tempdir");
    let sbin = tmp.path().join("usr/sbin");
    std::fs::create_dir_all(&sbin).expect("mkdir");
    std::fs::write(sbin.join("sshd"), "binary").expect("write");
    std::fs::write(sbin.join("python3"), "binary").expect("write");
    let proc_root = tmp.path().join("proc");
    std::fs::create_dir_all(proc_root.join("4242")).expect("mkdir");
    let stalls = |exe: &str| {
        let link = proc_root.join("4242/exe");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(sbin.join(exe), &link).expect("symlink");
        let mut engine = engine();
        engine.effects.pretend(&proc_root, std::process::id());
        let mut snap = snapshot();
        snap.procs[0].comm = "sshd".to_owned().into();
        snap.time_unix_ms = 1;
        tick(&mut engine, usage(10), &snap, None);
        snap.procs[0].reclaim_stall_ns += 5_000_000;
        snap.time_unix_ms = 2;
        tick(&mut engine, usage(10), &snap, None);
        engine.state.level
    };
    assert_eq!(
        stalls("sshd"),
        Level::Suspend,
        "sshd stalled in reclaim escalates"
    );
    assert_eq!(
        stalls("python3"),
        Level::Ok,
        "a process that only calls itself sshd does not"
    );
}

#[test]
fn a_held_tree_is_resumed_only_when_it_will_hold() {
    // Default resume_hold (30 s): 50 MiB of headroom last the 50 MiB/s tree 1 s: it waits,
    // said once, however long the calm.
    let mut engine = engine();
    let (snap, me) = me_growing(&mut engine);
    let held = tick(&mut engine, usage(92), &snap, None);
    assert!(actions(&held).contains(&"suspend"), "{held:?}");
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.extend(tick(&mut engine, usage(40), &snap, None));
    }
    assert_eq!(actions(&waits), vec!["level", "wait"], "{waits:?}");
    let wait = &waits[1];
    assert_eq!(wait.pids, vec![me]);
    assert!(
        wait.reason.contains("back at the suspend line in 1.0 s"),
        "{}",
        wait.reason
    );
    assert_eq!(engine.state.suspended, 1, "still held");
    // The scope's limit was raised to 2000 MiB: 1760 MiB below the suspend line last the tree
    // 35.2 s.
    let roomy = Usage {
        used_bytes: 40 << 20,
        limit_bytes: 2000 << 20,
    };
    let holds = tick(&mut engine, roomy, &snap, None);
    let resume = holds
        .iter()
        .find(|d| d.action == Act::Resume)
        .expect("resumed: it will hold");
    assert!(
        resume.reason.contains("lasts it 35.2 s"),
        "{}",
        resume.reason
    );
    assert_eq!(engine.state.suspended, 0);
}

#[test]
fn a_tree_cycled_max_cycles_times_stays_held() {
    let mut engine = engine_with("resume_hold = \"1s\"\nmax_cycles = 1\n");
    let (snap, me) = me_growing(&mut engine);
    let mut all = Vec::new();
    for _ in 0..2 {
        all.extend(tick(&mut engine, usage(92), &snap, None));
        for _ in 0..3 {
            all.extend(tick(&mut engine, usage(40), &snap, None));
        }
    }
    let acted: Vec<&str> = actions(&all)
        .into_iter()
        .filter(|a| !matches!(*a, "level" | "warn" | "reclaim"))
        .collect();
    assert_eq!(
        acted,
        vec!["suspend", "resume", "suspend", "keep"],
        "{all:?}"
    );
    let keep = all.iter().find(|d| d.action == Act::Keep).expect("keep");
    assert_eq!(keep.pids, vec![me]);
    assert!(keep.reason.contains("resumed 1 time(s)"), "{}", keep.reason);
    assert_eq!(engine.state.suspended, 1, "kept held");
}

#[test]
fn by_hand_status_keep_resume_and_unknown_ids() {
    use crate::guard::control::Request;
    let mut engine = engine_with("resume_hold = \"1s\"\n");
    let (snap, me) = me_growing(&mut engine);
    tick(&mut engine, usage(92), &snap, None);
    let mut by_hand = Vec::new();
    let status = engine.by_hand(Request::Status, "machine", &mut by_hand);
    let held = status.status.expect("a status").held;
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].id, held[0].pids.clone()), (me, vec![me]));
    assert_eq!(held[0].how, "dry run");
    assert!(by_hand.is_empty(), "status changes nothing");
    let unknown = engine.by_hand(Request::Resume { id: 1 }, "machine", &mut by_hand);
    assert!(!unknown.ok, "{unknown:?}");
    assert_eq!(
        unknown.message,
        format!("no held tree has the id 1 (held: {me})")
    );
    let keep = engine.by_hand(Request::Keep { id: me }, "machine", &mut by_hand);
    assert!(keep.ok, "{keep:?}");
    assert_eq!(actions(&by_hand), vec!["keep"]);
    // Calm, and it would hold: kept by hand, the guard does not resume it.
    let mut calm = Vec::new();
    for _ in 0..3 {
        calm.extend(tick(&mut engine, usage(40), &snap, None));
    }
    assert_eq!(actions(&calm), vec!["level", "keep"], "{calm:?}");
    assert!(
        calm[1].reason.contains("kept held by hand"),
        "{}",
        calm[1].reason
    );
    let resume = engine.by_hand(Request::Resume { id: me }, "machine", &mut by_hand);
    assert!(resume.ok, "{resume:?}");
    assert_eq!(actions(&by_hand), vec!["keep", "resume"]);
    assert!(
        by_hand[1]
            .reason
            .starts_with("dry run, nothing sent: by hand"),
        "{}",
        by_hand[1].reason
    );
    assert_eq!(engine.state.suspended, 0);
    let gone = engine.by_hand(Request::Kill { id: me }, "machine", &mut by_hand);
    assert_eq!(
        gone.message,
        format!("no held tree has the id {me} (held: none)")
    );
}

#[test]
fn every_decision_returned_is_counted_by_action_and_outcome() {
    use crate::guard::control::Request;
    let mut engine = engine_with("resume_hold = \"1s\"\n");
    let (snap, me) = me_growing(&mut engine);
    let mut all = tick(&mut engine, usage(92), &snap, None);
    let mut by_hand = Vec::new();
    engine.by_hand(Request::Keep { id: me }, "machine", &mut by_hand);
    all.extend(tick(&mut engine, usage(40), &snap, None));
    engine.by_hand(Request::Resume { id: me }, "machine", &mut by_hand);
    all.extend(by_hand);
    let mut expected = DecisionCounts::default();
    expected.count_all(&all);
    assert_eq!(engine.state().decisions, expected);
    let counts = &engine.state().decisions;
    assert_eq!(counts.get(Act::Suspend, Outcome::DryRun), 1, "{all:?}");
    assert_eq!(counts.get(Act::Keep, Outcome::DryRun), 1, "by hand");
    assert_eq!(counts.get(Act::Resume, Outcome::DryRun), 1, "by hand");
    assert_eq!(
        counts.get(Act::Suspend, Outcome::Done),
        0,
        "a dry run does nothing"
    );
}

#[test]
fn the_forecast_forgets_the_growth_of_the_tree_just_held() {
    // Under warn, the 50 MiB/s tree fills the scope: a forecast; then held at 92 %.
    let mut engine = engine_with("resume_hold = \"1h\"\n");
    let (snap, _) = me_growing(&mut engine);
    tick(&mut engine, usage(60), &snap, None);
    tick(&mut engine, usage(62), &snap, None);
    assert!(engine.state.exhaustion_s.is_some(), "growing: a forecast");
    let held = tick(&mut engine, usage(92), &snap, None);
    assert!(held.iter().any(|d| d.action == Act::Suspend), "{held:?}");
    // Rounds 10 ms apart: the held tree's last faults still show, then nothing grows.
    for used in [93, 93, 93] {
        tick(&mut engine, usage(used), &snap, None);
        assert_eq!(
            engine.state.exhaustion_s, None,
            "no forecast from the held tree"
        );
        assert_eq!(engine.state.growth_bytes_per_s, 0.0);
    }
}
