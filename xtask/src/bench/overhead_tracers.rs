//! The tracers `cargo xtask bench overhead` compares ([`Variant`]): building memtrace and the
//! workload binary, reading from `memtrace top --help` which flags select each `top` mode
//! ([`TopFlags`]: this memtrace's or an older one's), and starting a tracer (waiting until it
//! is up) and stopping it.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use rustix::process::Signal;

use super::process::Observer;
use crate::{build, tools};

/// The bpftrace one-liner memtrace's per-fault hook is compared with.
const BPFTRACE_PROGRAM: &str = "tracepoint:exceptions:page_fault_user { @[pid] = count(); }";
/// An empty probe on the same tracepoint: the floor of the kernel's run-time statistics.
const BPFTRACE_EMPTY: &str = "tracepoint:exceptions:page_fault_user { }";
/// How long a tracer may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// bpftrace prints "Attaching" before it attaches: give it this long to finish.
const BPFTRACE_SETTLE: Duration = Duration::from_secs(1);

/// What runs alongside the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    None,
    /// `memtrace top` as it runs by default: nothing on the page-fault path (only the programs
    /// of rare events: exits, reclaim, OOM victim), each process's memory read from /proc at
    /// every interval.
    TopDefault,
    /// `memtrace top --per-event`: `rss_stat` runs on every change of every process's resident
    /// memory.
    TopPerEvent,
    /// `memtrace top --per-event --fault-hook`: that plus the per-fault hook
    /// (`page_fault_user`).
    TopPerEventHook,
    /// `memtrace guard --machine --dry-run`, idle (far from its thresholds): its default source,
    /// the rare-event programs only.
    Guard,
    Bpftrace,
    /// An empty bpftrace probe (kernel program costs only).
    BpftraceEmpty,
}

pub const VARIANTS: [Variant; 6] = [
    Variant::None,
    Variant::Guard,
    Variant::TopDefault,
    Variant::TopPerEvent,
    Variant::TopPerEventHook,
    Variant::Bpftrace,
];

/// What a `memtrace top` variant runs, whatever the flags that select it (see [`TopFlags`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopMode {
    /// Only the rare-event programs (the default since `--per-event` exists).
    Default,
    /// `rss_stat` on every change of resident memory.
    PerEvent,
    /// That plus the per-fault hook.
    PerEventHook,
}

impl TopMode {
    const ALL: [Self; 3] = [Self::Default, Self::PerEvent, Self::PerEventHook];

    /// Its flags, as a memtrace with `--per-event` spells them.
    pub fn flags(self) -> &'static str {
        match self {
            Self::Default => "(default)",
            Self::PerEvent => "--per-event",
            Self::PerEventHook => "--per-event --fault-hook",
        }
    }

    /// Whether it is opt-in, with a known cost per fault: measured, not held to the targets
    /// (those are the default's).
    pub fn opt_in(self) -> bool {
        match self {
            Self::Default => false,
            Self::PerEvent | Self::PerEventHook => true,
        }
    }
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none (baseline)",
            Self::TopDefault => "top (default)",
            Self::TopPerEvent => "top --per-event",
            Self::TopPerEventHook => "top --per-event, fault hook",
            Self::Guard => "memtrace guard, idle",
            Self::Bpftrace => "bpftrace one-liner",
            Self::BpftraceEmpty => "empty probe (floor)",
        }
    }

    /// The `memtrace top` mode it runs, if it is one.
    pub fn top_mode(self) -> Option<TopMode> {
        match self {
            Self::TopDefault => Some(TopMode::Default),
            Self::TopPerEvent => Some(TopMode::PerEvent),
            Self::TopPerEventHook => Some(TopMode::PerEventHook),
            Self::None | Self::Guard | Self::Bpftrace | Self::BpftraceEmpty => None,
        }
    }

    /// The variant that runs `mode`.
    fn of_top(mode: TopMode) -> Self {
        match mode {
            TopMode::Default => Self::TopDefault,
            TopMode::PerEvent => Self::TopPerEvent,
            TopMode::PerEventHook => Self::TopPerEventHook,
        }
    }

    /// The signal that stops it cleanly.
    fn stop_signal(self) -> Signal {
        match self {
            Self::Bpftrace | Self::BpftraceEmpty => Signal::INT,
            _ => Signal::TERM,
        }
    }

    /// The kernel program type its programs have (to tell them from anything else loaded
    /// meanwhile).
    pub fn program_type(self) -> &'static str {
        match self {
            Self::Bpftrace | Self::BpftraceEmpty => "tracepoint",
            _ => "tracing",
        }
    }
}

