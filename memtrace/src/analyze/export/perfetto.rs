//! Perfetto export as Chrome JSON trace events (ui.perfetto.dev and chrome://tracing open it):
//! per process a counter track `memory MiB` (anon, file, shmem, swap; `gpu MiB` where known),
//! written only when it changes; a `pipeline` process (pid 0) with the tree's total, a `stages`
//! thread of slices per stage × clip, and a `events` thread of instants for guard actions, OOM
//! kills, and process exec/exit.
use std::{collections::HashMap, io::Write};

use serde_json::{Value, json};

use crate::{
    analyze::report::stages,
    host::units,
    record::trace::{Event, TraceData, codec::ProcValues, decision},
};

/// The synthetic process holding the tree's totals, stages and events.
pub const PIPELINE_PID: u32 = 0;
const STAGES_TID: u32 = 1;
const EVENTS_TID: u32 = 2;

fn mib(bytes: u64) -> f64 {
    (units::to_mib(bytes) * 100.0).round() / 100.0
}

struct Out<'a> {
    out: &'a mut dyn Write,
    first: bool,
}

impl Out<'_> {
    fn push(&mut self, value: &Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut *self.out, value)?;
        Ok(())
    }
}

/// Writes the trace events.
pub fn write(trace: &TraceData, out: &mut dyn Write) -> std::io::Result<()> {
    let start = trace.header.start_unix_ms;
    // Trace times end at the year 9999 (the reader refuses later ones): µs never saturate.
    let us = |ms: u64| ms.saturating_sub(start).saturating_mul(1000);
    out.write_all(b"{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n")?;
    let mut w = Out { out, first: true };
    w.push(&json!({"ph":"M","name":"process_name","pid":PIPELINE_PID,"args":{"name":"pipeline (traced tree)"}}))?;
    w.push(&json!({"ph":"M","name":"thread_name","pid":PIPELINE_PID,"tid":STAGES_TID,"args":{"name":"stages"}}))?;
    w.push(&json!({"ph":"M","name":"thread_name","pid":PIPELINE_PID,"tid":EVENTS_TID,"args":{"name":"events"}}))?;
    let mut named = std::collections::HashSet::new();
    let mut last: HashMap<u32, ProcValues> = HashMap::new();
    let (points, _) = stages::series(trace);
    for (sample, point) in trace.samples.iter().zip(&points) {
        let ts = us(sample.time_unix_ms);
        let mut total = json!({"host": mib(point.host), "rss": mib(point.rss)});
        if let Some(gpu) = point.gpu {
            total["gpu"] = json!(mib(gpu));
        }
        w.push(
            &json!({"ph":"C","name":"tree memory MiB","pid":PIPELINE_PID,"ts":ts,"args":total}),
        )?;
        // Only what changed: a carried-forward process keeps its last counter value.
        for (slot, v) in &sample.changed {
            let ident = trace.ident(*slot);
            if named.insert(ident.pid) {
                w.push(&json!({"ph":"M","name":"process_name","pid":ident.pid,
                    "args":{"name":format!("{} ({})", ident.comm, ident.pid)}}))?;
            }
            if last.get(slot) == Some(v) {
                continue;
            }
            let values = if v.exited { ProcValues::default() } else { *v };
            w.push(&json!({"ph":"C","name":"memory MiB","pid":ident.pid,"ts":ts,"args":{
                "anon":mib(values.anon),"file":mib(values.file),"shmem":mib(values.shmem),"swap":mib(values.swap)}}))?;
            if v.gpu.is_some() || last.get(slot).is_some_and(|o| o.gpu.is_some()) {
                w.push(&json!({"ph":"C","name":"gpu MiB","pid":ident.pid,"ts":ts,
                    "args":{"gpu":mib(values.gpu.unwrap_or(0))}}))?;
            }
            last.insert(*slot, *v);
        }
    }
    for run in stages::stage_runs(trace, &points) {
        let name = match &run.clip {
            Some(clip) => format!("{} clip {clip}", run.stage),
            None => run.stage.clone(),
        };
        w.push(&json!({"ph":"X","cat":"stage","name":name,"pid":PIPELINE_PID,"tid":STAGES_TID,
            "ts":(run.begin_s * 1e6).round() as u64,"dur":((run.end_s - run.begin_s) * 1e6).round().max(1.0) as u64,
            "args":{"stage":run.stage,"clip":run.clip,"start_mib":mib(run.host_start),"end_mib":mib(run.host_end),
                "peak_mib":mib(run.host_peak),"retained_mib":units::to_mib_f64(run.host_retained as f64)}}))?;
    }
    for e in &trace.events {
        let ts = us(e.time_unix_ms);
        let (name, cat) = match &e.event {
            Event::GuardDecision {
                action,
                level,
                outcome,
                ..
            } => (
                format!("guard: {}", decision::label(*action, level, *outcome)),
                "guard",
            ),
            Event::OomKill { pid, comm, .. } => (format!("OOM kill: {comm} ({pid})"), "oom"),
            Event::Exec { pid, comm, .. } => (format!("exec {comm} ({pid})"), "process"),
            Event::Exit { pid, comm, .. } => (format!("exit {comm} ({pid})"), "process"),
            Event::RunEnd { .. } => ("run end".to_owned(), "process"),
            Event::StageBegin { .. } | Event::StageEnd { .. } | Event::TreeMemory { .. } => {
                continue;
            }
        };
        w.push(&json!({"ph":"i","s":"g","cat":cat,"name":name,"pid":PIPELINE_PID,"tid":EVENTS_TID,"ts":ts,
            "args":serde_json::to_value(&e.event).unwrap_or(Value::Null)}))?;
    }
    w.out.write_all(b"\n]}\n")
}

