//! The guard's decision engine, in three parts: the engine reads this round's inputs (the
//! scope's growth, the sshd stall and GPU signals, the victim candidates re-read from /proc)
//! into plain values; the pure [`policy`] decides, returning typed intents with structured
//! reasons; the [`effects`] carry them out (reclaim, freeze or SIGSTOP, resume, kill, the state
//! file) and return one [`Decision`] per intent with a typed [`Outcome`], the value the log,
//! the trace's guard events, the notices and the metrics all take. Driven by `memtrace guard`
//! and embeddable (`memtrace run` guards its own tree). Whether a held tree will hold once
//! resumed is [`resume`]'s; whether the scope grew since the latest hold `hold_mark`'s; what
//! the user asks over the control socket `by_hand`'s; the GPU reasons [`inputs`]'. What a
//! decision did and how it went, [`Act`] and [`Outcome`], are the trace's types
//! (`record::trace::decision`); how many of each the engine took, [`DecisionCounts`]. Near
//! warn the likely victim is moved ahead into a thawed cgroup of its own ([`staging`]), so that
//! holding it is one write.
mod by_hand;
mod decision_counts;
mod effects;
mod growth;
mod hold_mark;
mod inputs;
pub mod policy;
pub mod resume;
#[cfg(test)]
mod scenarios;
pub mod staging;
#[cfg(test)]
mod tests;
mod why;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Instant,
};

use serde::Serialize;

pub use self::decision_counts::DecisionCounts;
use self::{
    effects::Effects,
    growth::GrowthWindow,
    inputs::gpu_reasons,
    policy::{Inputs, Policy},
};
pub use crate::record::trace::decision::{Act, Outcome};
use crate::{
    collect::{
        gpu::GpuSample,
        model::{ProcSample, Snapshot},
        scope::{Scope, Usage},
    },
    guard::{
        config::GuardConfig,
        level::{Level, Signals, time_to_exhaustion},
        state::StateFile,
        victim::{Candidate, Extra, Protection, rank},
    },
    host::{procfs, sshd::SshdCache},
};

/// Something the guard did (or, in a dry run, would do).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Level at the time.
    pub level: Level,
    /// What it did.
    pub action: Act,
    /// Why, one line.
    pub reason: String,
    /// Processes acted on.
    pub pids: Vec<u32>,
    /// What happened, one entry per step.
    pub detail: Vec<String>,
    /// The held tree acted on (suspend, resume, keep, kill), for the notices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeNote>,
    /// How it went.
    pub outcome: Outcome,
}

/// A bare suspend-level decision for tests (no reason, pids, detail or tree).
#[cfg(test)]
pub(crate) fn test_decision(action: Act, outcome: Outcome) -> Decision {
    Decision {
        level: Level::Suspend,
        action,
        reason: String::new(),
        pids: Vec::new(),
        detail: Vec::new(),
        tree: None,
        outcome,
    }
}

/// The tree a decision was about, as the notices name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeNote {
    /// Its id: the root's pid.
    pub id: u32,
    /// The root's command name.
    pub comm: String,
    /// What it holds, bytes.
    pub held_bytes: u64,
    /// How it is held (`freeze`, `freezer`, `stop`, `dry run`).
    pub how: &'static str,
}

/// How many times each action was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ActionCounts {
    /// Reclaim passes.
    pub reclaim: u64,
    /// Trees suspended.
    pub suspend: u64,
    /// Trees resumed.
    pub resume: u64,
    /// Trees killed.
    pub kill: u64,
}

/// What the engine knows after a tick (for metrics and logs).
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineState {
    /// Current level.
    pub level: Level,
    /// Scope usage.
    pub used_bytes: u64,
    /// Scope limit.
    pub limit_bytes: u64,
    /// Used percent.
    pub used_percent: f64,
    /// Scope growth, bytes/s.
    pub growth_bytes_per_s: f64,
    /// Forecast seconds to full.
    pub exhaustion_s: Option<f64>,
    /// Trees held suspended.
    pub suspended: usize,
    /// Action counters.
    pub counts: ActionCounts,
    /// Decisions by action and outcome, since the engine started.
    pub decisions: DecisionCounts,
}

/// What the loop read this round (the engine reads the rest itself).
struct Reading<'a> {
    usage: Usage,
    psi: Option<&'a procfs::Psi>,
    psi_triggered: bool,
    snapshot: &'a Snapshot,
    scope_pids: Option<&'a HashSet<u32>>,
    gpu: Option<&'a GpuSample>,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    effects: Effects,
    growth: GrowthWindow,
    sshd_stalls: HashMap<u32, u64>,
    /// Time of the snapshot the sshd stalls were last compared on (idle rounds reuse one).
    sshd_checked_ms: u64,
    /// Which processes run sshd's executables.
    sshd: SshdCache,
    /// Latest state.
    state: EngineState,
}

