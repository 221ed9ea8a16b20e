//! `memtrace status`: the memory status people print with psutil today — used/total/percent,
//! available, swap, PSI and the top processes by RSS. Reads /proc only: no root, no eBPF.
//! Where NVML works, each GPU's used/total shows next to host RAM and the processes holding GPU
//! memory are listed with it.
//!
//! Inside a container (memtrace runs in a cgroup whose limit is below the machine's RAM; see
//! [`crate::collect::scope`]) the first line is the container's limit and its usage — what the
//! kernel OOM-kills at — and the host's RAM from /proc/meminfo follows, labelled as the host's.
use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    collect::{
        gpu::{self, GpuSample},
        model::{GpuDevice, ProcSample, SystemSample},
        scope::{ScopeArgs, ScopeReport, Selected},
        system,
    },
    host::{
        procscan::{self, ScannedProc},
        units::human_bytes,
    },
};

/// How many processes the status lists.
const TOP_N: usize = 5;

/// Raw arguments of `memtrace status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Which memory counts: the machine, a cgroup, or (default) the container memtrace runs in.
    #[command(flatten)]
    pub scope: ScopeArgs,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Whose memory counts (the container's limit inside one), its limit and usage.
    pub scope: ScopeReport,
    /// Machine-wide memory (the host's, inside a container).
    pub system: SystemSample,
    /// The largest processes by resident set.
    pub top: Vec<ProcSample>,
    /// GPUs (an empty array without NVML: the keys are the same with or without a GPU).
    pub gpus: Vec<GpuDevice>,
    /// Every process holding GPU memory, largest GPU footprint first (empty without NVML).
    pub gpu_processes: Vec<ProcSample>,
}

