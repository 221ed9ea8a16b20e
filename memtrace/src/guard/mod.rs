//! `memtrace guard`: acts on memory pressure before it reaches sshd — warn, reclaim, suspend
//! (and later resume) the growing process tree, and kill it only as a last resort.
//!
//! The loop sleeps in poll() on a kernel PSI trigger, v1 usage events and a signalfd, waking at
//! an interval paced by the headroom ([`pace`]); each round samples the scope's usage and, near
//! pressure, its processes, and hands them to the [`engine::Engine`]. By default per-process
//! memory comes from /proc when a round needs it, with only the programs of rare events attached
//! (reclaim stalls, kswapd wake-ups, exits, OOM victims:
//! [`crate::collect::source::Source::Rare`]): nothing runs on the page-fault path. With
//! `--per-event` the kernel counts every change, as for `top`. Either way the programs are
//! loaded by a short-lived helper process ([`crate::collect::tracer::helper`]) that hands over
//! their descriptors and exits: parsing the kernel's BTF never enters the guard's own peak RSS,
//! all of which it mlocks ([`protect`]).
//!
//! Its scope is the one every command uses ([`crate::collect::scope`]): `--cgroup PATH`,
//! `--machine`, or by default the container's cgroup when memtrace runs in one whose limit is
//! below the machine's RAM, else the machine.
//!
//! While it runs, `memtrace guard status | resume ID | kill ID | keep ID` ask it over its
//! [`control`] socket beside the state file: what it holds, since when and why; resume, kill or
//! keep one tree. The guard inside `memtrace run` is [`run_hook`]; `memtrace guard --run PID …`
//! asks it the same way. Neither counts the stalls of a cgroup at its own memory limit (a
//! pipeline run with `--memory-high`, a container started with `-m`) as pressure on its scope
//! ([`limit_stalls`]).
//!
//! At start it [`claim`]s its scope and state file: one guard per scope ([`lock`]), a state
//! directory and file only root can change and that it can write ([`state`]), and it
//! [`recover`]s what a dead guard of its scope or a dead `memtrace run` left suspended —
//! checking every claim of their state files first.
pub mod claim;
pub mod config;
pub mod control;
pub mod engine;
pub mod freeze;
pub mod level;
pub mod limit_stalls;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod pace;
pub mod protect;
pub mod psi_trigger;
pub mod reclaim;
pub mod recover;
pub mod run_hook;
pub mod state;
pub mod suspend;
pub mod usage_events;
pub mod victim;

