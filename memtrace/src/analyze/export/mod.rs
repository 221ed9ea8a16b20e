//! `memtrace export FILE --format perfetto|csv|jsonl -o OUT`: a trace in formats other tools
//! read. Perfetto: Chrome JSON trace events that ui.perfetto.dev opens (a counter track per
//! process, a slice per stage × clip, instants for guard actions and OOM kills). CSV: one row per
//! process per sample. JSONL: one JSON object per line (header, samples, events, in file order).
//! The output file is written whole or not at all ([`crate::output::write_file`]).
pub mod csv;
pub mod jsonl;
pub mod perfetto;

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::{
    collect::model::ProcSample,
    record::trace::{self, Event, TraceData, codec::ProcValues},
};

/// Raw arguments of `memtrace export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The trace to export.
    pub file: PathBuf,
    /// Output format: perfetto, csv or jsonl.
    #[arg(long, short = 'f')]
    pub format: String,
    /// Where to write it.
    #[arg(long, short = 'o', value_name = "OUT")]
    pub out: PathBuf,
}

/// The formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Chrome JSON trace events for ui.perfetto.dev.
    Perfetto,
    /// Comma-separated values.
    Csv,
    /// JSON lines.
    Jsonl,
}

impl std::str::FromStr for Format {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "perfetto" => Ok(Self::Perfetto),
            "csv" => Ok(Self::Csv),
            "jsonl" => Ok(Self::Jsonl),
            other => {
                anyhow::bail!("unknown export format {other:?} (expected perfetto, csv or jsonl)")
            }
        }
    }
}

/// Writes `trace` as `format` to `out`.
pub fn write(trace: &TraceData, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::Perfetto => perfetto::write(trace, out),
        Format::Csv => csv::write(trace, out),
        Format::Jsonl => jsonl::write(trace, out),
    }
}

/// Runs `memtrace export`.
pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let format: Format = args.format.parse()?;
    let trace =
        trace::read_file(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    // Whole or not at all: a full disk leaves no partial export (and an old one as it was).
    crate::output::write_file(&args.out, |out| write(&trace, format, out))?;
    if let Some(damage) = &trace.damage {
        eprintln!(
            "memtrace: error: {}: {damage} (exported what precedes it)",
            args.file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The stage (and clip) open at each sample, by sample index.
pub fn stage_per_sample(trace: &TraceData) -> Vec<Option<(String, Option<String>)>> {
    let mut out = vec![None; trace.samples.len()];
    let mut current: Option<(String, Option<String>)> = None;
    let mut next = 0;
    for e in &trace.events {
        let upto = e.after_samples.min(out.len());
        while next < upto {
            out[next] = current.clone();
            next += 1;
        }
        match &e.event {
            Event::StageBegin { stage, clip, .. } => current = Some((stage.clone(), clip.clone())),
            Event::StageEnd { .. } | Event::RunEnd { .. } => current = None,
            _ => {}
        }
    }
    while next < out.len() {
        out[next] = current.clone();
        next += 1;
    }
    out
}

/// A trace process in the model's shape (rates are not stored, so they are zero).
pub fn proc_sample(trace: &TraceData, slot: u32, v: &ProcValues) -> ProcSample {
    let ident = trace.ident(slot);
    ProcSample {
        pid: ident.pid,
        ppid: ident.ppid,
        comm: ident.comm.into(),
        cmdline: ident.cmdline.into(),
        start_ticks: ident.start_ticks,
        rss_bytes: v.rss(),
        anon_bytes: v.anon,
        file_bytes: v.file,
        shmem_bytes: v.shmem,
        swap_bytes: v.swap,
        peak_rss_bytes: v.peak_rss,
        faults: v.faults,
        reclaim_count: v.reclaim_count,
        reclaim_stall_ns: v.reclaim_stall_ns,
        gpu_bytes: v.gpu,
        exited: v.exited,
        oom_killed: v.oom_killed,
        ..ProcSample::default()
    }
}
