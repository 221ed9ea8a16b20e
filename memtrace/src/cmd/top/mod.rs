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
        tracer::{Load, Programs, TracerOptions},
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
    /// Count every change of every process's resident memory in the kernel, as `run` and
    /// `record` do: one eBPF program run per change (`rss_stat`), a few per cent of a page-fault
    /// storm. By default `top` runs nothing on the page-fault path.
    #[arg(long)]
    pub per_event: bool,
    /// Also count faults with a per-fault eBPF hook (implies --per-event; by default they come
    /// from the kernel's own per-task counters at no per-fault cost).
    #[arg(long)]
    pub fault_hook: bool,
    /// What `top` does by default (kept for earlier command lines).
    #[arg(long, hide = true, conflicts_with_all = ["per_event", "fault_hook"])]
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
            tracer: tracer_options(&args),
            require_ebpf: args.require_ebpf,
        })
    }
}

/// What the tracer attaches for these arguments: by default only the programs of rare events,
/// each exit reporting its memory, loaded by the helper process (so the BTF parse stays out of
/// `top`'s own peak RSS); with `--per-event` (or `--fault-hook`) the per-event programs.
fn tracer_options(args: &TopArgs) -> TracerOptions {
    let per_event = args.per_event || args.fault_hook;
    TracerOptions {
        fault_hook: args.fault_hook,
        programs: if per_event {
            Programs::PerEvent
        } else {
            Programs::RareEvents
        },
        exit_memory: !per_event,
        load: Load::Helper,
        ..TracerOptions::default()
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
            per_event: false,
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
    }

    #[test]
    fn nothing_on_the_fault_path_unless_asked() {
        let default = TopConfig::try_from(args("1")).expect("valid").tracer;
        assert_eq!(default.programs, Programs::RareEvents, "the default");
        assert!(default.exit_memory && !default.fault_hook);
        assert_eq!(default.load, Load::Helper);
        let earlier = TopArgs {
            rare_events: true,
            ..args("1")
        };
        assert_eq!(TopConfig::try_from(earlier).expect("valid").tracer, default);
        let per_event = TopArgs {
            per_event: true,
            ..args("1")
        };
        let options = TopConfig::try_from(per_event).expect("valid").tracer;
        assert_eq!(options.programs, Programs::PerEvent);
        assert!(!options.exit_memory && !options.fault_hook);
        let hook = TopArgs {
            fault_hook: true,
            ..args("1")
        };
        let options = TopConfig::try_from(hook).expect("valid").tracer;
        assert_eq!(
            options.programs,
            Programs::PerEvent,
            "--fault-hook implies it"
        );
        assert!(options.fault_hook);
    }

    #[test]
    fn the_earlier_flag_conflicts_with_the_per_event_ones() {
        use clap::Parser as _;
        for flags in [
            ["--rare-events", "--per-event"],
            ["--rare-events", "--fault-hook"],
        ] {
            let parsed =
                crate::cli::Cli::try_parse_from(["memtrace", "top"].into_iter().chain(flags));
            assert!(parsed.is_err(), "{flags:?}");
        }
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
