//! JSONL export: the header, then every sample (processes in the model's `ProcSample` shape) and
//! event in file order, one JSON object per line, each tagged with `"type"`.
use std::io::Write;

use serde::Serialize;

use super::proc_sample;
use crate::{
    collect::model::{GpuDevice, ProcSample, SystemSample, TracerHealth},
    record::trace::{Event, Header, TraceData},
};

/// One line of the export.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// The trace header.
    Header(Header),
    /// One sample.
    Sample {
        /// ms since the Unix epoch.
        time_unix_ms: u64,
        /// Machine-wide state.
        system: SystemSample,
        /// GPUs.
        #[serde(default)]
        gpus: Vec<GpuDevice>,
        /// Tracer health.
        health: TracerHealth,
        /// Traced processes.
        procs: Vec<ProcSample>,
    },
    /// One event.
    Event {
        /// ms since the Unix epoch.
        time_unix_ms: u64,
        /// What happened.
        event: Event,
    },
}

fn line(out: &mut dyn Write, value: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Writes the JSONL.
pub fn write(trace: &TraceData, out: &mut dyn Write) -> std::io::Result<()> {
    line(out, &Line::Header(trace.header.clone()))?;
    let mut events = trace.events.iter().peekable();
    let mut replay = trace.replay();
    let mut index = 0;
    while let Some((sample, procs)) = replay.step() {
        while let Some(e) = events.next_if(|e| e.after_samples <= index) {
            line(
                out,
                &Line::Event {
                    time_unix_ms: e.time_unix_ms,
                    event: e.event.clone(),
                },
            )?;
        }
        index += 1;
        let procs = procs
            .iter()
            .map(|(slot, v)| proc_sample(trace, *slot, v))
            .collect();
        line(
            out,
            &Line::Sample {
                time_unix_ms: sample.time_unix_ms,
                system: sample.system.clone(),
                gpus: sample.gpus.clone(),
                health: sample.health.clone(),
                procs,
            },
        )?;
    }
    for e in events {
        line(
            out,
            &Line::Event {
                time_unix_ms: e.time_unix_ms,
                event: e.event.clone(),
            },
        )?;
    }
    Ok(())
}
