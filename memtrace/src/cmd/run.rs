//! `memtrace run [--out FILE] [--config F] -- CMD ARGS…` and `memtrace record -o FILE [--pid PID
//! | -- CMD]`: trace a pipeline's whole process tree into a trace file, with stage marks.
//!
//! `run` first does what `run_memory_safe.sh` scripts do ([`env`]): says which limit counts (a
//! container's, when memtrace runs in one), warns about missing or short swap and sets a
//! memory-friendly environment for the child (never overriding the user's). Then it samples the
//! tree every `--interval` (200 ms) and at every stage mark, prints a `[Memory] before/after` line
//! per stage, forwards signals, runs the hooks (the guard plugs in through [`RunHook`]), exits with
//! the child's exit code and prints the report's verdicts. The pipeline runs in a cgroup of its
//! own ([`crate::record::run_cgroup`]; on v2 under systemd inside a transient scope:
//! [`crate::record::run_scope`]) where memtrace can make one: `--memory-high` / `--memory-max`
//! limit it, and the summary gives its peak, OOM kills and throttling. `record` traces without
//! changing the environment or printing stage lines.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{
    analyze::report,
    collect::scope::{ScopeArgs, Selected},
    collect::source::{REQUIRE_EBPF_HELP, REQUIRE_EBPF_LONG_HELP},
    host::{
        clock, procfs,
        units::{human_bytes, parse_duration, parse_size},
    },
    record::{
        RunHook, child, env, marks,
        recorder::{self, Plan, TraceTarget},
        run_cgroup::{Limits, RunCgroup},
        run_scope::Stay,
        trace::{self, Act, Event, Outcome},
    },
};

/// Raw arguments of `memtrace run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Where the trace goes (default: memtrace-run-<unix time>.mtrace here).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Config file: its `[run]` table sets `interval` and `env` (see README); other tables (the
    /// guard's) are read by their owners.
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// Sampling interval between marks (default 200ms, or the config's).
    #[arg(long, short = 'i')]
    pub interval: Option<String>,
    /// Turn the pipeline's output lines into stage marks: a regex with a `stage` group and
    /// optionally a `clip` group, e.g. 'clip (?P<clip>\d+)/\d+: (?P<stage>\w+)'.
    #[arg(long, value_name = "RE")]
    pub stage_regex: Option<String>,
    /// Do not print a `[Memory]` line per stage.
    #[arg(long)]
    pub quiet: bool,
    #[arg(long, help = REQUIRE_EBPF_HELP, long_help = REQUIRE_EBPF_LONG_HELP)]
    pub require_ebpf: bool,
    /// Which memory counts: the machine, a cgroup, or (default) the container memtrace runs in.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Throttle and reclaim the pipeline above SIZE (e.g. 12G): the cgroup v2 `memory.high` of
    /// the cgroup the run makes for it. cgroup v1 has no memory.high: refused there.
    #[arg(long, value_name = "SIZE")]
    pub memory_high: Option<String>,
    /// Limit the pipeline to SIZE (e.g. 16G): the kernel OOM-kills inside the run's own cgroup
    /// above it, nothing else on the machine is touched (`memory.max`, v1
    /// `memory.limit_in_bytes`; no swap on v2).
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// On cgroup v2 under systemd, do not run in a transient systemd scope of the run's own
    /// (`memtrace-run-PID.scope`, in the slice memtrace was started from): make the pipeline's
    /// cgroup at the root of the hierarchy instead.
    #[arg(long)]
    pub no_scope: bool,
    /// The pipeline to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Raw arguments of `memtrace record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The trace file to write.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Trace the process tree of this running process (until it ends, or Ctrl-C).
    #[arg(long, conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Sampling interval.
    #[arg(long, short = 'i', default_value = "1s")]
    pub interval: String,
    #[arg(long, help = REQUIRE_EBPF_HELP, long_help = REQUIRE_EBPF_LONG_HELP)]
    pub require_ebpf: bool,
    /// A command to start and trace, after `--` (without it and --pid: every process, until
    /// Ctrl-C).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn default_out() -> PathBuf {
    PathBuf::from(format!("memtrace-run-{}.mtrace", clock::unix_ms() / 1000))
}

fn check_interval(interval: Duration, text: &str) -> anyhow::Result<()> {
    if interval < Duration::from_millis(50) {
        anyhow::bail!("--interval {text} is too short (minimum 50ms)");
    }
    Ok(())
}