/// The binaries the benchmark runs.
#[derive(Debug)]
pub struct Binaries {
    memtrace: PathBuf,
    /// The flags that select each `top` mode of this memtrace.
    pub top_flags: TopFlags,
    /// A release build of xtask, which runs the workloads.
    pub workload: PathBuf,
}

impl Binaries {
    /// `memtrace top --json --interval 1` in `mode`, with the flags this memtrace selects it by.
    pub fn memtrace_top(&self, mode: TopMode) -> Command {
        let mut cmd = Command::new(&self.memtrace);
        cmd.args(["top", "--json", "--interval", "1"]);
        cmd.args(self.top_flags.args(mode));
        cmd
    }

    /// `memtrace guard --machine --dry-run` (it sends nothing and changes nothing) with its
    /// state file in a private directory, its log on stdout (so that its "guarding" line says
    /// it is up): through `sh -c 'exec …'`, so the pid is the guard's.
    pub fn memtrace_guard(&self) -> anyhow::Result<Command> {
        let dir = guard_state_dir()?;
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "exec \"$0\" guard --machine --dry-run --state-file \"$1\" 2>&1",
        ])
        .arg(&self.memtrace)
        .arg(dir.join("state.json"));
        Ok(cmd)
    }
}

/// Removes the guard's state directory, if this run made one (the dry run writes nothing in it).
pub fn remove_guard_state_dir() {
    let dir = std::env::temp_dir().join(format!("memtrace-bench-guard-{}", std::process::id()));
    if dir.is_dir()
        && let Err(err) = std::fs::remove_dir(&dir)
    {
        eprintln!("xtask: warning: removing {}: {err}", dir.display());
    }
}

/// A directory for the benchmarked guard's state file: root's, mode 0700 (the guard refuses
/// others), made once per benchmark run.
fn guard_state_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = std::env::temp_dir().join(format!("memtrace-bench-guard-{}", std::process::id()));
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(dir)
}

/// The flags that select `memtrace top`'s modes, as its `top --help` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopFlags {
    /// `--per-event` listed: the default runs nothing on the page-fault path, `--per-event`
    /// opts into `rss_stat`, `--fault-hook` adds the per-fault hook (passed with `--per-event`,
    /// which it implies).
    PerEventOptIn,
    /// An older memtrace: `--rare-events` listed, no `--per-event`. Its default is per-event
    /// counting, `--rare-events` runs nothing on the page-fault path, `--fault-hook` adds the
    /// per-fault hook.
    RareEventsOptIn,
}

impl TopFlags {
    /// Reads the flags from the text of `memtrace top --help`; an error (one line) when it lists
    /// neither form.
    fn from_help(help: &str) -> anyhow::Result<Self> {
        if lists_flag(help, "--per-event") {
            Ok(Self::PerEventOptIn)
        } else if lists_flag(help, "--rare-events") {
            Ok(Self::RareEventsOptIn)
        } else if lists_flag(help, "--no-fault-hook") {
            bail!(
                "it lists --no-fault-hook but neither --per-event nor --rare-events: a memtrace \
                 that old has no top mode without programs on the page-fault path"
            )
        } else {
            bail!("it lists neither --per-event nor --rare-events")
        }
    }

