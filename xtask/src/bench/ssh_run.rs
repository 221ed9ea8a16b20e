//! One run of `bench ssh`: boot a fresh guest, set up the site (the whole guest, or the
//! container: see [`super::ssh_site`]), start the contender, a bystander, a tmpfs ballast and an
//! idle login shell, measure `ssh true` from the host every 2 s against the site's sshd (each
//! probe capped at 40 s, started on time whatever the earlier ones do), start the hog, free the
//! ballast later, stop the hog, and read back what happened (guest journal, the serial console
//! for the kernel's OOM kills, the container cgroup's `memory.events`, sshd's PID, the
//! bystander's state, whether the login shell's connection survived, and when the guard's
//! notice reached that shell's terminal). A guest that stops
//! answering is a result (timeouts, an unreadable journal), not a failed run.
use std::{
    io::Write as _,
    process::Stdio,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    bench::{
        ssh_container,
        ssh_events::{self, Action},
        ssh_guest::{Contender, JOURNAL, SCRIPTS, Scenario},
        ssh_site::{self, ContainerGuard, Site},
        ssh_terminal::{CLOCK_COMMAND, HELD_NOTICE, TerminalLog},
        stats::{median, quantile},
    },
    vm::{
        guest::{Guest, Owned, Probe},
        image::Image,
    },
};

/// Interval between probe starts.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A probe still running after this counts as a timeout.
pub const PROBE_CAP: Duration = Duration::from_secs(40);
const IDLE: Duration = Duration::from_secs(14);
pub(super) const CMD_CAP: Duration = Duration::from_secs(90);
/// Seconds after the planned stop when the guest's systemd ends the hog itself.
const HOG_GRACE_S: u64 = 15;
/// Tries to stop the hog at the end (each up to [`CMD_CAP`]).
const STOP_TRIES: usize = 3;

/// What one run measured.
#[derive(Debug)]
pub struct RunRecord {
    /// Idle `ssh true` latencies before the hog (s).
    pub idle: Vec<f64>,
    /// Probes from the hog's start to its planned stop: (s after the hog's start, outcome).
    pub loaded: Vec<(f64, Probe)>,
    /// Guest time (epoch s) when the hog started.
    pub hog_start: f64,
    /// Guest time when the ballast was freed (`None`: no ballast, or the command failed).
    pub freed_at: Option<f64>,
    /// Guest time when the measured window ended (the planned stop of the hog).
    pub window_end: f64,
    /// sshd's main PID changed.
    pub sshd_restarted: bool,
    /// The idle login shell's connection closed.
    pub shell_dropped: bool,
    /// Guest time when the guard's notice of a suspension had reached the idle login shell's
    /// terminal (through sshd and the ssh client, as its user sees it); `None`: it never did.
    pub notice_at: Option<f64>,
    /// CPU time the contender's unit used from just before the idle probes to the end, s
    /// (emulated: several times what it would be on hardware).
    pub contender_cpu_s: Option<f64>,
    /// The bystander's state at the end (`active` expected).
    pub bystander: String,
    /// The hog unit's state right before it was stopped (and its cgroup's freeze flag).
    pub hog_state: String,
    /// The journal lines read back.
    pub journal: Vec<String>,
    /// The container cgroup's `memory.events` at the end (`None`: the machine, or unreadable).
    pub cgroup_events: Option<String>,
    /// The first lines memtrace logged, when it ran in the container (printed with the run).
    pub contender_log: Vec<String>,
    /// The container's processes right before the hog started (`COUNT COMM, …`), checked.
    pub members: Option<String>,
    /// Host commands that failed or timed out during the run.
    pub notes: Vec<String>,
}

/// The guest's boot time in epoch seconds from `date +%s.%N` and `/proc/uptime` lines.
fn boot_epoch(text: &str) -> anyhow::Result<f64> {
    let mut values = text.lines().filter_map(|l| l.trim().parse::<f64>().ok());
    match (values.next(), values.next()) {
        (Some(now), Some(uptime)) => Ok(now - uptime),
        _ => bail!("no guest time and uptime in {text:?}"),
    }
}

impl RunRecord {
    /// This run's loaded latencies, a timeout counting as the cap (failures left out).
    pub fn loaded_latencies(&self) -> Vec<f64> {
        self.loaded
            .iter()
            .filter_map(|(_, p)| match p {
                Probe::Ok(s) => Some(*s),
                Probe::TimedOut => Some(PROBE_CAP.as_secs_f64()),
                Probe::Failed(_) => None,
            })
            .collect()
    }

