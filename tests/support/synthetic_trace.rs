//! A synthetic trace written through the real writer: `procs` processes sampled at 1 Hz, a few
//! of them changing every second and the rest every 30 s, stage marks every 10 s. Shared by the
//! trace tests and `cargo xtask bench trace` (the one-hour size and speed).
use std::{
    path::Path,
    time::{Duration, Instant},
};

use memtrace::{
    collect::model::{ProcSample, Snapshot, SystemSample},
    record::trace::{Event, Header, TraceWriter},
};

/// Process `pid` at second `t` with `anon` anonymous bytes.
pub fn proc(pid: u32, anon: u64, t: u64) -> ProcSample {
    ProcSample {
        pid,
        ppid: if pid == 100 { 1 } else { 100 },
        comm: format!("worker-{pid}").into(),
        cmdline: format!("worker --id {pid}, \"quoted\"").into(),
        start_ticks: u64::from(pid),
        anon_bytes: anon,
        file_bytes: 8 << 20,
        shmem_bytes: 4096,
        swap_bytes: 0,
        rss_bytes: anon + (8 << 20) + 4096,
        peak_rss_bytes: anon + (8 << 20) + 4096,
        faults: t * 7 + u64::from(pid),
        reclaim_count: t / 100,
        reclaim_stall_ns: (t / 100) * 1_000_000,
        ..ProcSample::default()
    }
}

/// Writes a synthetic trace of `seconds` samples of `procs` processes; `busy` of them change
/// every second, the others every 30 s (staggered). Stage marks every 10 s.
pub fn synthetic(path: &Path, seconds: u64, procs: u32, busy: u32) -> Duration {
    let start = 1_700_000_000_000;
    let header = Header {
        start_unix_ms: start,
        interval_ms: 1000,
        scope: "synthetic".into(),
        ..Header::default()
    };
    let mut writer = TraceWriter::create(path, &header).expect("create");
    let mut cpu = Duration::ZERO;
    for t in 0..seconds {
        let list = (0..procs)
            .map(|i| {
                let pid = 100 + i;
                let steps = if i < busy { t } else { (t + u64::from(i)) / 30 };
                let wobble = (steps * 2_654_435_761 + u64::from(i)) % 97;
                proc(
                    pid,
                    (64 << 20) + steps * 4096 * 3 + wobble * 4096,
                    if i < busy { t } else { steps * 30 },
                )
            })
            .collect();
        let snapshot = Snapshot {
            time_unix_ms: start + t * 1000,
            system: SystemSample {
                mem_total_bytes: 24 << 30,
                mem_available_bytes: (12 << 30) - (t << 12),
                ..SystemSample::default()
            },
            procs: list,
            ..Snapshot::default()
        };
        let began = Instant::now();
        writer.sample(&snapshot).expect("sample");
        if t % 10 == 0 {
            let stage = ["decode", "matte", "composite"][(t / 10 % 3) as usize];
            let clip = Some((t / 30).to_string());
            writer
                .event(
                    start + t * 1000,
                    &Event::StageBegin {
                        stage: stage.into(),
                        clip,
                        source: "cli".into(),
                        timing: memtrace::record::trace::MarkTiming::Acknowledged,
                    },
                )
                .expect("event");
        }
        cpu += began.elapsed();
    }
    writer.finish(&serde_json::json!({})).expect("finish");
    cpu
}