    /// The arguments that select `mode`.
    pub fn args(self, mode: TopMode) -> &'static [&'static str] {
        match (self, mode) {
            (Self::PerEventOptIn, TopMode::Default) => &[],
            (Self::PerEventOptIn, TopMode::PerEvent) => &["--per-event"],
            (Self::PerEventOptIn, TopMode::PerEventHook) => &["--per-event", "--fault-hook"],
            (Self::RareEventsOptIn, TopMode::Default) => &["--rare-events"],
            (Self::RareEventsOptIn, TopMode::PerEvent) => &[],
            (Self::RareEventsOptIn, TopMode::PerEventHook) => &["--fault-hook"],
        }
    }

    /// One line: which flags each `top` variant runs with.
    pub fn describe(self) -> String {
        let which = match self {
            Self::PerEventOptIn => "its top --help lists --per-event",
            Self::RareEventsOptIn => {
                "an older memtrace: its top --help lists --rare-events, no --per-event"
            }
        };
        let modes: Vec<String> = TopMode::ALL
            .into_iter()
            .map(|mode| {
                let args = self.args(mode);
                let args = if args.is_empty() {
                    "no flag".to_owned()
                } else {
                    args.join(" ")
                };
                format!("{}: {args}", Variant::of_top(mode).label())
            })
            .collect();
        format!("memtrace top flags ({which}): {}", modes.join("; "))
    }
}

/// Whether `help` lists `flag` as an option: a line that starts with it (after the indent and
/// a short form such as `-n, `), not a mention in another option's text.
fn lists_flag(help: &str, flag: &str) -> bool {
    help.lines().any(|line| {
        let line = line.trim_start();
        let line = match line.split_once(", ") {
            Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
            _ => line,
        };
        line.split(|c: char| c.is_whitespace() || matches!(c, '=' | '<' | '['))
            .next()
            .is_some_and(|word| word == flag)
    })
}

/// The directory cargo builds into: `CARGO_TARGET_DIR` when set (relative to the workspace,
/// where [`tools::cargo`] runs), else `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => tools::workspace_root().join(dir),
        None => tools::workspace_root().join("target"),
    }
}

/// Builds memtrace (unless `prebuilt` is given) and xtask in release.
pub fn build_binaries(prebuilt: Option<&Path>) -> anyhow::Result<Binaries> {
    let memtrace = match prebuilt {
        Some(path) => {
            std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?
        }
        None => {
            eprintln!("xtask: bench: building memtrace (release)");
            let reported = build::run(&build::Options { release: true })?;
            // build::run names the binary under target/, but cargo honours CARGO_TARGET_DIR.
            if std::env::var_os("CARGO_TARGET_DIR").is_some() {
                target_dir().join("release/memtrace")
            } else {
                reported
            }
        }
    };
    eprintln!("xtask: bench: building the workloads (release xtask)");
    tools::run_checked(
        tools::cargo().args(["build", "--release", "--package", "xtask", "--bin", "xtask"]),
        "cargo build --release --package xtask",
    )?;
    let workload = target_dir().join("release/xtask");
    for path in [&memtrace, &workload] {
        if !path.is_file() {
            bail!("the build did not produce {}", path.display());
        }
    }
    let help = Command::new(&memtrace)
        .args(["top", "--help"])
        .output()
        .with_context(|| format!("running {} top --help", memtrace.display()))?;
    let top_flags = TopFlags::from_help(&String::from_utf8_lossy(&help.stdout))
        .with_context(|| format!("reading {} top --help", memtrace.display()))?;
    Ok(Binaries {
        memtrace,
        top_flags,
        workload,
    })
}