impl Engine {
    /// A new engine keeping its suspended set in `state_file` (`None` for a dry run, which
    /// suspends nothing).
    pub fn new(
        config: GuardConfig,
        scope: Scope,
        proc_root: &Path,
        state_file: Option<StateFile>,
        dry_run: bool,
    ) -> Self {
        Self {
            policy: Policy::new(config),
            effects: Effects::new(scope, proc_root, state_file, dry_run),
            growth: GrowthWindow::default(),
            sshd_stalls: HashMap::new(),
            sshd_checked_ms: 0,
            sshd: SshdCache::default(),
            state: EngineState::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        self.policy.config()
    }

    /// What the engine knows after the latest round (for metrics and logs).
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// Resumes everything held (the guard is stopping); the log lines.
    pub fn resume_all(&mut self) -> Vec<String> {
        let lines = self.effects.resume_all();
        self.state.suspended = self.held();
        lines
    }

    /// Sampling interval for the next round: how long the headroom below suspend would last
    /// at the configured fill rate, within the configured bounds ([`crate::guard::pace`]).
    pub fn next_interval(&self) -> std::time::Duration {
        crate::guard::pace::next_interval(
            &self.config().sampling,
            self.config().thresholds.suspend,
            self.state.used_bytes,
            self.state.limit_bytes,
        )
    }

    /// Whether the next round needs fresh per-process data: near or above warn, under PSI
    /// stall, or while holding a tree. Otherwise a round reads only the scope's usage.
    pub fn wants_processes(&self, used_percent: f64, psi_triggered: bool) -> bool {
        used_percent >= self.config().thresholds.warn - staging::NEAR_WARN_POINTS
            || psi_triggered
            || self.state.level >= Level::Warn
            || self.held() > 0
    }

    fn held(&self) -> usize {
        self.effects.held_count()
    }

    /// sshd or ssh login shells (children of sshd) stalled in reclaim since the last tick.
    fn sshd_stalled(&mut self, snapshot: &Snapshot) -> bool {
        self.sshd_checked_ms = snapshot.time_unix_ms;
        let procs = &snapshot.procs;
        let live: HashSet<(u32, u64)> = procs
            .iter()
            .filter(|p| !p.exited)
            .map(|p| (p.pid, p.start_ticks))
            .collect();
        self.sshd.retain(|pid, start| live.contains(&(pid, start)));
        let proc_root = self.effects.proc_root().to_owned();
        let sshd: HashSet<u32> = procs
            .iter()
            .filter(|p| !p.exited && self.sshd.is_sshd(&proc_root, p.pid, p.start_ticks, &p.comm))
            .map(|p| p.pid)
            .collect();
        let mut stalled = false;
        let mut seen = HashMap::new();
        for p in procs
            .iter()
            .filter(|p| sshd.contains(&p.pid) || sshd.contains(&p.ppid))
        {
            if self
                .sshd_stalls
                .get(&p.pid)
                .is_some_and(|&before| p.reclaim_stall_ns > before)
            {
                stalled = true;
            }
            seen.insert(p.pid, p.reclaim_stall_ns);
        }
        self.sshd_stalls = seen;
        stalled
    }

    /// Re-reads `/proc/PID/stat` (and the command line) of the in-scope processes right before
    /// a victim is chosen: the sampler may reuse identities for a while, and a process that
    /// exec'd or renamed itself since must be judged by what it is now. Returns the refreshed
    /// processes, their session ids, and which of them and their parents run sshd; processes
    /// that are gone are dropped.
    fn refreshed(
        &mut self,
        procs: &[ProcSample],
    ) -> (Vec<ProcSample>, HashMap<u32, Extra>, HashSet<u32>) {
        let proc_root = self.effects.proc_root().to_owned();
        let mut fresh = Vec::with_capacity(procs.len());
        let mut extra = HashMap::new();
        for p in procs.iter().filter(|p| !p.exited) {
            let dir = proc_root.join(p.pid.to_string());
            let Some(stat) = procfs::read(&dir.join("stat"))
                .ok()
                .and_then(|t| procfs::parse_pid_stat(&t))
            else {
                continue;
            };
            let mut p = p.clone();
            if *stat.comm != *p.comm || stat.start_ticks != p.start_ticks {
                p.cmdline = std::fs::read(dir.join("cmdline"))
                    .map(|raw| procfs::parse_cmdline(&raw))
                    .unwrap_or_default()
                    .into();
            }
            p.comm = stat.comm.into();
            p.ppid = stat.ppid;
            p.start_ticks = stat.start_ticks;
            extra.insert(
                p.pid,
                Extra {
                    session: stat.session,
                    tty: stat.tty_nr,
                    tpgid: stat.tpgid,
                },
            );
            fresh.push(p);
        }
        // sshd by executable; parents too, as a login shell's sshd may lie outside the scope.
        let mut sshd: HashSet<u32> = fresh
            .iter()
            .filter(|p| self.sshd.is_sshd(&proc_root, p.pid, p.start_ticks, &p.comm))
            .map(|p| p.pid)
            .collect();
        let inside: HashSet<u32> = fresh.iter().map(|p| p.pid).collect();
        let parents_outside: HashSet<u32> = fresh
            .iter()
            .map(|p| p.ppid)
            .filter(|ppid| !inside.contains(ppid))
            .collect();
        sshd.extend(
            parents_outside
                .into_iter()
                .filter(|&ppid| crate::host::sshd::is_sshd(&proc_root, ppid)),
        );
        (fresh, extra, sshd)
    }

    /// The ranked victim candidates among the in-scope processes, re-read from /proc.
    fn candidates(&mut self, in_scope: &[ProcSample]) -> Vec<Candidate> {
        let (fresh, extra, sshd) = self.refreshed(in_scope);
        let protection = Protection {
            guard_pid: self.effects.guard_pid(),
            victims: &self.policy.config().victims,
            sshd: &sshd,
        };
        rank(&fresh, &extra, &protection, &|_| true)
    }

    /// One round, now: read the inputs, decide (the pure [`Policy::decide`]), carry the
    /// intents out.
    pub fn tick(
        &mut self,
        usage: Usage,
        psi: Option<&procfs::Psi>,
        psi_triggered: bool,
        snapshot: &Snapshot,
        scope_pids: Option<&HashSet<u32>>,
        gpu: Option<&GpuSample>,
    ) -> Vec<Decision> {
        self.tick_at(
            Instant::now(),
            Reading {
                usage,
                psi,
                psi_triggered,
                snapshot,
                scope_pids,
                gpu,
            },
        )
    }

    /// One round at `now` (the clock is the caller's: the tests pass made-up times).
    fn tick_at(&mut self, now: Instant, reading: Reading<'_>) -> Vec<Decision> {
        let Reading {
            usage,
            psi,
            psi_triggered,
            snapshot,
            scope_pids,
            gpu,
        } = reading;
        let window = self.config().sampling.growth_window;
        let growth = self.growth.push(now, usage.used_bytes, window);
        let signals = Signals {
            used_percent: usage.percent(),
            psi_some_avg10: psi.map(|p| p.some.avg10),
            psi_full_avg10: psi.map(|p| p.full.avg10),
            psi_triggered,
            exhaustion_s: time_to_exhaustion(usage.used_bytes, usage.limit_bytes, growth),
            sshd_stalled: snapshot.time_unix_ms != self.sshd_checked_ms
                && self.sshd_stalled(snapshot),
            gpu_over: gpu
                .map(|sample| {
                    gpu_reasons(sample, snapshot, self.config().thresholds.gpu_warn_percent)
                })
                .unwrap_or_default(),
        };
        // Built only when the policy needs them: idle rounds allocate nothing per process.
        let candidates = self.policy.wants_candidates(&signals, now).then(|| {
            let in_scope: Vec<ProcSample> = snapshot
                .procs
                .iter()
                .filter(|p| scope_pids.is_none_or(|set| set.contains(&p.pid)))
                .cloned()
                .collect();
            self.candidates(&in_scope)
        });
        let inputs = Inputs {
            usage,
            signals,
            growth_bytes_per_s: growth,
            snapshot,
            scope_pids,
            held: self.effects.held(),
            candidates,
        };
        let intents = self.policy.decide(&inputs, now);
        let staging = self.policy.staging(&inputs, now);
        let level = self.policy.level();
        log::debug!(
            "tick: used {:.1} % ({} of {} bytes), growth {:.0} B/s, psi {:?}, level {level}, \
             held {}, {} intent(s)",
            inputs.signals.used_percent,
            usage.used_bytes,
            usage.limit_bytes,
            growth,
            inputs.signals.psi_some_avg10,
            self.held(),
            intents.len(),
        );
        let exhaustion_s = inputs.signals.exhaustion_s;
        let used_percent = inputs.signals.used_percent;
        let actions = &self.policy.config().actions;
        let mut out = Vec::with_capacity(intents.len());
        let held_before = self.held();
        for intent in intents {
            out.extend(self.effects.carry(intent, level, &usage, actions));
        }
        if let Some(staging) = staging {
            for line in self.effects.stage(staging) {
                log::info!("{line}");
            }
        }
        if self.held() > held_before {
            // The growth so far was (mostly) the tree just held: the forecast starts again
            // from the first settled reading.
            self.growth.restart(now + policy::HOLD_SETTLE);
        }
        let mut decisions = std::mem::take(&mut self.state.decisions);
        decisions.count_all(&out);
        self.state = EngineState {
            level,
            used_bytes: usage.used_bytes,
            limit_bytes: usage.limit_bytes,
            used_percent,
            growth_bytes_per_s: growth,
            exhaustion_s,
            suspended: self.held(),
            counts: self.effects.counts.clone(),
            decisions,
        };
        out
    }
}