    /// This run's loaded p99 over its idle median (the target is ≤ 1.5 in every run).
    pub fn p99_over_idle(&self) -> Option<f64> {
        let p99 = quantile(&self.loaded_latencies(), 0.99)?;
        median(&self.idle).map(|idle| p99 / idle)
    }

    /// The loaded probes as `+OFFSET:LATENCY` (`TO`: timed out, `F`: failed), for the log.
    pub fn probe_series(&self) -> String {
        let parts: Vec<String> = self
            .loaded
            .iter()
            .map(|(at, p)| match p {
                Probe::Ok(s) => format!("+{at:.0}:{s:.1}"),
                Probe::Failed(_) => format!("+{at:.0}:F"),
                Probe::TimedOut => format!("+{at:.0}:TO"),
            })
            .collect();
        parts.join(" ")
    }

    /// Kernel OOM kills in this run: those in the kernel log, or the container cgroup's
    /// `oom_kill` count if that is higher.
    pub fn oom_kills(&self, actions: &[Action]) -> usize {
        let cgroup = self
            .cgroup_events
            .as_deref()
            .and_then(ssh_site::oom_kill_count)
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        ssh_events::oom_kills(actions).max(cgroup)
    }

    /// Seconds from memtrace's first suspension to its notice on the idle login shell's
    /// terminal (`None`: no suspension, or no notice).
    pub fn notice_delay(&self, actions: &[Action]) -> Option<f64> {
        let held = actions
            .iter()
            .find(|a| a.actor == ssh_events::Actor::Memtrace && a.what == "suspend")?;
        Some(self.notice_at? - held.at)
    }

    /// Whether, after the ballast was freed and before the window ended, memtrace resumed the
    /// hog or said why it keeps it held (`wait`/`keep`: the headroom would not last it), not
    /// counting the clean-up resume after the test killed the hog.
    pub fn released_after_free(&self, actions: &[Action]) -> bool {
        self.freed_at.is_some_and(|t| {
            actions
                .iter()
                .any(|a| !a.acts() && a.comm == "hog" && a.at >= t - 1.0 && a.at < self.window_end)
        })
    }
}

fn guest_time(text: &str) -> anyhow::Result<f64> {
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("no guest time in {text:?}"))
}