/// Starts the tracer of `variant` and waits until it is up; `None` for the baseline.
pub fn start_tracer(binaries: &Binaries, variant: Variant) -> anyhow::Result<Option<Observer>> {
    let mut observer = match variant {
        Variant::None => return Ok(None),
        Variant::TopDefault | Variant::TopPerEvent | Variant::TopPerEventHook => {
            let mode = variant
                .top_mode()
                .context("a top variant without a top mode")?;
            let mut cmd = binaries.memtrace_top(mode);
            Observer::spawn(&mut cmd, "memtrace top", |l| l.starts_with('['), false)?
        }
        Variant::Guard => Observer::spawn(
            &mut binaries.memtrace_guard()?,
            "memtrace guard",
            |l| l.contains("] guarding "),
            false,
        )?,
        Variant::Bpftrace | Variant::BpftraceEmpty => {
            let program = if variant == Variant::Bpftrace {
                BPFTRACE_PROGRAM
            } else {
                BPFTRACE_EMPTY
            };
            Observer::spawn(
                Command::new("bpftrace").args(["-e", program]),
                "bpftrace",
                |l| l.contains("Attaching"),
                false,
            )?
        }
    };
    observer.wait_ready(READY_TIMEOUT)?;
    if matches!(variant, Variant::Bpftrace | Variant::BpftraceEmpty) {
        std::thread::sleep(BPFTRACE_SETTLE);
    }
    Ok(Some(observer))
}

/// Stops a tracer, making sure it survived the run.
pub fn stop_tracer(observer: Option<Observer>, variant: Variant) -> anyhow::Result<()> {
    if let Some(mut observer) = observer {
        observer.check_alive()?;
        observer.stop(variant.stop_signal())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Reading from memtrace's `top --help` which flags select each `top` mode.
    use super::*;

    /// `memtrace top --help` of a memtrace with `--per-event` (the default runs no program on
    /// the page-fault path; `--rare-events` is a hidden alias, not listed).
    const NEW_HELP: &str = "\
  -n, --rows <ROWS>  Rows in the table [default: 25]
      --per-event    Count with an eBPF program on every change of resident memory
      --fault-hook   Also count faults with a per-fault eBPF hook (implies `--per-event`)
";
    /// An older one: per-event by default, `--rare-events` runs nothing on the page-fault path.
    const OLD_HELP: &str = "\
      --fault-hook   Also count faults with a per-fault eBPF hook (by default they come from
                     the kernel's own per-task counters at no per-fault cost)
      --rare-events  Run nothing on the page-fault path, as `memtrace guard` does (not with
                     `--per-event` counting)
";
    /// Older still: the per-fault hook on by default, no mode without per-event programs.
    const OLDEST_HELP: &str =
        "      --no-fault-hook   Don't attach the per-fault hook (`--fault-hook`)\n";

    #[test]
    fn top_flags_from_help() {
        assert_eq!(
            TopFlags::from_help(NEW_HELP).ok(),
            Some(TopFlags::PerEventOptIn)
        );
        assert_eq!(
            TopFlags::from_help(OLD_HELP).ok(),
            Some(TopFlags::RareEventsOptIn)
        );
        for help in [OLDEST_HELP, "  --json  JSON\n", ""] {
            let Err(err) = TopFlags::from_help(help) else {
                panic!("{help:?} read as a known form");
            };
            let err = err.to_string();
            assert!(
                err.contains("neither --per-event nor --rare-events"),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn top_flags_args() {
        let new = TopFlags::PerEventOptIn;
        assert!(new.args(TopMode::Default).is_empty());
        assert_eq!(new.args(TopMode::PerEvent), ["--per-event"]);
        assert_eq!(
            new.args(TopMode::PerEventHook),
            ["--per-event", "--fault-hook"]
        );
        let old = TopFlags::RareEventsOptIn;
        assert_eq!(old.args(TopMode::Default), ["--rare-events"]);
        assert!(old.args(TopMode::PerEvent).is_empty());
        assert_eq!(old.args(TopMode::PerEventHook), ["--fault-hook"]);
        assert_eq!(
            new.describe(),
            "memtrace top flags (its top --help lists --per-event): top (default): no flag; \
             top --per-event: --per-event; top --per-event, fault hook: --per-event --fault-hook"
        );
    }

    #[test]
    fn top_variants() {
        for mode in TopMode::ALL {
            assert_eq!(Variant::of_top(mode).top_mode(), Some(mode));
        }
        let tops: Vec<Variant> = VARIANTS
            .into_iter()
            .filter(|v| v.top_mode().is_some())
            .collect();
        assert_eq!(
            tops,
            [
                Variant::TopDefault,
                Variant::TopPerEvent,
                Variant::TopPerEventHook
            ]
        );
    }
}
