//! The guard's decision engine: one `tick` per sample turns the signals into a level, walks
//! the ladder (warn → reclaim → suspend → kill, resume with hysteresis) and acts, returning one
//! [`Decision`] per thing it did or would do, with its reasons, candidates and scores. It is
//! driven by `memtrace guard` and embeddable (e.g. `memtrace run` guards its own tree).
//! The rungs themselves live in [`actions`]; the inputs derived from GPU and cgroup state in
//! [`inputs`]; whether a held tree will hold once resumed in [`resume`]; what the user asks
//! over the control socket in `by_hand`; what a decision did, typed, in [`Act`].
use crate::host::units::{mib, signed_mib};
mod act;
mod actions;
mod by_hand;
mod inputs;
pub mod resume;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;

pub use self::act::Act;
use self::inputs::gpu_reasons;
use crate::{
    collect::{
        gpu::GpuSample,
        model::{ProcSample, Snapshot},
        scope::{Scope, Usage},
    },
    guard::{
        config::GuardConfig,
        level::{Level, Signals, assess, time_to_exhaustion},
        reclaim::Reclaimer,
        state::StateFile,
        suspend::SuspendedSet,
        victim::{Candidate, Extra, Protection, rank},
    },
    host::{pidfd::ProcRef, procfs, sshd::SshdCache},
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
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    config: GuardConfig,
    scope: Scope,
    proc_root: PathBuf,
    dry_run: bool,
    guard_pid: u32,
    /// Trees held suspended.
    pub suspended: SuspendedSet,
    /// Dry run: roots we would hold.
    dry_held: Vec<Candidate>,
    last_reclaim: Option<Instant>,
    /// The reclaim rung, remembering the steps that cannot work here.
    reclaimer: Reclaimer,
    below_resume_since: Option<Instant>,
    /// How many times the guard resumed each tree (by root).
    resumes: HashMap<ProcRef, u32>,
    /// Held trees (by root) whose `wait` or `keep` was already logged.
    told: HashSet<ProcRef>,
    /// Held trees (by root) the user asked to keep held (`memtrace guard keep`).
    kept: HashSet<ProcRef>,
    kill_level_since: Option<Instant>,
    history: VecDeque<(Instant, u64)>,
    sshd_stalls: HashMap<u32, u64>,
    /// Time of the snapshot the sshd stalls were last compared on (idle rounds reuse one).
    sshd_checked_ms: u64,
    /// Which processes run sshd's executables.
    sshd: SshdCache,
    /// Latest state.
    pub state: EngineState,
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
            config,
            scope,
            proc_root: proc_root.to_owned(),
            dry_run,
            guard_pid: std::process::id(),
            suspended: SuspendedSet::new(state_file, proc_root),
            dry_held: Vec::new(),
            last_reclaim: None,
            reclaimer: Reclaimer::default(),
            below_resume_since: None,
            resumes: HashMap::new(),
            told: HashSet::new(),
            kept: HashSet::new(),
            kill_level_since: None,
            history: VecDeque::with_capacity(64),
            sshd_stalls: HashMap::new(),
            sshd_checked_ms: 0,
            sshd: SshdCache::default(),
            state: EngineState::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Sampling interval for the next round: idle well below warn, pressure at and above it,
    /// linear in the ten points below warn.
    pub fn next_interval(&self) -> std::time::Duration {
        let s = &self.config.sampling;
        let warn = self.config.thresholds.warn;
        let used = self.state.used_percent;
        if used >= warn || self.state.level >= Level::Warn || self.held() > 0 {
            return s.interval_pressure;
        }
        let fraction = ((warn - used) / 10.0).clamp(0.0, 1.0);
        s.interval_pressure + (s.interval_idle - s.interval_pressure).mul_f64(fraction)
    }

    /// Whether the next round needs fresh per-process data: near or above warn, under PSI
    /// stall, or while holding a tree. Otherwise a round reads only the scope's usage.
    pub fn wants_processes(&self, used_percent: f64, psi_triggered: bool) -> bool {
        used_percent >= self.config.thresholds.warn - 10.0
            || psi_triggered
            || self.state.level >= Level::Warn
            || self.held() > 0
    }

    fn held(&self) -> usize {
        self.suspended.trees.len() + self.dry_held.len()
    }

    /// Scope growth over the growth window, bytes/s.
    fn scope_growth(&mut self, now: Instant, used: u64) -> f64 {
        let window = self.config.sampling.growth_window;
        self.history.push_back((now, used));
        while self.history.len() > 2
            && self
                .history
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            self.history.pop_front();
        }
        match (self.history.front(), self.history.back()) {
            (Some((t0, u0)), Some((t1, u1))) if t1 > t0 => {
                (*u1 as f64 - *u0 as f64) / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
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
        let sshd: HashSet<u32> = procs
            .iter()
            .filter(|p| {
                !p.exited
                    && self
                        .sshd
                        .is_sshd(&self.proc_root, p.pid, p.start_ticks, &p.comm)
            })
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
        let mut fresh = Vec::with_capacity(procs.len());
        let mut extra = HashMap::new();
        for p in procs.iter().filter(|p| !p.exited) {
            let dir = self.proc_root.join(p.pid.to_string());
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
            .filter(|p| {
                self.sshd
                    .is_sshd(&self.proc_root, p.pid, p.start_ticks, &p.comm)
            })
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
                .filter(|&ppid| crate::host::sshd::is_sshd(&self.proc_root, ppid)),
        );
        (fresh, extra, sshd)
    }

    /// One round: assess, decide, act.
    pub fn tick(
        &mut self,
        usage: Usage,
        psi: Option<&procfs::Psi>,
        psi_triggered: bool,
        snapshot: &Snapshot,
        scope_pids: Option<&HashSet<u32>>,
        gpu: Option<&GpuSample>,
    ) -> Vec<Decision> {
        let now = Instant::now();
        // Built only when a decision needs it: idle rounds allocate nothing per process.
        let in_scope_procs = || -> Vec<ProcSample> {
            snapshot
                .procs
                .iter()
                .filter(|p| scope_pids.is_none_or(|set| set.contains(&p.pid)))
                .cloned()
                .collect()
        };
        let growth = self.scope_growth(now, usage.used_bytes);
        let exhaustion_s = time_to_exhaustion(usage.used_bytes, usage.limit_bytes, growth);
        let signals = Signals {
            used_percent: usage.percent(),
            psi_some_avg10: psi.map(|p| p.some.avg10),
            psi_full_avg10: psi.map(|p| p.full.avg10),
            psi_triggered,
            exhaustion_s,
            sshd_stalled: snapshot.time_unix_ms != self.sshd_checked_ms
                && self.sshd_stalled(snapshot),
            gpu_over: gpu
                .map(|sample| {
                    gpu_reasons(sample, snapshot, self.config.thresholds.gpu_warn_percent)
                })
                .unwrap_or_default(),
        };
        let assessment = assess(&signals, &self.config.thresholds, &self.config.protect);
        log::debug!(
            "tick: used {:.1} % ({} of {} bytes), growth {:.0} B/s, psi {:?}, level {}, held {}",
            signals.used_percent,
            usage.used_bytes,
            usage.limit_bytes,
            growth,
            signals.psi_some_avg10,
            assessment.level,
            self.held()
        );
        let mut out = Vec::new();
        let previous = self.state.level;
        if assessment.level != previous {
            out.push(self.decision(
                &assessment,
                Act::Level,
                format!("{previous} → {}", assessment.level),
                Vec::new(),
                Vec::new(),
            ));
            if assessment.level >= Level::Warn && previous < Level::Warn {
                let procs = in_scope_procs();
                let mut growers: Vec<&ProcSample> = procs.iter().filter(|p| !p.exited).collect();
                growers.sort_by(|a, b| b.growth_bytes_per_s.total_cmp(&a.growth_bytes_per_s));
                let detail = growers
                    .iter()
                    .take(3)
                    .map(|p| {
                        format!(
                            "{} ({}) {} MiB/s rss {} MiB",
                            p.pid,
                            p.comm,
                            signed_mib(p.growth_bytes_per_s),
                            mib(p.rss_bytes)
                        )
                    })
                    .collect();
                out.push(self.decision(
                    &assessment,
                    Act::Warn,
                    assessment.reasons.join("; "),
                    Vec::new(),
                    detail,
                ));
            }
        }
        self.state = EngineState {
            level: assessment.level,
            used_bytes: usage.used_bytes,
            limit_bytes: usage.limit_bytes,
            used_percent: signals.used_percent,
            growth_bytes_per_s: growth,
            exhaustion_s,
            suspended: self.held(),
            counts: self.state.counts.clone(),
        };
        self.maybe_reclaim(now, &assessment, &usage, &mut out);
        self.maybe_resume(now, &assessment, &mut out);
        if assessment.level >= Level::Suspend {
            let (fresh, extra, sshd) = self.refreshed(&in_scope_procs());
            let protection = Protection {
                guard_pid: self.guard_pid,
                victims: &self.config.victims,
                sshd: &sshd,
            };
            let ranked = rank(&fresh, &extra, &protection, &|_| true);
            // Resume counts are kept for the trees that exist (held or candidates).
            let held_roots = self.held_roots();
            self.resumes.retain(|root, _| {
                held_roots.contains(root) || ranked.iter().any(|c| &c.root == root)
            });
            self.maybe_suspend(&assessment, growth, &ranked, &usage, &mut out);
            self.maybe_kill(now, &assessment, &ranked, &mut out);
        } else {
            self.kill_level_since = None;
        }
        self.state.suspended = self.held();
        out
    }
}
