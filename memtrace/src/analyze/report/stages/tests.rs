//! Stage runs and their sub-stages on traces built in memory: a 20 000-clip trace (the report
//! must stay linear in clips, runs and processes), sub-stages with pid reuse, and byte sums and
//! differences that saturate instead of wrapping.
use std::time::Instant;

use super::*;
use crate::{
    analyze::report::{analyze, judge::LeakVerdict, text},
    record::trace::{
        Header,
        codec::{ProcIdent, Sample},
        reader::TimedEvent,
    },
};

const START: u64 = 1_700_000_000_000;
const MIB: u64 = 1 << 20;

/// A trace written by hand: events land after the samples pushed so far.
struct Builder(TraceData);

impl Builder {
    fn new() -> Self {
        Self(TraceData {
            header: Header {
                start_unix_ms: START,
                ..Header::default()
            },
            ..TraceData::default()
        })
    }

    fn name(&mut self, pid: u32, comm: &str) -> u32 {
        self.0.idents.push(ProcIdent {
            pid,
            comm: comm.into(),
            ..ProcIdent::default()
        });
        u32::try_from(self.0.idents.len() - 1).expect("slot")
    }

    fn event(&mut self, event: Event) {
        let time_unix_ms = START + 100 * self.0.samples.len() as u64;
        self.0.events.push(TimedEvent {
            time_unix_ms,
            after_samples: self.0.samples.len(),
            event,
        });
    }

    fn begin(&mut self, stage: &str, clip: usize) {
        self.event(Event::StageBegin {
            stage: stage.into(),
            clip: Some(clip.to_string()),
            source: "cli".into(),
            timing: crate::record::trace::MarkTiming::Acknowledged,
        });
    }

    fn exec(&mut self, pid: u32, comm: &str) {
        self.event(Event::Exec {
            pid,
            ppid: 1,
            comm: comm.into(),
        });
    }

    /// A sample in which `changed` (slot, anon bytes, exited) were written.
    fn sample(&mut self, changed: &[(u32, u64, bool)]) {
        let time_unix_ms = START + 100 * (self.0.samples.len() as u64 + 1);
        self.0.samples.push(Sample {
            time_unix_ms,
            changed: changed
                .iter()
                .map(|&(slot, anon, exited)| {
                    (
                        slot,
                        ProcValues {
                            anon,
                            peak_rss: anon,
                            exited,
                            ..ProcValues::default()
                        },
                    )
                })
                .collect(),
            ..Sample::default()
        });
    }
}

/// 20 000 clips × 3 stages, a worker process per clip: the verdicts and sub-stages are right,
/// and the report takes well under a second in a release build (it used to take tens of
/// seconds: every run scanned every event and every process). The time is printed, not
/// asserted.
#[test]
fn twenty_thousand_clips_are_reported_in_linear_time() {
    const CLIPS: usize = 20_000;
    let mut b = Builder::new();
    let root = b.name(100, "pipeline");
    b.exec(100, "pipeline");
    let mut kept = 64 * MIB;
    b.sample(&[(root, kept, false)]);
    for clip in 0..CLIPS {
        b.begin("decode", clip);
        b.sample(&[(root, kept + 8 * MIB, false)]);
        b.sample(&[(root, kept, false)]);
        b.begin("matte", clip);
        let pid = 1000 + u32::try_from(clip).expect("pid");
        let worker = b.name(pid, "worker");
        b.exec(pid, "worker");
        b.sample(&[(worker, 30 * MIB, false)]);
        b.sample(&[(worker, 30 * MIB, true)]);
        b.begin("composite", clip);
        kept += 2 * MIB;
        b.sample(&[(root, kept, false)]);
    }
    b.event(Event::RunEnd {
        exit_code: Some(0),
        signal: None,
    });
    let began = Instant::now();
    let report = analyze(&b.0);
    let analyzed = began.elapsed();
    let rendered = text::render(&report, "clips");
    eprintln!(
        "report of {CLIPS} clips ({} runs, {} samples, {} events): analysis {analyzed:?}, \
         with the text {:?}",
        report.stages.len(),
        b.0.samples.len(),
        b.0.events.len(),
        began.elapsed()
    );
    assert_eq!(report.stages.len(), 3 * CLIPS);
    let verdict = |stage: &str| {
        report
            .verdicts
            .iter()
            .find(|v| v.stage == stage)
            .expect("a verdict per stage")
    };
    assert_eq!(verdict("decode").clips, CLIPS);
    assert_eq!(verdict("decode").verdict, LeakVerdict::NoLeak);
    assert_eq!(verdict("composite").verdict, LeakVerdict::LikelyLeak);
    let kept = verdict("composite").host.expect("judged").per_clip;
    assert!((kept - (2 * MIB) as f64).abs() < 1.0, "{kept}");
    let tree = report.tree.as_ref().expect("tree");
    assert_eq!(tree.kept_by, ["composite"], "{}", tree.text);
    for run in &report.stages {
        let want = if run.stage == "matte" {
            vec![("worker".to_owned(), 30 * MIB)]
        } else {
            Vec::new()
        };
        assert_eq!(run.children, want, "{} clip {:?}", run.stage, run.clip);
    }
    assert!(rendered.contains("worker (peak 30.0 MiB)"));
}