/// Runs `memtrace run` in `scope` (chosen from `args.scope`) with `hooks` (the guard) watching
/// every snapshot; `outside` says why it does not run in a transient scope of its own
/// ([`crate::record::run_scope::enter`], called first).
pub fn run_with_hooks(
    args: RunArgs,
    scope: &Selected,
    mut hooks: Vec<Box<dyn RunHook>>,
    outside: Option<Stay>,
) -> anyhow::Result<ExitCode> {
    let section = match &args.config {
        Some(path) => env::load(path)?,
        None => env::RunSection::default(),
    };
    let interval = match &args.interval {
        Some(text) => parse_duration(text).context("--interval")?,
        None => env::interval(&section, Duration::from_millis(200)),
    };
    check_interval(interval, args.interval.as_deref().unwrap_or("(config)"))?;
    let regex = args
        .stage_regex
        .as_deref()
        .map(marks::StageRegex::new)
        .transpose()?;
    let limits = limits(&args)?;
    let own = own_cgroup(limits, outside)?;
    if let Some(own) = &own {
        let limit = limits.high.into_iter().chain(limits.max).min();
        for hook in &mut hooks {
            hook.pipeline_cgroup(&own.memory, limit);
        }
    }
    let cgroup_procs = match &own {
        Some(own) => own.entry_files()?,
        None => Vec::new(),
    };
    let out = args.out.clone().unwrap_or_else(default_out);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (set, kept) = env::plan(&section, cpus, |k| std::env::var_os(k).is_some());
    if let Ok(info) = procfs::read_meminfo(std::path::Path::new("/proc")) {
        for line in env::memory_lines(scope, &info, std::path::Path::new("/proc")) {
            eprintln!("{line}");
        }
    }
    let shown: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut line = format!(
        "[memtrace] environment for the pipeline: {}",
        shown.join(" ")
    );
    if !kept.is_empty() {
        line.push_str(&format!(" (kept yours: {})", kept.join(", ")));
    }
    eprintln!("{line}");
    let config = serde_json::json!({
        "interval_ms": interval.as_millis(),
        "env": set,
        "env_kept_from_user": kept,
        "stage_regex": args.stage_regex,
        "config_file": args.config,
    });
    let plan = Plan {
        out: out.clone(),
        interval,
        target: TraceTarget::Spawn(args.command.clone()),
        regex,
        env: set,
        memory_lines: !args.quiet,
        config,
        require_ebpf: args.require_ebpf,
        cgroup_procs,
    };
    let outcome = recorder::execute(plan, hooks)?;
    if let Some(own) = &own {
        eprintln!("{}", own.summary());
    }
    summarize(&out, &outcome);
    drop(own);
    Ok(ExitCode::from(
        outcome.status.as_ref().map_or(1, child::exit_code),
    ))
}

/// `--memory-high` / `--memory-max`, parsed.
fn limits(args: &RunArgs) -> anyhow::Result<Limits> {
    let parse = |text: &Option<String>, flag: &str| {
        text.as_deref()
            .map(|t| parse_size(t).with_context(|| flag.to_owned()))
            .transpose()
    };
    Ok(Limits {
        high: parse(&args.memory_high, "--memory-high")?,
        max: parse(&args.memory_max, "--memory-max")?,
    })
}

/// The run's own cgroup, or `None` (with one line saying why) where it cannot be made; an
/// error when a limit was asked for.
fn own_cgroup(limits: Limits, outside: Option<Stay>) -> anyhow::Result<Option<RunCgroup>> {
    match RunCgroup::create(std::path::Path::new("/proc"), std::process::id(), limits) {
        Ok(own) => {
            let dirs = own
                .dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ");
            let where_ = match (&own.scope, outside) {
                (Some(unit), _) => format!(" (transient systemd scope {unit})"),
                (None, Some(why @ (Stay::Asked | Stay::NoSystemd | Stay::NoSystemdRun))) => {
                    format!(" (no systemd scope: {why})")
                }
                (None, _) => String::new(),
            };
            eprintln!("[memtrace] the pipeline runs in its own cgroup {dirs}{where_}");
            Ok(Some(own))
        }
        Err(err) if limits.any() => Err(anyhow::anyhow!(
            "--memory-high/--memory-max need a cgroup of the run's own: {err}"
        )),
        Err(err) => {
            eprintln!("[memtrace] info: the pipeline runs without a cgroup of its own: {err}");
            Ok(None)
        }
    }
}