#[cfg(test)]
mod tests {
    //! Times far past the trace start: µs saturate instead of overflowing; guard decisions are
    //! named with their outcome, and an older trace's without one as before.
    use super::*;
    use crate::record::trace::{codec::Sample, reader::TimedEvent};

    /// A sample and an event at 2^64 − 1 ms (the reader refuses them; a hand-made TraceData
    /// does not): the µs timestamps used to overflow (a panic in debug builds, a wrapped time
    /// in release builds).
    #[test]
    fn times_past_the_range_saturate() {
        let trace = TraceData {
            samples: vec![Sample {
                time_unix_ms: u64::MAX,
                ..Sample::default()
            }],
            events: vec![TimedEvent {
                time_unix_ms: u64::MAX,
                after_samples: 1,
                event: Event::RunEnd {
                    exit_code: Some(0),
                    signal: None,
                },
            }],
            ..TraceData::default()
        };
        let mut out = Vec::new();
        write(&trace, &mut out).expect("written");
        let json: Value = serde_json::from_slice(&out).expect("valid JSON");
        let events = json["traceEvents"].as_array().expect("events");
        assert!(events.iter().any(|e| e["ts"] == json!(u64::MAX)));
    }

    #[test]
    fn guard_instants_name_the_action_level_and_outcome() {
        use crate::record::trace::{Act, Outcome};
        let decision = |outcome| TimedEvent {
            time_unix_ms: 1_000,
            after_samples: 0,
            event: Event::GuardDecision {
                level: "suspend".into(),
                action: Act::Suspend,
                reason: "used 95 %".into(),
                pids: vec![7],
                outcome,
            },
        };
        let trace = TraceData {
            events: vec![decision(Some(Outcome::Failed)), decision(None)],
            ..TraceData::default()
        };
        let mut out = Vec::new();
        write(&trace, &mut out).expect("written");
        let json: Value = serde_json::from_slice(&out).expect("valid JSON");
        let guard: Vec<&Value> = json["traceEvents"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["cat"] == "guard")
            .collect();
        assert_eq!(guard.len(), 2);
        assert_eq!(guard[0]["name"], "guard: suspend (suspend, failed)");
        assert_eq!(guard[0]["args"]["outcome"], "failed");
        assert_eq!(guard[0]["args"]["action"], "suspend");
        assert_eq!(guard[1]["name"], "guard: suspend (suspend)");
    }
}
