//! `memtrace top`: a live per-process table sorted by memory growth, with the system line on
//! top; `--json` prints each snapshot as one JSON array line, `--once` stops after one interval.
//! Where NVML works, each interval also samples the GPUs: one line per GPU under the RAM line and
//! a `GPU MiB` column (`gpu_bytes` in the JSON); without GPUs neither appears. Without eBPF it
//! reads every process from /proc (see [`Source::start`]) and says so on the table's source line.
use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{
    cmd::status::{gpu_line, psi_line, swap_line},
    collect::{
        gpu::{self, GpuSource},
        model::{ProcSample, Snapshot},
        proc_source::{Members, OomSource},
        sampler::Sampler,
        source::{REQUIRE_EBPF_HELP, REQUIRE_EBPF_LONG_HELP, Source, SourceKind},
        tracer::TracerOptions,
    },
    host::units::{human_bytes, mib, parse_duration, signed_mib},
};

/// Raw arguments of `memtrace top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Sampling interval: seconds (`2`, `0.5`) or with a unit (`500ms`, `2s`).
    #[arg(long, short = 'i', default_value = "1")]
    pub interval: String,
    /// Window growth rates are computed over (default: one interval).
    #[arg(long)]
    pub window: Option<String>,
    /// Print one snapshot after one interval and exit.
    #[arg(long)]
    pub once: bool,
    /// Print snapshots as JSON arrays of processes, one line each.
    #[arg(long)]
    pub json: bool,
    /// Rows in the table (the JSON output always has every process).
    #[arg(long, short = 'n', default_value_t = 25)]
    pub rows: usize,
    /// Also count faults with a per-fault eBPF hook (by default they come from the kernel's
    /// own per-task counters at no per-fault cost).
    #[arg(long)]
    pub fault_hook: bool,
    #[arg(long, help = REQUIRE_EBPF_HELP, long_help = REQUIRE_EBPF_LONG_HELP)]
    pub require_ebpf: bool,
}

/// Validated `top` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TopConfig {
    /// Time between snapshots.
    pub interval: Duration,
    /// Span rates are computed over.
    pub window: Duration,
    /// Stop after the first snapshot.
    pub once: bool,
    /// JSON instead of the table.
    pub json: bool,
    /// Table rows.
    pub rows: usize,
    /// What the tracer attaches.
    pub tracer: TracerOptions,
    /// Refuse to run without eBPF.
    pub require_ebpf: bool,
}

impl TryFrom<TopArgs> for TopConfig {
    type Error = anyhow::Error;

    fn try_from(args: TopArgs) -> anyhow::Result<Self> {
        let interval = parse_duration(&args.interval).context("--interval")?;
        let window = match &args.window {
            Some(text) => parse_duration(text).context("--window")?,
            None => interval,
        };
        if interval < Duration::from_millis(50) {
            anyhow::bail!("--interval {} is too short (minimum 50ms)", args.interval);
        }
        Ok(Self {
            interval,
            window,
            once: args.once,
            json: args.json,
            rows: args.rows,
            tracer: TracerOptions {
                fault_hook: args.fault_hook,
            },
            require_ebpf: args.require_ebpf,
        })
    }
}

/// Runs `memtrace top`.
pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let config = TopConfig::try_from(args)?;
    let proc_root = Path::new("/proc");
    let source = Source::start(
        config.tracer,
        config.require_ebpf,
        proc_root,
        Members::All,
        OomSource::Machine,
    )?;
    let mut sampler = Sampler::new(source, proc_root, config.window.as_secs_f64())
        .context("seeding the tracer from /proc")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut gpus = gpu::open_default();
    let result = runtime.block_on(live(&mut sampler, gpus.as_mut(), &config));
    if let Some(mean) = gpus.mean_sample_cost() {
        log::debug!("GPU: one {} sample cost {mean:?} on average", gpus.name());
    }
    result?;
    // Dropping the sampler drops the source: the tracer detaches every program.
    Ok(ExitCode::SUCCESS)
}

async fn live(
    sampler: &mut Sampler,
    gpus: &mut dyn GpuSource,
    config: &TopConfig,
) -> anyhow::Result<()> {
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
        let mut snapshot = sampler.sample()?;
        gpu::join(&mut snapshot, &gpus.sample());
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
    //! Argument validation and the table's shape.
    use super::*;
    use crate::host::units::MIB;

    fn args(interval: &str) -> TopArgs {
        TopArgs {
            interval: interval.to_owned(),
            window: None,
            once: true,
            json: false,
            rows: 5,
            fault_hook: false,
            require_ebpf: false,
        }
    }

    #[test]
    fn validates_interval() {
        let config = TopConfig::try_from(args("500ms")).expect("valid");
        assert_eq!(config.interval, Duration::from_millis(500));
        assert_eq!(config.window, config.interval);
        assert!(TopConfig::try_from(args("10ms")).is_err());
        assert!(TopConfig::try_from(args("soon")).is_err());
    }

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
