//! `memtrace status`: the memory status people print with psutil today — used/total/percent,
//! available, swap, PSI and the top processes by RSS. Reads /proc only: no root, no eBPF.
use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    model::{ProcSample, SystemSample},
    procscan::{self, ScannedProc},
    system,
    units::human_bytes,
};

/// How many processes the status lists.
const TOP_N: usize = 5;

/// Raw arguments of `memtrace status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Machine-wide memory.
    pub system: SystemSample,
    /// The largest processes by resident set.
    pub top: Vec<ProcSample>,
}

/// Runs `memtrace status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let report = collect(Path::new("/proc"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Gathers the report from `proc_root`.
pub fn collect(proc_root: &Path) -> anyhow::Result<StatusReport> {
    let system = system::sample(proc_root).context("reading memory state")?;
    let procs = procscan::scan_all(proc_root).context("scanning processes")?;
    let top = procscan::top_by_rss(procs, TOP_N)
        .iter()
        .map(sample_of)
        .collect();
    Ok(StatusReport { system, top })
}

/// A scanned process as a model sample (no rates: status takes one look).
pub fn sample_of(proc: &ScannedProc) -> ProcSample {
    ProcSample {
        pid: proc.stat.pid,
        ppid: proc.stat.ppid,
        comm: proc.stat.comm.clone(),
        cmdline: proc.cmdline.clone(),
        start_ticks: proc.stat.start_ticks,
        rss_bytes: proc.memory.rss(),
        anon_bytes: proc.memory.anon,
        file_bytes: proc.memory.file,
        shmem_bytes: proc.memory.shmem,
        swap_bytes: proc.memory.swap,
        peak_rss_bytes: proc.memory.hwm.max(proc.memory.rss()),
        faults: proc.stat.minflt + proc.stat.majflt,
        ..ProcSample::default()
    }
}

/// The text form.
pub fn render(report: &StatusReport) -> String {
    let s = &report.system;
    let mut out = String::new();
    out.push_str(&format!(
        "RAM:  {} used of {} ({:.1} %), {} available\n",
        human_bytes(s.mem_used_bytes),
        human_bytes(s.mem_total_bytes),
        s.mem_used_percent,
        human_bytes(s.mem_available_bytes),
    ));
    out.push_str(&swap_line(s));
    out.push_str(&psi_line(s));
    out.push_str(&format!("Top {} processes by RSS:\n", report.top.len()));
    out.push_str(&format!(
        "  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {}\n",
        "PID", "RSS", "ANON", "FILE", "SHMEM", "COMMAND"
    ));
    for p in &report.top {
        out.push_str(&format!(
            "  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {}\n",
            p.pid,
            human_bytes(p.rss_bytes),
            human_bytes(p.anon_bytes),
            human_bytes(p.file_bytes),
            human_bytes(p.shmem_bytes),
            if p.cmdline.is_empty() {
                &p.comm
            } else {
                &p.cmdline
            },
        ));
    }
    out
}

/// `Swap: …` line; says plainly when there is none.
pub fn swap_line(s: &SystemSample) -> String {
    if s.swap_total_bytes == 0 {
        "Swap: none configured (see `memtrace swap status`)\n".to_owned()
    } else {
        let used = s.swap_total_bytes.saturating_sub(s.swap_free_bytes);
        format!(
            "Swap: {} used of {} ({:.1} %)\n",
            human_bytes(used),
            human_bytes(s.swap_total_bytes),
            system::percent(used, s.swap_total_bytes)
        )
    }
}

/// `PSI: …` line; says plainly when the kernel has no PSI.
pub fn psi_line(s: &SystemSample) -> String {
    match (s.psi_some_avg10, s.psi_full_avg10) {
        (Some(some), Some(full)) => {
            format!("PSI:  memory some avg10 {some:.2} %, full avg10 {full:.2} %\n")
        }
        _ => "PSI:  not available on this kernel\n".to_owned(),
    }
}
