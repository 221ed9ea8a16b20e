//! CSV export: one row per process per sample, with the stage and clip open at that sample.
use std::io::Write;

use super::{proc_sample, stage_per_sample};
use crate::record::trace::TraceData;

/// The header row.
pub const COLUMNS: &str = "time_unix_ms,pid,ppid,comm,rss_bytes,anon_bytes,file_bytes,shmem_bytes,\
swap_bytes,peak_rss_bytes,gpu_bytes,faults,reclaim_count,reclaim_stall_ns,exited,oom_killed,stage,clip";

/// Quotes a field when it needs it (RFC 4180).
pub fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Writes the CSV.
pub fn write(trace: &TraceData, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{COLUMNS}")?;
    let stages = stage_per_sample(trace);
    let mut replay = trace.replay();
    let mut stages = stages.iter();
    while let (Some((sample, procs)), Some(stage)) = (replay.step(), stages.next()) {
        let (stage, clip) = match stage {
            Some((s, c)) => (field(s), field(c.as_deref().unwrap_or(""))),
            None => (String::new(), String::new()),
        };
        for (slot, values) in procs {
            let p = proc_sample(trace, *slot, values);
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{stage},{clip}",
                sample.time_unix_ms,
                p.pid,
                p.ppid,
                field(&p.comm),
                p.rss_bytes,
                p.anon_bytes,
                p.file_bytes,
                p.shmem_bytes,
                p.swap_bytes,
                p.peak_rss_bytes,
                p.gpu_bytes.map(|g| g.to_string()).unwrap_or_default(),
                p.faults,
                p.reclaim_count,
                p.reclaim_stall_ns,
                u8::from(p.exited),
                u8::from(p.oom_killed),
            )?;
        }
    }
    Ok(())
}