/// Starts the contender; for memtrace waits until it says it is guarding, or fails with its
/// journal verbatim.
pub(super) fn start_contender(vm: &Guest, site: Site, contender: Contender) -> anyhow::Result<()> {
    let start = site.start_contender(contender);
    if start.is_empty() {
        return Ok(());
    }
    let started = vm.ssh_output(&start, CMD_CAP);
    if contender != Contender::Memtrace {
        return started.map(|_| ());
    }
    if let Err(err) = started {
        let log = vm.ssh_output(site.memtrace_log(), CMD_CAP)?;
        bail!("{err:#}; memtrace's journal:\n{log}");
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(180) {
        let log = vm.ssh_output(site.memtrace_log(), CMD_CAP)?;
        if log.contains("guarding ") {
            return Ok(());
        }
        if log.contains("memtrace: error") || log.contains("Failed with result") {
            bail!("memtrace guard failed to start in the guest; its journal:\n{log}");
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    let log = vm.ssh_output(site.memtrace_log(), CMD_CAP)?;
    bail!("memtrace guard did not say `guarding` within 180 s; its journal:\n{log}")
}

/// CPU time the contender has used so far (s), if it runs as its own process.
fn contender_cpu_s(
    vm: &Guest,
    site: Site,
    contender: Contender,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let command = site.contender_cpu(contender)?;
    try_ssh(vm, &command, notes).and_then(|out| out.trim().parse::<f64>().ok())
}

/// Starts the site's infrastructure; for the container, waits until its sshd answers.
fn setup(vm: &Guest, site: Site) -> anyhow::Result<()> {
    for (name, text, executable) in site.files() {
        let mode = if executable { 0o755 } else { 0o644 };
        vm.ssh_input(
            &format!("cat > /root/{name} && chmod {mode:o} /root/{name}"),
            text.as_bytes(),
            CMD_CAP,
        )?;
    }
    let Some(command) = site.setup() else {
        return Ok(());
    };
    vm.ssh_output(&command, CMD_CAP)?;
    let start = Instant::now();
    loop {
        match vm.probe_to(site.sshd(), Duration::from_secs(20)) {
            Probe::Ok(_) => return Ok(()),
            probe if start.elapsed() > Duration::from_secs(60) => {
                let log = vm.ssh_output("journalctl -b -u container --no-pager -o cat", CMD_CAP)?;
                bail!(
                    "the container's sshd did not answer within 60 s ({probe:?}); its journal:\n{log}"
                )
            }
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// Runs `remote`, noting (not failing on) an error: under pressure any command may time out.
fn try_ssh(vm: &Guest, remote: &str, notes: &mut Vec<String>) -> Option<String> {
    match vm.ssh_output(remote, CMD_CAP) {
        Ok(out) => Some(out),
        Err(err) => {
            notes.push(format!("{err:#}"));
            None
        }
    }
}

/// Sleeps until `at`.
fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// One run on a freshly booted guest.
pub fn run(
    image: &Image,
    contender: Contender,
    scenario: Scenario,
    site: Site,
) -> anyhow::Result<RunRecord> {
    let vm = Guest::boot(image, Duration::from_secs(300))?;
    let record = measure(&vm, contender, scenario, site);
    match record {
        Ok(record) => {
            vm.shutdown(Duration::from_secs(30))?;
            Ok(record)
        }
        Err(err) => Err(err.context(format!("run directory {}", vm.dir().display()))),
    }
}

fn measure(
    vm: &Guest,
    contender: Contender,
    scenario: Scenario,
    site: Site,
) -> anyhow::Result<RunRecord> {
    for (name, text) in SCRIPTS {
        vm.ssh_input(&format!("cat > /root/{name}"), text.as_bytes(), CMD_CAP)?;
    }
    let clock = vm.ssh_output("date +%s.%N; cut -d' ' -f1 /proc/uptime", CMD_CAP)?;
    let boot_epoch = boot_epoch(&clock)?;
    setup(vm, site)?;
    let sshd_before = vm.ssh_output(site.sshd_pid(), CMD_CAP)?;
    start_contender(vm, site, contender)?;
    vm.ssh_output(&site.start_bystander(), CMD_CAP)?;
    if scenario.ballast() {
        vm.ssh_output(&site.write_ballast(), CMD_CAP)?;
    }
    let mut notes = Vec::new();
    let mut shell = Owned(
        vm.ssh_to(site.sshd(), &["-tt"], "exec bash --login -i")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the idle login shell")?,
    );
    let terminal = shell.0.stdout.take().map(TerminalLog::follow);
    if let Some(stdin) = shell.0.stdin.as_mut() {
        let _ = stdin.write_all(CLOCK_COMMAND);
    }
    let cpu_before = contender_cpu_s(vm, site, contender, &mut notes);
    let stop = AtomicBool::new(false);
    let probes: Mutex<Vec<(Instant, Probe)>> = Mutex::new(Vec::new());
    let (free_after, stop_after) = scenario.timeline();
    let timeline = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                s.spawn(|| {
                    let started = Instant::now();
                    let probe = vm.probe_to(site.sshd(), PROBE_CAP);
                    if let Ok(mut list) = probes.lock() {
                        list.push((started, probe));
                    }
                });
                sleep_until(at + PROBE_EVERY);
            }
        });
        let result = drive(vm, scenario, site, &stop, &mut notes);
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    let shell_dropped = shell.exited();
    if let Some(stdin) = shell.0.stdin.as_mut() {
        let _ = stdin.write_all(b"exit\n");
    }
    let sshd_after = try_ssh(vm, site.sshd_pid(), &mut notes);
    let contender_cpu_s = contender_cpu_s(vm, site, contender, &mut notes)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let bystander = try_ssh(vm, &site.bystander_state(), &mut notes)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cgroup_events = site
        .memory_events()
        .and_then(|command| try_ssh(vm, &command, &mut notes));
    let contender_log = match (site, contender) {
        (Site::Container(_), Contender::Memtrace) => {
            try_ssh(vm, CONTAINER_MEMTRACE_LOG, &mut notes)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }
        _ => Vec::new(),
    };
    let mut journal: Vec<String> = try_ssh(vm, JOURNAL, &mut notes)
        .unwrap_or_else(|| "(the guest's journal could not be read)".to_owned())
        .lines()
        .map(str::to_owned)
        .collect();
    let console = std::fs::read_to_string(vm.dir().join("console.log")).unwrap_or_default();
    journal.extend(ssh_events::console_kills(&console, boot_epoch));
    let list = probes.into_inner().unwrap_or_default();
    let idle = list
        .iter()
        .filter(|(at, _)| *at < timeline.h0)
        .filter_map(|(_, p)| if let Probe::Ok(s) = p { Some(*s) } else { None })
        .collect();
    let loaded = list
        .iter()
        .filter(|(at, _)| *at >= timeline.h0)
        .map(|(at, p)| (at.duration_since(timeline.h0).as_secs_f64(), *p))
        .collect();
    let notice_at = terminal.as_ref().and_then(|t| t.guest_time_of(HELD_NOTICE));
    if terminal.as_ref().is_some_and(|t| t.clock().is_none()) {
        notes.push("the login shell never printed the guest's clock".to_owned());
    }
    Ok(RunRecord {
        idle,
        loaded,
        hog_start: timeline.hog_start,
        freed_at: timeline.freed_at,
        window_end: timeline.hog_start + (free_after + stop_after) as f64,
        contender_cpu_s,
        sshd_restarted: sshd_after.is_some_and(|a| a.trim() != sshd_before.trim()),
        shell_dropped,
        notice_at,
        bystander,
        hog_state: timeline.hog_state,
        journal,
        cgroup_events,
        contender_log,
        members: timeline.members,
        notes,
    })
}

/// memtrace's first log lines in the container (how it started: mode, scope, what it could not
/// do there).
const CONTAINER_MEMTRACE_LOG: &str =
    "journalctl -b -t memtrace -o short-unix --no-pager | head -n 25 | cut -c1-400";

/// Lists the container's processes and fails unless they are as a Docker container's would
/// be; returns the list, summarised.
fn check_container(vm: &Guest, guard: ContainerGuard) -> anyhow::Result<String> {
    let members = ssh_container::parse(&vm.ssh_output(&ssh_container::list_command(), CMD_CAP)?);
    let found = ssh_container::violations(&members, guard);
    if !found.is_empty() {
        bail!(
            "the container is not what the table says: {}",
            found.join("; ")
        );
    }
    Ok(ssh_container::summary(&members))
}

/// What [`drive`] saw.
struct Timeline {
    /// When the hog started (host clock).
    h0: Instant,
    /// The same, guest epoch s.
    hog_start: f64,
    /// When the ballast was freed (guest epoch s).
    freed_at: Option<f64>,
    /// The hog's state before it was stopped.
    hog_state: String,
    /// The container's processes before the hog started.
    members: Option<String>,
}

/// The scenario's timeline, run while the prober works: idle, hog, free the ballast, stop.
fn drive(
    vm: &Guest,
    scenario: Scenario,
    site: Site,
    stop_probes: &AtomicBool,
    notes: &mut Vec<String>,
) -> anyhow::Result<Timeline> {
    std::thread::sleep(IDLE);
    let members = match site {
        Site::Machine => None,
        Site::Container(guard) => Some(check_container(vm, guard)?),
    };
    let (free_after, stop_after) = scenario.timeline();
    let h0 = Instant::now();
    // The guest ends the hog on its own a little after the planned stop, in case a thrashing
    // guest no longer lets the stop command in.
    let out = vm.ssh_output(
        &site.start_hog(
            scenario.hog_command(),
            free_after + stop_after + HOG_GRACE_S,
        ),
        CMD_CAP,
    )?;
    let hog_start = guest_time(&out)?;
    sleep_until(h0 + Duration::from_secs(free_after));
    let freed_at = if scenario.ballast() {
        try_ssh(vm, "rm -f /dev/shm/ballast && date +%s.%N", notes)
            .and_then(|out| guest_time(&out).ok())
    } else {
        None
    };
    sleep_until(h0 + Duration::from_secs(free_after + stop_after));
    // The measured window ends here, the same for every contender, however long the guest
    // then takes to let the stop command in.
    stop_probes.store(true, Ordering::Relaxed);
    let hog_state = try_ssh(vm, &site.hog_state(), notes).unwrap_or_else(|| "unknown".to_owned());
    // A thrashing guest may not answer at once: the hog must be gone before the journal is
    // read, so try a few times (bounded).
    for _ in 0..STOP_TRIES {
        if try_ssh(vm, site.stop_hog(), notes).is_some() {
            break;
        }
    }
    Ok(Timeline {
        h0,
        hog_start,
        freed_at,
        hog_state: hog_state.trim().to_owned(),
        members,
    })
}