/// Runs `memtrace status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let proc_root = Path::new("/proc");
    let selected = args.scope.select(proc_root)?;
    let mut source = gpu::open_default();
    let report = collect_with_gpu(proc_root, &selected, &source.sample())?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out!("{}", render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Gathers the report of `selected` from `proc_root`, without GPUs.
pub fn collect(proc_root: &Path, selected: &Selected) -> anyhow::Result<StatusReport> {
    collect_with_gpu(proc_root, selected, &GpuSample::default())
}

/// Gathers the report of `selected` from `proc_root`, joining `gpus` by pid.
pub fn collect_with_gpu(
    proc_root: &Path,
    selected: &Selected,
    gpus: &GpuSample,
) -> anyhow::Result<StatusReport> {
    let system = system::sample(proc_root).context("reading memory state")?;
    let usage = selected
        .scope
        .usage(proc_root)
        .with_context(|| format!("reading the usage of {}", selected.scope.describe()))?;
    let scope = selected.report(Some(&usage));
    let procs = procscan::scan_all(proc_root).context("scanning processes")?;
    let per_pid = gpu::bytes_per_pid(gpus);
    let with_gpu = |proc: &ScannedProc| ProcSample {
        gpu_bytes: per_pid.get(&proc.stat.pid).copied(),
        ..sample_of(proc)
    };
    let mut gpu_processes: Vec<ProcSample> = procs
        .iter()
        .filter(|proc| per_pid.contains_key(&proc.stat.pid))
        .map(with_gpu)
        .collect();
    gpu_processes.sort_by(|a, b| b.gpu_bytes.cmp(&a.gpu_bytes).then(a.pid.cmp(&b.pid)));
    let top = procscan::top_by_rss(procs, TOP_N)
        .iter()
        .map(with_gpu)
        .collect();
    Ok(StatusReport {
        scope,
        system,
        top,
        gpus: gpus.devices.clone(),
        gpu_processes,
    })
}

/// A scanned process as a model sample (no rates: status takes one look).
pub fn sample_of(proc: &ScannedProc) -> ProcSample {
    ProcSample {
        pid: proc.stat.pid,
        ppid: proc.stat.ppid,
        comm: proc.stat.comm.clone().into(),
        cmdline: proc.cmdline.clone().into(),
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
    if let Some(line) = limit_line(&report.scope) {
        out.push_str(&line);
        out.push_str(&format!(
            "Host: RAM {} used of {} ({:.1} %): /proc/meminfo shows the host, not this limit\n",
            human_bytes(s.mem_used_bytes),
            human_bytes(s.mem_total_bytes),
            s.mem_used_percent,
        ));
    } else {
        out.push_str(&format!(
            "RAM:  {} used of {} ({:.1} %), {} available\n",
            human_bytes(s.mem_used_bytes),
            human_bytes(s.mem_total_bytes),
            s.mem_used_percent,
            human_bytes(s.mem_available_bytes),
        ));
    }
    for device in &report.gpus {
        out.push_str(&gpu_line(device));
    }
    out.push_str(&swap_line(s));
    out.push_str(&psi_line(s));
    let gpu = !report.gpus.is_empty();
    out.push_str(&format!("Top {} processes by RSS:\n", report.top.len()));
    out.push_str(&process_header(gpu));
    for p in &report.top {
        out.push_str(&process_line(p, gpu));
    }
    if gpu {
        out.push_str(&format!(
            "Processes holding GPU memory: {}\n",
            report.gpu_processes.len()
        ));
        if !report.gpu_processes.is_empty() {
            out.push_str(&process_header(gpu));
        }
        for p in &report.gpu_processes {
            out.push_str(&process_line(p, gpu));
        }
    }
    out
}

/// `Limit: …` line of a cgroup scope (`None` for the machine): its usage against the container
/// (or `--cgroup`) limit, and which cgroup.
pub fn limit_line(scope: &ScopeReport) -> Option<String> {
    let path = scope.path.as_deref()?;
    let name = if scope.kind == "container" {
        "container limit"
    } else {
        "cgroup limit"
    };
    Some(format!(
        "Limit: {} used of {} {name} ({:.1} %), cgroup {path} ({})\n",
        human_bytes(scope.used_bytes.unwrap_or(0)),
        human_bytes(scope.limit_bytes.unwrap_or(0)),
        scope.used_percent.unwrap_or(0.0),
        scope.version.unwrap_or("?"),
    ))
}

fn process_header(gpu: bool) -> String {
    let gpu_column = if gpu {
        format!("  {:>10}", "GPU")
    } else {
        String::new()
    };
    format!(
        "  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}{gpu_column}  {}\n",
        "PID", "RSS", "ANON", "FILE", "SHMEM", "COMMAND"
    )
}

fn process_line(p: &ProcSample, gpu: bool) -> String {
    let gpu_column = if gpu {
        format!(
            "  {:>10}",
            p.gpu_bytes.map_or_else(|| "-".to_owned(), human_bytes)
        )
    } else {
        String::new()
    };
    format!(
        "  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}{gpu_column}  {}\n",
        p.pid,
        human_bytes(p.rss_bytes),
        human_bytes(p.anon_bytes),
        human_bytes(p.file_bytes),
        human_bytes(p.shmem_bytes),
        command_text(p, 80),
    )
}

/// The command line (or the comm when it has none), cut to `width` characters with `…`.
pub fn command_text(p: &crate::collect::model::ProcSample, width: usize) -> String {
    let text = if p.cmdline.is_empty() {
        &p.comm
    } else {
        &p.cmdline
    };
    if text.chars().count() <= width {
        return text.clone().to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `GPU0: …` line: one GPU's used/total memory (and utilisation when known), in the same form
/// as the RAM line.
pub fn gpu_line(d: &GpuDevice) -> String {
    let utilization = d
        .utilization_percent
        .map(|u| format!(", util {u} %"))
        .unwrap_or_default();
    format!(
        "GPU{}: {} used of {} ({:.1} %){utilization}  {}\n",
        d.index,
        human_bytes(d.used_bytes),
        human_bytes(d.total_bytes),
        system::percent(d.used_bytes, d.total_bytes),
        d.name
    )
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

#[cfg(test)]
mod tests {
    //! GPU lines next to host RAM, and the JSON keys that appear only with GPUs.
    use super::*;
    use crate::collect::{gpu::GpuProcess, scope::Scope};

    fn report(gpus: &GpuSample) -> StatusReport {
        let machine = Selected {
            scope: Scope::Machine,
            origin: crate::collect::scope::Origin::MachineFlag,
        };
        collect_with_gpu(Path::new("/proc"), &machine, gpus).expect("reading /proc")
    }

    #[test]
    fn without_gpus_nothing_gpu_shows() {
        let report = report(&GpuSample::default());
        let text = render(&report);
        assert!(!text.contains("GPU"), "{text}");
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["scope"]["kind"], "machine");
        assert_eq!(
            json["scope"]["limit_bytes"].as_u64(),
            Some(report.system.mem_total_bytes)
        );
        // The same keys as with a GPU: empty arrays and nulls, never missing.
        assert_eq!(json["gpus"], serde_json::json!([]));
        assert_eq!(json["gpu_processes"], serde_json::json!([]));
        assert!(json["top"][0]["gpu_bytes"].is_null());
        assert!(json["top"][0].get("gpu_bytes").is_some());
    }

    #[test]
    fn container_limit_comes_first_and_host_ram_is_labelled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cg = tmp.path();
        for (file, text) in [
            ("memory.current", "209715200\n"),
            ("memory.max", "671088640\n"),
            ("memory.stat", "anon 1\ninactive_file 0\n"),
        ] {
            std::fs::write(cg.join(file), text).expect("write");
        }
        let container = Selected {
            scope: Scope::cgroup(cg).expect("v2 cgroup"),
            origin: crate::collect::scope::Origin::Container,
        };
        let report =
            collect_with_gpu(Path::new("/proc"), &container, &GpuSample::default()).expect("ok");
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "Limit: 200.0 MiB used of 640.0 MiB container limit (31.2 %), cgroup {} (v2)",
                cg.display()
            )
        );
        assert!(
            lines[1].starts_with("Host: RAM ") && lines[1].ends_with("not this limit"),
            "{text}"
        );
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["scope"]["kind"], "container");
        assert_eq!(json["scope"]["limit_bytes"].as_u64(), Some(640 << 20));
        assert_eq!(json["scope"]["used_bytes"].as_u64(), Some(200 << 20));
        assert!(json["system"]["mem_total_bytes"].as_u64() > Some(0), "kept");
    }

    #[test]
    fn gpus_show_next_to_ram_with_their_processes() {
        let me = std::process::id();
        let sample = GpuSample {
            devices: vec![GpuDevice {
                index: 0,
                name: "Fake GPU".to_owned(),
                used_bytes: 1 << 30,
                total_bytes: 4 << 30,
                utilization_percent: None,
            }],
            processes: vec![
                GpuProcess {
                    pid: me,
                    gpu_index: 0,
                    used_bytes: 1 << 30,
                },
                // Not a process here (e.g. exited meanwhile): left out.
                GpuProcess {
                    pid: u32::MAX - 1,
                    gpu_index: 0,
                    used_bytes: 1 << 20,
                },
            ],
        };
        let report = report(&sample);
        assert_eq!(report.gpu_processes.len(), 1);
        assert_eq!(report.gpu_processes[0].pid, me);
        assert_eq!(report.gpu_processes[0].gpu_bytes, Some(1 << 30));
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RAM:"));
        assert_eq!(lines[1], "GPU0: 1.0 GiB used of 4.0 GiB (25.0 %)  Fake GPU");
        assert!(text.contains("Processes holding GPU memory: 1"), "{text}");
        assert!(text.contains("     1.0 GiB  "), "{text}");
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["gpus"][0]["total_bytes"].as_u64(), Some(4 << 30));
        assert_eq!(
            json["gpu_processes"][0]["gpu_bytes"].as_u64(),
            Some(1 << 30)
        );
    }
}