use std::{
    net::SocketAddr,
    os::fd::{FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use rustix::{
    event::{PollFd, PollFlags, Timespec, poll},
    io::Errno,
};

use crate::{
    collect::{
        proc_source::{Members, OomSource},
        sampler::Sampler,
        scope::{self, Scope, ScopeArgs},
        source::{REQUIRE_EBPF_HELP, REQUIRE_EBPF_LONG_HELP, Source},
        tracer::{Load, Programs, TracerOptions},
    },
    guard::{config::GuardConfig, engine::Engine, psi_trigger::PsiTrigger},
    host::{privilege, procfs},
};

/// Raw arguments of `memtrace guard`.
#[derive(Debug, clap::Args)]
pub struct GuardArgs {
    /// TOML configuration layered over the embedded default.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Which memory counts: the machine, a cgroup, or (default) the container memtrace runs in.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Log every decision, send nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Serve OpenMetrics on this address (e.g. 127.0.0.1:9184). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Where suspended trees are recorded (a restarted guard resumes them), in a directory only
    /// root can write [default: /run/memtrace/guard-suspended.json for the machine,
    /// /run/memtrace/guard-cgroup+PATH-suspended.json for --cgroup PATH].
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// With status, resume, kill or keep: ask the guard inside the `memtrace run` whose pid is
    /// PID (what it holds of its pipeline) instead of the running `memtrace guard`.
    #[arg(long, value_name = "PID", conflicts_with = "state_file")]
    pub run: Option<u32>,
    /// Run without a PSI trigger (polling only), for kernels without PSI.
    #[arg(long)]
    pub no_psi: bool,
    /// Pressure file to arm instead of the scope's (tests).
    #[arg(long, hide = true)]
    pub psi_file: Option<PathBuf>,
    /// Poll only, without usage threshold events on a v1 cgroup (benchmarks: the behaviour of
    /// cgroup v2 and the machine scope).
    #[arg(long, hide = true)]
    pub no_usage_events: bool,
    /// Have the kernel count every change of every process's memory, as `run` does: an eBPF
    /// program on every page fault of the machine (see --help: which mode costs what)
    #[arg(long)]
    pub per_event: bool,
    /// The default since per-event counting became opt-in (`--per-event`): only the programs of
    /// rare events. Accepted for the scripts that still pass it.
    #[arg(long, hide = true, conflicts_with = "per_event")]
    pub rare_events: bool,
    /// Stop after this long (tests, benchmarks).
    #[arg(long, hide = true)]
    pub exit_after: Option<String>,
    #[arg(long, help = REQUIRE_EBPF_HELP, long_help = REQUIRE_EBPF_LONG_HELP)]
    pub require_ebpf: bool,
    /// Ask the guard already running for this scope (or `--state-file`) instead of starting one.
    #[command(subcommand)]
    pub control: Option<control::ControlCommand>,
}

/// Runs `memtrace guard`.
pub fn run(args: GuardArgs) -> anyhow::Result<ExitCode> {
    if args.print_config {
        crate::out!("{}", config::DEFAULT_TOML)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = match &args.config {
        Some(path) => GuardConfig::from_file(path)?,
        None => GuardConfig::default_config()?,
    };
    let proc_root = Path::new("/proc");
    if let Some(command) = &args.control {
        let selected = args.scope.select(proc_root)?;
        let state = match (args.run, &args.state_file) {
            (Some(pid), _) => Path::new(state::STATE_DIR).join(lock::run_state_name(pid)),
            (None, Some(file)) => file.clone(),
            (None, None) => claim::default_state_file(&selected.scope),
        };
        let state = std::path::absolute(state).context("--state-file")?;
        return control::client(command, &control::socket_path(&state));
    }
    if args.run.is_some() {
        anyhow::bail!("--run PID asks a run's guard: add status, resume ID, kill ID or keep ID");
    }
    privilege::require_root("memtrace guard")?;
    let selected = args.scope.select(proc_root)?;
    let scope = selected.scope.clone();
    let exit_after = args
        .exit_after
        .as_deref()
        .map(crate::host::units::parse_duration)
        .transpose()
        .context("--exit-after")?;
    let state_path = std::path::absolute(
        args.state_file
            .clone()
            .unwrap_or_else(|| claim::default_state_file(&scope)),
    )
    .context("--state-file")?;
    // Arm PSI before anything else changes state, so a missing --psi-file fails cleanly; the
    // scope's own pressure file, missing or read-only, only means polling (said once).
    let trigger = match (&args.psi_file, args.no_psi) {
        (_, true) => None,
        (Some(path), false) => Some(PsiTrigger::arm(
            path,
            config.sampling.psi_stall,
            config.sampling.psi_window,
        )?),
        (None, false) => PsiTrigger::arm_or_poll(
            &scope.pressure_file(proc_root),
            config.sampling.psi_stall,
            config.sampling.psi_window,
        ),
    };
    // Held until the end of this function, after the engine has resumed what it holds.
    let (state_file, _claim) = claim::claim(&scope, &state_path, args.dry_run)?;
    let signals = SignalFd::block_termination().context("blocking SIGINT/SIGTERM")?;
    claim::recover_at_start(&scope, state_file.as_ref(), proc_root, args.dry_run);
    // A dry run opens no socket: it must not take an armed guard's.
    let mut control = if args.dry_run {
        None
    } else {
        let path = control::socket_path(&state_path);
        match control::Server::bind(&path, rustix::process::Uid::ROOT) {
            Ok(server) => {
                log::info!("control socket {}", path.display());
                Some(server)
            }
            Err(err) => {
                log::warn!(
                    "control socket {}: {err}; `memtrace guard status` will not reach this guard",
                    path.display()
                );
                None
            }
        }
    };
    // By default nothing on the page-fault path: the rare-event programs, and the scope's
    // processes read from /proc when a round needs them (the /proc source alone where eBPF
    // cannot load).
    let (members, oom) = match &scope {
        Scope::Machine => (Members::All, OomSource::Machine),
        Scope::Cgroup { path, version } => (
            Members::Cgroup(path.clone()),
            OomSource::Cgroup {
                dir: path.clone(),
                version: *version,
            },
        ),
    };
    let source = Source::start(
        TracerOptions {
            programs: if args.per_event {
                Programs::PerEvent
            } else {
                Programs::RareEvents
            },
            // The kernel's BTF is parsed in a helper process: not part of our (mlocked) peak.
            load: Load::Helper,
            ..TracerOptions::default()
        },
        args.require_ebpf,
        proc_root,
        members,
        oom,
    )?
    // Every process of the scope is read at every round near pressure, and no peak is used.
    .sizes_only();
    let mut sampler = Sampler::new(
        source,
        crate::collect::gpu::open_default(),
        proc_root,
        config.sampling.growth_window.as_secs_f64(),
    )
    .context("seeding the tracer from /proc")?;
    // Only the per-event source joins /proc identities (the others read /proc themselves).
    sampler.set_ident_max_age(Duration::from_secs(10));
    for line in protect::protect_self(args.dry_run)
        .into_iter()
        .chain(protect::protect_sshd(
            proc_root,
            config.protect.sshd_oom_score_adj,
            args.dry_run,
        ))
    {
        log::info!("{line}");
    }
    let shared = Arc::new(Mutex::new(String::new()));
    if let Some(addr) = args.metrics {
        let bound = metrics::serve(addr, Arc::clone(&shared))
            .with_context(|| format!("--metrics {addr}"))?;
        log::info!("metrics at http://{bound}/metrics");
    }
    // Read every round: kept open (no path lookup, open and close per round).
    let mut scope_files = scope.open_files(proc_root)?;
    log::info!(
        "guarding {} ({}); thresholds warn {} %, reclaim {} %, suspend {} %, kill {} % ({}), resume below {} %",
        selected.describe(scope_files.usage().ok().as_ref()),
        if args.dry_run {
            "dry run: nothing will be sent"
        } else {
            "armed"
        },
        config.thresholds.warn,
        config.thresholds.reclaim,
        config.thresholds.suspend,
        config.thresholds.kill,
        if config.actions.kill {
            "allowed"
        } else {
            "not allowed"
        },
        config.thresholds.resume,
    );
    let usage_events = if args.no_usage_events {
        None
    } else {
        arm_usage_events(&scope, &mut scope_files, &config)
    };
    let mut pressure = procfs::OpenFile::open(&scope.pressure_file(proc_root)).ok();
    let scope_text = scope.describe();
    let notifier = notify::Notifier::start(
        if args.dry_run {
            notify::Settings::default()
        } else {
            config.notify.clone()
        },
        proc_root,
    );
    let mut engine = Engine::new(
        config,
        scope.clone(),
        proc_root,
        if args.dry_run { None } else { state_file },
        args.dry_run,
    );
    let started = std::time::Instant::now();
    // Idle rounds read only the scope's usage; per-process data is refreshed when needed.
    let mut snapshot = sampler.sample()?;
    let mut last_processes = std::time::Instant::now();
    let mut gpu_sample = sampler.gpu_sample().clone();
    let mut scope_pids = scope.pids()?;
    let mut stalls = limit_stalls::StallMeter::for_scope(&scope, proc_root);
    let mut stall_note = limit_stalls::StallNote::default();
    loop {
        let mut interval = engine.next_interval();
        if stalls.wants_reading(std::time::Instant::now()) {
            interval = interval.min(limit_stalls::MIN_SPAN);
        }
        let woke = wait(&signals, trigger.as_ref(), usage_events.as_ref(), interval)?;
        if woke.terminate {
            log::info!("terminating: resuming anything suspended");
            break;
        }
        if exit_after.is_some_and(|limit| started.elapsed() >= limit) {
            break;
        }
        let usage = scope_files.usage()?;
        // Idle rounds read no process with the rare-event source; per-event counting reads
        // its maps now and then to keep growth rates warm.
        let near = engine.wants_processes(usage.percent(), false)
            || (args.per_event
                && last_processes.elapsed() >= engine.config().sampling.processes_idle);
        // PSI averages matter only near pressure: the armed trigger reports stalls by itself.
        // Either way, stalls of cgroups at their own limits are not the scope's.
        let now = std::time::Instant::now();
        let mut psi = None;
        let mut psi_triggered = false;
        if near || woke.psi || stalls.wants_reading(now) {
            if let Some(read) = pressure
                .as_mut()
                .and_then(|file| file.text().ok())
                .and_then(procfs::parse_psi)
            {
                let verdict = stalls.judge(&read, usage.limit_bytes, now);
                psi_triggered = stall_note.triggered(&verdict, woke.psi);
                psi = verdict.counts().then_some(read);
            } else {
                psi_triggered = woke.psi;
            }
        }
        let fresh = near || psi_triggered;
        let psi = psi.filter(|_| fresh);
        if fresh {
            // GPUs are sampled faster while the guard is above ok.
            sampler.set_gpu_every(if engine.state().level >= level::Level::Warn {
                crate::collect::gpu::SAMPLE_EVERY_UNDER_PRESSURE
            } else {
                crate::collect::gpu::SAMPLE_EVERY
            });
            snapshot = sampler.sample()?;
            last_processes = std::time::Instant::now();
            gpu_sample = sampler.gpu_sample().clone();
            scope_pids = scope.pids()?;
        }
        for decision in engine.tick(
            usage,
            psi.as_ref(),
            psi_triggered,
            &snapshot,
            scope_pids.as_ref(),
            Some(&gpu_sample),
        ) {
            log_decision(&decision);
            notifier.send_for(&decision);
        }
        if let Some(server) = &mut control {
            let mut by_hand = Vec::new();
            server.serve(&mut |request| engine.by_hand(request, &scope_text, &mut by_hand));
            for decision in &by_hand {
                log_decision(decision);
                notifier.send_for(decision);
            }
        }
        if args.metrics.is_some()
            && let Ok(mut text) = shared.lock()
        {
            *text = metrics::render(engine.state(), &snapshot, 10);
        }
    }
    for line in engine.resume_all() {
        log::info!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs one decision: level changes, warnings and waits as warnings, actions as errors.
fn log_decision(decision: &engine::Decision) {
    let line = format!(
        "{} [{}] {}{}{}",
        decision.action,
        decision.level,
        decision.reason,
        if decision.pids.is_empty() {
            String::new()
        } else {
            format!(" | pids {:?}", decision.pids)
        },
        if decision.detail.is_empty() {
            String::new()
        } else {
            format!(" | {}", decision.detail.join(" | "))
        },
    );
    if decision.action.reports() {
        log::warn!("{line}");
    } else {
        log::error!("{line}");
    }
}

/// Why poll() returned.
#[derive(Debug, Default)]
struct Woke {
    terminate: bool,
    psi: bool,
}

/// On a v1 cgroup, eventfd wake-ups when raw usage crosses the staging band below warn (see
/// [`engine::staging`]), warn and suspend (raw usage counts the page cache too, so it crosses
/// no later than "used" does). `None` elsewhere.
fn arm_usage_events(
    scope: &Scope,
    files: &mut scope::ScopeFiles,
    config: &GuardConfig,
) -> Option<usage_events::UsageEvents> {
    let Scope::Cgroup {
        path,
        version: crate::host::cgroup::Version::V1,
    } = scope
    else {
        return None;
    };
    let limit = files.usage().ok()?.limit_bytes as f64;
    let thresholds = [
        config.thresholds.warn - engine::staging::NEAR_WARN_POINTS,
        config.thresholds.warn,
        config.thresholds.suspend,
    ]
    .map(|percent| (limit * percent.max(0.0) / 100.0) as u64);
    match usage_events::UsageEvents::arm_v1(path, &thresholds) {
        Ok(events) => Some(events),
        Err(err) => {
            log::warn!(
                "usage threshold events on {}: {err}; polling only",
                path.display()
            );
            None
        }
    }
}

fn wait(
    signals: &SignalFd,
    trigger: Option<&PsiTrigger>,
    usage: Option<&usage_events::UsageEvents>,
    timeout: Duration,
) -> anyhow::Result<Woke> {
    // The signalfd first, then whichever of the trigger and the usage eventfd exist; the
    // unused slots repeat the signalfd and are left out of the call.
    let signal_fd = PollFd::new(&signals.fd, PollFlags::IN);
    let mut fds = [signal_fd.clone(), signal_fd.clone(), signal_fd];
    let mut polled = 1;
    let trigger_slot = trigger.map(|trigger| {
        fds[polled] = PollFd::from_borrowed_fd(trigger.fd(), PollFlags::PRI);
        polled += 1;
        polled - 1
    });
    let usage_slot = usage.map(|usage| {
        fds[polled] = PollFd::from_borrowed_fd(usage.fd(), PollFlags::IN);
        polled += 1;
        polled - 1
    });
    // Whole milliseconds, capped at i32::MAX (the limit of poll(2)'s millisecond timeout).
    let timeout_ms = i64::try_from(timeout.as_millis())
        .unwrap_or(i64::MAX)
        .min(i64::from(i32::MAX));
    let timeout = Timespec {
        tv_sec: timeout_ms / 1000,
        tv_nsec: (timeout_ms % 1000) * 1_000_000,
    };
    match poll(&mut fds[..polled], Some(&timeout)) {
        Ok(_) => {}
        Err(Errno::INTR) => return Ok(Woke::default()),
        Err(errno) => return Err(std::io::Error::from(errno)).context("poll"),
    }
    let revents = |slot: Option<usize>| slot.map_or(PollFlags::empty(), |i| fds[i].revents());
    if revents(trigger_slot).contains(PollFlags::ERR) {
        anyhow::bail!("the PSI trigger failed (pressure file gone?)");
    }
    if revents(usage_slot).contains(PollFlags::IN)
        && let Some(events) = usage
    {
        events.drain();
    }
    Ok(Woke {
        terminate: fds[0].revents().contains(PollFlags::IN),
        psi: revents(trigger_slot).contains(PollFlags::PRI),
    })
}

/// SIGINT and SIGTERM, blocked and delivered through a file descriptor the loop polls.
#[derive(Debug)]
struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    // rustix has no signalfd and no sigset_t: these stay libc calls.
    fn block_termination() -> std::io::Result<Self> {
        // SAFETY: sigset_t is plain data, valid all-zero; sigemptyset/sigaddset initialise it.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: mask is a valid, writable sigset_t and SIGINT/SIGTERM are valid signal
        // numbers; the calls only write the mask.
        unsafe {
            libc::sigemptyset(&mut mask);
            libc::sigaddset(&mut mask, libc::SIGINT);
            libc::sigaddset(&mut mask, libc::SIGTERM);
        }
        // SAFETY: mask is initialised and outlives the call; a null old-mask pointer is allowed
        // (the old mask is not needed).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new descriptor; mask is initialised and outlives the call.
        let fd = unsafe { libc::signalfd(-1, &mask, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by a successful signalfd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }
}