/// A sub-stage is a process started while the run was open, with its peak during the run; an
/// older process that had the same pid (and exited) does not count.
#[test]
fn sub_stages_are_the_processes_started_during_the_run() {
    let mut b = Builder::new();
    let root = b.name(100, "pipeline");
    b.exec(100, "pipeline");
    let old = b.name(7, "old");
    b.sample(&[(root, MIB, false), (old, 900 * MIB, false)]);
    b.sample(&[(old, 900 * MIB, true)]);
    b.begin("a", 1);
    b.sample(&[(root, 2 * MIB, false)]);
    b.begin("b", 1);
    let new = b.name(7, "tool");
    b.exec(7, "tool");
    b.sample(&[(new, 5 * MIB, false)]);
    b.sample(&[(new, 40 * MIB, false)]);
    b.sample(&[(new, 10 * MIB, false)]);
    b.begin("c", 1);
    b.sample(&[(new, 20 * MIB, true)]);
    let report = analyze(&b.0);
    let children: Vec<(&str, Vec<(String, u64)>)> = report
        .stages
        .iter()
        .map(|r| (r.stage.as_str(), r.children.clone()))
        .collect();
    assert_eq!(
        children,
        vec![
            ("a", vec![]),
            ("b", vec![("tool".to_owned(), 40 * MIB)]),
            ("c", vec![]),
        ]
    );
}

/// Sums and differences of bytes saturate: two processes of 2^63 bytes used to overflow the
/// tree's total (a panic in debug builds, "Peak host memory … 0 B" in release builds), and a
/// stage that went from 0 to 2^64 − 1 bytes "retained" −1 byte.
#[test]
fn byte_sums_and_differences_saturate_never_wrap() {
    let mut b = Builder::new();
    let (p, q) = (b.name(1, "p"), b.name(2, "q"));
    b.begin("grow", 1);
    b.sample(&[(p, 0, false), (q, 0, false)]);
    b.sample(&[(p, 1 << 63, false), (q, 1 << 63, false)]);
    let (points, _) = series(&b.0);
    assert_eq!(points[1].footprint, u64::MAX, "saturated, not 0");
    let report = analyze(&b.0);
    assert_eq!(report.peak_footprint, u64::MAX);
    assert_eq!(report.stages[0].host_retained, i64::MAX, "not −1");
    assert!(!text::render(&report, "huge").contains(": 0 B"));
    assert_eq!(change(0, u64::MAX), i64::MAX);
    assert_eq!(change(u64::MAX, 0), i64::MIN);
    assert_eq!(change(5, 3), -2);
}
