//! The tracers `cargo xtask bench overhead` compares ([`Variant`]): building memtrace and the
//! workload binary, reading how memtrace switches its per-fault hook, and starting a tracer
//! (waiting until it is up) and stopping it.
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
    /// memtrace with its per-fault hook (`page_fault_user`) attached.
    MemtraceHook,
    /// memtrace without it.
    MemtraceNoHook,
    /// `memtrace top --rare-events`: nothing on the page-fault path, /proc read each interval.
    TopRare,
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
    Variant::TopRare,
    Variant::MemtraceNoHook,
    Variant::MemtraceHook,
    Variant::Bpftrace,
];

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none (baseline)",
            Self::MemtraceHook => "memtrace, fault hook",
            Self::MemtraceNoHook => "memtrace, no fault hook",
            Self::TopRare => "memtrace, rare events",
            Self::Guard => "memtrace guard, idle",
            Self::Bpftrace => "bpftrace one-liner",
            Self::BpftraceEmpty => "empty probe (floor)",
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
    /// How this memtrace switches its per-fault hook.
    pub hook: HookFlags,
    /// A release build of xtask, which runs the workloads.
    pub workload: PathBuf,
}

impl Binaries {
    /// `memtrace top --json --interval 1` as `variant` runs it: with or without the per-fault
    /// hook, or with `--rare-events`.
    pub fn memtrace_top(&self, variant: Variant) -> Command {
        let mut cmd = Command::new(&self.memtrace);
        cmd.args(["top", "--json", "--interval", "1"]);
        cmd.args(self.hook.args(variant == Variant::MemtraceHook));
        if variant == Variant::TopRare {
            cmd.arg("--rare-events");
        }
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

/// memtrace's flag for its per-fault hook: opt-in (`--fault-hook`) or opt-out
/// (`--no-fault-hook`), as its `top --help` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookFlags {
    OptIn,
    OptOut,
}

impl HookFlags {
    /// Reads the flag from the text of `memtrace top --help`.
    fn from_help(help: &str) -> Option<Self> {
        let words: Vec<&str> = help
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '`' | '(' | ')' | '[' | ']'))
            .collect();
        if words.contains(&"--no-fault-hook") {
            Some(Self::OptOut)
        } else if words.contains(&"--fault-hook") {
            Some(Self::OptIn)
        } else {
            None
        }
    }

    fn args(self, fault_hook: bool) -> &'static [&'static str] {
        match (self, fault_hook) {
            (Self::OptIn, true) => &["--fault-hook"],
            (Self::OptOut, false) => &["--no-fault-hook"],
            _ => &[],
        }
    }

    /// What `memtrace top` does without either flag.
    pub fn describe(self) -> &'static str {
        match self {
            Self::OptIn => "memtrace top attaches the fault hook with --fault-hook (default: off)",
            Self::OptOut => {
                "memtrace top detaches the fault hook with --no-fault-hook (default: on)"
            }
        }
    }
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
    let hook = HookFlags::from_help(&String::from_utf8_lossy(&help.stdout)).with_context(|| {
        format!(
            "{} top --help lists neither --fault-hook nor --no-fault-hook",
            memtrace.display()
        )
    })?;
    Ok(Binaries {
        memtrace,
        hook,
        workload,
    })
}

/// Starts the tracer of `variant` and waits until it is up; `None` for the baseline.
pub fn start_tracer(binaries: &Binaries, variant: Variant) -> anyhow::Result<Option<Observer>> {
    let mut observer = match variant {
        Variant::None => return Ok(None),
        Variant::MemtraceHook | Variant::MemtraceNoHook | Variant::TopRare => {
            let mut cmd = binaries.memtrace_top(variant);
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
    //! Reading memtrace's fault-hook flag from its help.
    use super::*;

    #[test]
    fn hook_flags_from_help() {
        let opt_in = "      --fault-hook           Also count faults with a per-fault eBPF hook\n";
        let opt_out = "      --no-fault-hook   Don't attach the per-fault hook (`--fault-hook`)\n";
        assert_eq!(HookFlags::from_help(opt_in), Some(HookFlags::OptIn));
        assert_eq!(HookFlags::from_help(opt_out), Some(HookFlags::OptOut));
        assert_eq!(HookFlags::from_help("  --json  JSON\n"), None);
        assert_eq!(HookFlags::OptIn.args(true), ["--fault-hook"]);
        assert!(HookFlags::OptIn.args(false).is_empty());
        assert_eq!(HookFlags::OptOut.args(false), ["--no-fault-hook"]);
        assert!(HookFlags::OptOut.args(true).is_empty());
    }
}
