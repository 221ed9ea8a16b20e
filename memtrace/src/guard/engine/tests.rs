//! The ladder in a dry run: suspend at pressure, resume after calm, GPU warn names holders;
//! the sshd stall signal follows sshd's executable, not a process's name.
use std::time::Duration;

use super::*;
use crate::{
    collect::{gpu::GpuProcess, model::GpuDevice},
    host::units::MIB,
};

fn engine() -> Engine {
    let text = "[thresholds]\nresume_after = \"1ms\"\n";
    let config = GuardConfig::from_layers(Some((text, "test"))).expect("config");
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

#[test]
fn dry_run_suspends_then_resumes_without_sending() {
    let mut engine = engine();
    // The victim must exist in /proc (identities are re-read before choosing): use this
    // test process, and let the engine believe the guard is someone else.
    engine.proc_root = std::path::PathBuf::from("/proc");
    engine.guard_pid = 1;
    let me = procfs::parse_pid_stat(&procfs::read(Path::new("/proc/self/stat")).expect("stat"))
        .expect("parse");
    let mut snap = snapshot();
    snap.procs[0].pid = me.pid;
    snap.procs[0].start_ticks = me.start_ticks;
    let decisions = engine.tick(usage(92), None, false, &snap, None, None);
    let suspend = decisions
        .iter()
        .find(|d| d.action == "suspend")
        .expect("a suspend decision");
    assert!(
        suspend.reason.starts_with("dry run, nothing sent"),
        "{}",
        suspend.reason
    );
    assert_eq!(suspend.pids, vec![me.pid]);
    assert_eq!(engine.state.suspended, 1);
    assert!(
        engine.suspended.trees.is_empty(),
        "nothing really suspended"
    );
    let calm = engine.tick(usage(40), None, false, &snap, None, None);
    assert!(
        calm.iter().all(|d| d.action != "resume"),
        "resume waits for resume_after"
    );
    std::thread::sleep(Duration::from_millis(5));
    let calm = engine.tick(usage(40), None, false, &snap, None, None);
    assert!(calm.iter().any(|d| d.action == "resume"), "{calm:?}");
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
    let decisions = engine.tick(usage(10), None, false, &snap, None, Some(&gpu));
    let warn = decisions
        .iter()
        .find(|d| d.action == "warn")
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
        engine.proc_root = proc_root.clone();
        let mut snap = snapshot();
        snap.procs[0].comm = "sshd".to_owned().into();
        snap.time_unix_ms = 1;
        engine.tick(usage(10), None, false, &snap, None, None);
        snap.procs[0].reclaim_stall_ns += 5_000_000;
        snap.time_unix_ms = 2;
        engine.tick(usage(10), None, false, &snap, None, None);
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
