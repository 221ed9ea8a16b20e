//! The plain table of `memtrace top`, for pipes, `--once`, `--json` and `--plain`: the system
//! lines on top, then one row per process sorted by growth; `--json` prints each snapshot as one
//! JSON array line instead. Where NVML works, one line per GPU under the RAM line and a `GPU MiB`
//! column (`gpu_bytes` in the JSON); without GPUs neither appears. Without eBPF the source line
//! says the values come from /proc.
use anyhow::Context as _;

use super::TopConfig;
use crate::{
    cmd::status::{gpu_line, psi_line, swap_line},
    collect::{
        model::{ProcSample, Snapshot},
        sampler::Sampler,
        source::SourceKind,
    },
    host::units::{human_bytes, mib, signed_mib},
};

/// Prints snapshots until `--once` is done, Ctrl-C or SIGTERM.
pub async fn live(sampler: &mut Sampler, config: &TopConfig) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    // The first snapshot only sets the base of the rates.
    sampler.sample()?;
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
        let snapshot = sampler.sample()?;
        if config.json {
            crate::outln!("{}", serde_json::to_string(&snapshot.procs)?)?;
        } else {
            if !config.once {
                // Clear the screen and home the cursor.
                crate::out!("\x1b[H\x1b[2J")?;
            }
            crate::out!("{}", render(&snapshot, config.rows, sampler.kind()))?;
        }
        if config.once {
            return Ok(());
        }
    }
}

/// The text table; `source` names where the per-process values came from.
pub fn render(snapshot: &Snapshot, rows: usize, source: SourceKind) -> String {
    let s = &snapshot.system;
    let h = &snapshot.health;
    let mut out = format!(
        "RAM:  {} used of {} ({:.1} %), {} available\n",
        human_bytes(s.mem_used_bytes),
        human_bytes(s.mem_total_bytes),
        s.mem_used_percent,
        human_bytes(s.mem_available_bytes)
    );
    for device in &snapshot.gpus {
        out.push_str(&gpu_line(device));
    }
    out.push_str(&swap_line(s));
    out.push_str(&psi_line(s));
    let live = snapshot.procs.iter().filter(|p| !p.exited).count();
    out.push_str(&match source {
        SourceKind::Ebpf => format!(
            "Tracer: {live} processes, kswapd wakeups {}, lost events: map full {}, ring buffer {}\n",
            h.kswapd_wakeups, h.map_full, h.ringbuf_drops
        ),
        SourceKind::Proc => format!(
            "Source: /proc (no eBPF), {live} processes; not seen: processes born and gone \
             between samples, reclaim stalls (STALL stays 0)\n"
        ),
    });
    for kill in &snapshot.oom_kills {
        out.push_str(&format!(
            "OOM KILL: pid {} ({}) with {} resident\n",
            kill.pid,
            kill.comm,
            human_bytes(kill.rss_bytes)
        ));
    }
    let gpu = !snapshot.gpus.is_empty();
    out.push_str(&format!(
        "{:>7} {:<16} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9}{}\n",
        "PID",
        "COMMAND",
        "RSS MiB",
        "ANON",
        "FILE",
        "SHMEM",
        "SWAP",
        "GROW MiB/s",
        "FAULTS/s",
        "STALL ms",
        "PEAK MiB",
        if gpu { "   GPU MiB" } else { "" }
    ));
    for p in snapshot.procs.iter().take(rows) {
        out.push_str(&row(p, gpu));
    }
    out
}

fn row(p: &ProcSample, gpu: bool) -> String {
    let mut comm: String = p.comm.chars().take(15).collect();
    if p.exited {
        comm = format!("{}✝", comm.chars().take(14).collect::<String>());
    }
    let gpu_column = if gpu {
        format!(" {:>9}", p.gpu_bytes.map_or_else(|| "-".to_owned(), mib))
    } else {
        String::new()
    };
    format!(
        "{:>7} {:<16} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>9.0} {:>9.1} {:>9}{gpu_column}\n",
        p.pid,
        comm,
        mib(p.rss_bytes),
        mib(p.anon_bytes),
        mib(p.file_bytes),
        mib(p.shmem_bytes),
        mib(p.swap_bytes),
        signed_mib(p.growth_bytes_per_s),
        p.faults_per_s,
        p.reclaim_stall_ns as f64 / 1e6,
        mib(p.peak_rss_bytes)
    )
}

#[cfg(test)]
mod tests {
    //! The table's shape.
    use super::*;
    use crate::host::units::MIB;

    #[test]
    fn renders_rows_and_exits() {
        let snapshot = Snapshot {
            procs: vec![
                ProcSample {
                    pid: 42,
                    comm: "a) R (b".to_owned().into(),
                    rss_bytes: 256 << 20,
                    growth_bytes_per_s: MIB as f64,
                    ..ProcSample::default()
                },
                ProcSample {
                    pid: 43,
                    comm: "short".to_owned().into(),
                    exited: true,
                    ..ProcSample::default()
                },
            ],
            ..Snapshot::default()
        };
        let text = render(&snapshot, 10, SourceKind::Ebpf);
        assert!(text.contains("     42 a) R (b"));
        assert!(text.contains("256.0"));
        assert!(text.contains("+1.0"));
        assert!(text.contains("short✝"));
        assert!(text.contains("Tracer: 1 processes"));
        assert!(!text.contains("GPU"), "no GPU column without GPUs");
    }

    #[test]
    fn without_ebpf_the_source_line_says_so() {
        let snapshot = Snapshot {
            procs: vec![ProcSample {
                pid: 42,
                comm: "python3".to_owned().into(),
                ..ProcSample::default()
            }],
            ..Snapshot::default()
        };
        let text = render(&snapshot, 10, SourceKind::Proc);
        assert!(
            text.contains("Source: /proc (no eBPF), 1 processes; not seen:"),
            "{text}"
        );
        assert!(!text.contains("Tracer:"), "{text}");
    }

    #[test]
    fn gpu_lines_and_column_only_with_gpus() {
        let mut snapshot = Snapshot {
            procs: vec![
                ProcSample {
                    pid: 42,
                    comm: "trainer".to_owned().into(),
                    ..ProcSample::default()
                },
                ProcSample {
                    pid: 43,
                    comm: "shell".to_owned().into(),
                    ..ProcSample::default()
                },
            ],
            ..Snapshot::default()
        };
        let sample = crate::collect::gpu::GpuSample {
            devices: vec![crate::collect::model::GpuDevice {
                index: 0,
                name: "Fake H100".to_owned(),
                used_bytes: 3 << 30,
                total_bytes: 80 << 30,
                utilization_percent: Some(7),
            }],
            processes: vec![crate::collect::gpu::GpuProcess {
                pid: 42,
                gpu_index: 0,
                used_bytes: 2 << 30,
            }],
        };
        crate::collect::gpu::join(&mut snapshot, &sample);
        let text = render(&snapshot, 10, SourceKind::Ebpf);
        assert!(
            text.contains("GPU0: 3.0 GiB used of 80.0 GiB (3.8 %), util 7 %  Fake H100\n"),
            "{text}"
        );
        assert!(text.contains("PEAK MiB   GPU MiB\n"), "{text}");
        let trainer = text.lines().find(|l| l.contains("trainer")).unwrap_or("");
        assert!(trainer.ends_with("    2048.0"), "{trainer:?}");
        let shell = text.lines().find(|l| l.contains("shell")).unwrap_or("");
        assert!(shell.ends_with("         -"), "{shell:?}");
    }
}
