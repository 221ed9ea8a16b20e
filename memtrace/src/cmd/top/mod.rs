//! `memtrace top`: the live view of every process's memory. On a terminal it is the interactive
//! view ([`tui`]: sortable, filterable process table and tree, PSI and growth sparklines, GPUs,
//! the trees the guard holds); for pipes, `--once`, `--json` and `--plain` it prints the plain
//! table or JSON lines ([`table`]). Both read the sampler's snapshots, with eBPF or without it
//! (the /proc source: see [`Source::start`]).
mod held;
mod table;
mod tui;

use std::{io::IsTerminal as _, path::Path, process::ExitCode, time::Duration};

use anyhow::Context as _;

pub use table::render;

use crate::{
    collect::{
        gpu,
        proc_source::{Members, OomSource},
        sampler::Sampler,
        scope::{ScopeArgs, Selected},
        source::{REQUIRE_EBPF_HELP, REQUIRE_EBPF_LONG_HELP, Source},
        tracer::{Programs, TracerOptions},
    },
    host::units::parse_duration,
};

/// What `top` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The interactive terminal UI.
    Interactive,
    /// The plain table (or JSON lines), redrawn each interval.
    Plain,
}

impl View {
    /// Interactive only on a terminal and when none of `--once`, `--json`, `--plain` asks for
    /// plain output.
    fn choose(args: &TopArgs, stdout_is_terminal: bool) -> Self {
        if stdout_is_terminal && !args.once && !args.json && !args.plain {
            Self::Interactive
        } else {
            Self::Plain
        }
    }
}

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
    /// Print the plain table even when stdout is a terminal (no interactive view).
    #[arg(long)]
    pub plain: bool,
    /// Rows in the table (the JSON output always has every process).
    #[arg(long, short = 'n', default_value_t = 25)]
    pub rows: usize,
    /// Also count faults with a per-fault eBPF hook (by default they come from the kernel's
    /// own per-task counters at no per-fault cost).
    #[arg(long)]
    pub fault_hook: bool,
    /// Run nothing on the page-fault path, as `memtrace guard` does: only the eBPF programs of
    /// rare events (process exit, reclaim, OOM victim), each process's memory read from /proc
    /// at every interval. A fault storm then runs within noise of no tracer; a transient peak
    /// between two samples is missed.
    #[arg(long, conflicts_with = "fault_hook")]
    pub rare_events: bool,
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
    /// What is shown.
    pub view: View,
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
            view: View::choose(&args, std::io::stdout().is_terminal()),
            rows: args.rows,
            tracer: TracerOptions {
                fault_hook: args.fault_hook,
                programs: if args.rare_events {
                    Programs::RareEvents
                } else {
                    Programs::PerEvent
                },
                ..TracerOptions::default()
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
    let mut sampler = Sampler::new(
        source,
        gpu::open_default(),
        proc_root,
        config.window.as_secs_f64(),
    )
    .context("seeding the tracer from /proc")?;
    // A new GPU sample at every refresh.
    sampler.set_gpu_every(config.interval / 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = match config.view {
        View::Interactive => {
            let mut guard = held::StateFiles::new(Path::new(crate::guard::state::STATE_DIR));
            // The header leads with the container's limit where one binds memtrace.
            let limited = ScopeArgs::default()
                .select(proc_root)
                .ok()
                .filter(Selected::in_container);
            runtime.block_on(tui::live(
                &mut sampler,
                &mut guard,
                limited.as_ref(),
                &config,
            ))
        }
        View::Plain => runtime.block_on(table::live(&mut sampler, &config)),
    };
    let gpus = sampler.gpu_source();
    if let Some(mean) = gpus.mean_sample_cost() {
        log::debug!("GPU: one {} sample cost {mean:?} on average", gpus.name());
    }
    result?;
    // Dropping the sampler drops the source: the tracer detaches every program.
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    //! Argument validation and the choice of view.
    use super::*;

    fn args(interval: &str) -> TopArgs {
        TopArgs {
            interval: interval.to_owned(),
            window: None,
            once: true,
            json: false,
            plain: false,
            rows: 5,
            fault_hook: false,
            rare_events: false,
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
        assert_eq!(config.tracer.programs, Programs::PerEvent, "the default");
        let rare = TopArgs {
            rare_events: true,
            ..args("1")
        };
        let config = TopConfig::try_from(rare).expect("valid");
        assert_eq!(config.tracer.programs, Programs::RareEvents);
    }

    #[test]
    fn interactive_only_on_a_terminal_without_plain_flags() {
        let live = TopArgs {
            once: false,
            ..args("1")
        };
        assert_eq!(View::choose(&live, true), View::Interactive);
        assert_eq!(View::choose(&live, false), View::Plain, "a pipe");
        assert_eq!(View::choose(&args("1"), true), View::Plain, "--once");
        let json = TopArgs { json: true, ..live };
        assert_eq!(View::choose(&json, true), View::Plain, "--json");
        let plain = TopArgs {
            plain: true,
            once: false,
            ..args("1")
        };
        assert_eq!(View::choose(&plain, true), View::Plain, "--plain");
    }
}