/// What the guard did to the pipeline, in `run`'s closing line: the action in the past tense,
/// or what it would have done (a dry run) or failed to do.
fn did(action: Act, outcome: Option<Outcome>) -> String {
    let (verb, done) = match action {
        Act::Suspend => ("suspend", "suspended"),
        Act::Kill => ("kill", "killed"),
        Act::Resume => ("resume", "resumed"),
        other => (other.as_str(), other.as_str()),
    };
    match outcome {
        Some(Outcome::DryRun) => format!("would have {done}"),
        Some(Outcome::Failed) => format!("failed to {verb}"),
        _ => done.to_owned(),
    }
}

/// `run`'s closing line for the guard's last hold or kill `event`, after `earlier` others.
fn guard_line(event: &Event, earlier: usize) -> Option<String> {
    let Event::GuardDecision {
        action,
        level,
        reason,
        pids,
        outcome,
    } = event
    else {
        return None;
    };
    let more = if earlier > 0 {
        format!(" (+{earlier} earlier, see the report)")
    } else {
        String::new()
    };
    Some(format!(
        "[memtrace] the guard {} the pipeline ({level}, pids {pids:?}): {reason}{more}",
        did(*action, *outcome)
    ))
}

/// The closing lines of `run`: guard actions, how the pipeline ended, the trace, the verdicts.
fn summarize(out: &std::path::Path, outcome: &recorder::Outcome) {
    let f = &outcome.finished;
    if let Some(line) = f
        .guard_actions
        .last()
        .and_then(|last| guard_line(last, f.guard_actions.len().saturating_sub(1)))
    {
        eprintln!("{line}");
    }
    let ended = match &outcome.status {
        Some(status) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(status),
        ) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "ended".to_owned(),
        },
        None => "ended".to_owned(),
    };
    eprintln!(
        "[memtrace] pipeline {ended}; trace: {} ({}, {} samples); details: memtrace report {}",
        out.display(),
        human_bytes(f.bytes),
        f.samples,
        out.display()
    );
    if let Ok(trace) = trace::read_file(out) {
        let report = report::analyze(&trace);
        for line in report.tree.iter().map(|t| &t.text) {
            eprintln!("[memtrace] {line}");
        }
        for verdict in &report.verdicts {
            eprintln!("[memtrace] {}", verdict.text);
        }
    }
}

/// Runs `memtrace record`.
pub fn record(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let interval = parse_duration(&args.interval).context("--interval")?;
    check_interval(interval, &args.interval)?;
    let target = match (args.pid, args.command.is_empty()) {
        (Some(pid), _) => TraceTarget::Attach(pid),
        (None, false) => TraceTarget::Spawn(args.command.clone()),
        (None, true) => TraceTarget::System,
    };
    let plan = Plan {
        out: args.out.clone(),
        interval,
        target,
        regex: None,
        env: Default::default(),
        memory_lines: false,
        config: serde_json::json!({ "interval_ms": interval.as_millis() }),
        require_ebpf: args.require_ebpf,
        cgroup_procs: Vec::new(),
    };
    let outcome = recorder::execute(plan, Vec::new())?;
    eprintln!(
        "[memtrace] trace: {} ({}, {} samples)",
        args.out.display(),
        human_bytes(outcome.finished.bytes),
        outcome.finished.samples
    );
    Ok(ExitCode::from(
        outcome.status.as_ref().map_or(0, child::exit_code),
    ))
}

#[cfg(test)]
mod tests {
    //! The closing line names what the guard did from the typed action and outcome.
    use super::*;

    use crate::record::trace::decision::test_event as decision;

    #[test]
    fn the_closing_line_says_what_the_guard_did() {
        assert_eq!(
            guard_line(&decision(Act::Suspend, Some(Outcome::Done)), 0).as_deref(),
            Some("[memtrace] the guard suspended the pipeline (suspend, pids [7, 8]): used 95 %")
        );
        let line = guard_line(&decision(Act::Kill, None), 2).expect("a line");
        assert!(
            line.starts_with("[memtrace] the guard killed the pipeline")
                && line.ends_with("(+2 earlier, see the report)"),
            "{line}"
        );
        assert_eq!(
            did(Act::Suspend, Some(Outcome::DryRun)),
            "would have suspended"
        );
        assert_eq!(did(Act::Kill, Some(Outcome::Failed)), "failed to kill");
        assert_eq!(
            guard_line(
                &Event::RunEnd {
                    exit_code: Some(0),
                    signal: None
                },
                0
            ),
            None
        );
    }
}
