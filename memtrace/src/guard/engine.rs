//! The guard's decision engine: one `tick` per sample turns the signals into a level, walks
//! the ladder (warn → reclaim → suspend → kill, resume with hysteresis) and acts, returning one
//! [`Decision`] per thing it did or would do, with its reasons, candidates and scores. It is
//! driven by `memtrace guard` and embeddable (e.g. `memtrace run` guards its own tree).
use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;

use crate::{
    gpu::{GpuSample, over_threshold},
    guard::{
        config::GuardConfig,
        level::{Assessment, Level, Signals, assess, time_to_exhaustion},
        reclaim::reclaim,
        scope::{Scope, Usage},
        suspend::{SuspendedSet, kill_fds},
        victim::{Candidate, Extra, Protection, rank},
    },
    model::{ProcSample, Snapshot},
    procfs,
};

/// Something the guard did (or, in a dry run, would do).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Level at the time.
    pub level: Level,
    /// `level`, `warn`, `reclaim`, `suspend`, `resume`, `kill`.
    pub action: &'static str,
    /// Why, one line.
    pub reason: String,
    /// Processes acted on.
    pub pids: Vec<u32>,
    /// What happened, one entry per step.
    pub detail: Vec<String>,
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
    below_resume_since: Option<Instant>,
    kill_level_since: Option<Instant>,
    history: VecDeque<(Instant, u64)>,
    sshd_stalls: HashMap<u32, u64>,
    /// Latest state.
    pub state: EngineState,
}

fn is_sshd(comm: &str) -> bool {
    matches!(comm, "sshd" | "sshd-session")
}

impl Engine {
    /// A new engine keeping its suspended set in `state_file`.
    pub fn new(config: GuardConfig, scope: Scope, proc_root: &Path, state_file: &Path, dry_run: bool) -> Self {
        Self {
            config,
            scope,
            proc_root: proc_root.to_owned(),
            dry_run,
            guard_pid: std::process::id(),
            suspended: SuspendedSet::new(state_file, proc_root),
            dry_held: Vec::new(),
            last_reclaim: None,
            below_resume_since: None,
            kill_level_since: None,
            history: VecDeque::with_capacity(64),
            sshd_stalls: HashMap::new(),
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
    fn sshd_stalled(&mut self, procs: &[ProcSample]) -> bool {
        let sshd: HashSet<u32> = procs.iter().filter(|p| is_sshd(&p.comm)).map(|p| p.pid).collect();
        let mut stalled = false;
        let mut seen = HashMap::new();
        for p in procs.iter().filter(|p| sshd.contains(&p.pid) || sshd.contains(&p.ppid)) {
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
    /// processes and their session ids; processes that are gone are dropped.
    fn refreshed(&self, procs: &[ProcSample]) -> (Vec<ProcSample>, HashMap<u32, Extra>) {
        let mut fresh = Vec::with_capacity(procs.len());
        let mut extra = HashMap::new();
        for p in procs.iter().filter(|p| !p.exited) {
            let dir = self.proc_root.join(p.pid.to_string());
            let Some(stat) = procfs::read(&dir.join("stat")).ok().and_then(|t| procfs::parse_pid_stat(&t)) else {
                continue;
            };
            let mut p = p.clone();
            if stat.comm != p.comm || stat.start_ticks != p.start_ticks {
                p.cmdline = std::fs::read(dir.join("cmdline"))
                    .map(|raw| procfs::parse_cmdline(&raw))
                    .unwrap_or_default();
            }
            p.comm = stat.comm;
            p.ppid = stat.ppid;
            p.start_ticks = stat.start_ticks;
            extra.insert(p.pid, Extra { session: stat.session });
            fresh.push(p);
        }
        (fresh, extra)
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
            sshd_stalled: self.sshd_stalled(&snapshot.procs),
            gpu_over: gpu
                .map(|sample| gpu_reasons(sample, snapshot, self.config.thresholds.gpu_warn_percent))
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
            out.push(self.decision(&assessment, "level", format!("{previous} → {}", assessment.level), Vec::new(), Vec::new()));
            if assessment.level >= Level::Warn && previous < Level::Warn {
                let procs = in_scope_procs();
                let mut growers: Vec<&ProcSample> = procs.iter().filter(|p| !p.exited).collect();
                growers.sort_by(|a, b| b.growth_bytes_per_s.total_cmp(&a.growth_bytes_per_s));
                let detail = growers
                    .iter()
                    .take(3)
                    .map(|p| format!("{} ({}) {:+.1} MiB/s rss {:.1} MiB", p.pid, p.comm, p.growth_bytes_per_s / 1048576.0, p.rss_bytes as f64 / 1048576.0))
                    .collect();
                out.push(self.decision(&assessment, "warn", assessment.reasons.join("; "), Vec::new(), detail));
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
            let (fresh, extra) = self.refreshed(&in_scope_procs());
            let protection = Protection {
                guard_pid: self.guard_pid,
                victims: &self.config.victims,
            };
            let ranked = rank(&fresh, &extra, &protection, &|_| true);
            self.maybe_suspend(&assessment, growth, &ranked, &usage, &mut out);
            self.maybe_kill(now, &assessment, &ranked, &mut out);
        } else {
            self.kill_level_since = None;
        }
        self.state.suspended = self.held();
        out
    }

    fn decision(&self, a: &Assessment, action: &'static str, reason: String, pids: Vec<u32>, detail: Vec<String>) -> Decision {
        let reason = if self.dry_run && !matches!(action, "level" | "warn") {
            format!("dry run, nothing sent: {reason}")
        } else {
            reason
        };
        Decision {
            level: a.level,
            action,
            reason,
            pids,
            detail,
        }
    }

    fn maybe_reclaim(&mut self, now: Instant, a: &Assessment, usage: &Usage, out: &mut Vec<Decision>) {
        let due = self
            .last_reclaim
            .is_none_or(|t| now.duration_since(t) >= self.config.actions.reclaim_every);
        if a.level < Level::Reclaim || !due {
            return;
        }
        self.last_reclaim = Some(now);
        let detail = reclaim(&self.scope, usage, &self.config.actions, &self.proc_root, self.dry_run);
        if detail.is_empty() {
            return;
        }
        self.state.counts.reclaim += 1;
        out.push(self.decision(a, "reclaim", a.reasons.join("; "), Vec::new(), detail));
    }

    fn maybe_resume(&mut self, now: Instant, a: &Assessment, out: &mut Vec<Decision>) {
        if self.held() == 0 {
            self.below_resume_since = None;
            return;
        }
        let calm = self.state.used_percent < self.config.thresholds.resume && a.level < Level::Suspend;
        if !calm {
            self.below_resume_since = None;
            return;
        }
        let since = *self.below_resume_since.get_or_insert(now);
        if now.duration_since(since) < self.config.thresholds.resume_after {
            return;
        }
        self.below_resume_since = None;
        let reason = format!(
            "used {:.1} % < resume {} % for {:?}",
            self.state.used_percent, self.config.thresholds.resume, self.config.thresholds.resume_after
        );
        if let Some(tree) = self.dry_held.pop() {
            let pids = tree.members.iter().map(|t| t.pid).collect();
            out.push(self.decision(a, "resume", reason, pids, vec![tree.summary()]));
        } else {
            let pids = self
                .suspended
                .trees
                .first()
                .map(|t| t.record.members.iter().map(|m| m.pid).collect())
                .unwrap_or_default();
            if let Some(line) = self.suspended.resume_oldest() {
                self.state.counts.resume += 1;
                out.push(self.decision(a, "resume", reason, pids, vec![line]));
            }
        }
    }

    fn maybe_suspend(&mut self, a: &Assessment, growth: f64, ranked: &[Candidate], usage: &Usage, out: &mut Vec<Decision>) {
        if !self.config.actions.suspend {
            return;
        }
        let min_growth = self.config.victims.min_growth_bytes_per_s.max(1.0);
        // With a tree already held, suspend another only while the scope keeps growing:
        // a held tree keeps its memory, so the level alone says nothing new.
        if self.held() > 0 && growth < min_growth {
            return;
        }
        let held = |c: &Candidate| {
            self.suspended.holds(&c.root) || self.dry_held.iter().any(|d| d.root == c.root)
        };
        let at_kill = a.level >= Level::Kill && self.held() == 0;
        let Some(victim) = ranked
            .iter()
            .find(|c| !held(c) && (c.growing || at_kill) && !c.members.is_empty())
        else {
            return;
        };
        let candidates: Vec<String> = ranked.iter().take(5).map(Candidate::summary).collect();
        let pids: Vec<u32> = victim.members.iter().map(|t| t.pid).collect();
        let reason = format!("{}; victim {}", a.reasons.join("; "), victim.summary());
        if self.dry_run {
            self.dry_held.push(victim.clone());
            out.push(self.decision(a, "suspend", reason, pids, candidates));
            return;
        }
        let freeze = own_cgroup(&self.proc_root, victim);
        let mut detail = match self.suspended.suspend(victim, freeze) {
            Ok(line) => {
                self.state.counts.suspend += 1;
                vec![line]
            }
            Err(err) => vec![format!("suspend failed: {err}")],
        };
        detail.push(format!("used {:.1} MiB of {:.1} MiB", usage.used_bytes as f64 / 1048576.0, usage.limit_bytes as f64 / 1048576.0));
        detail.extend(candidates.into_iter().map(|c| format!("candidate {c}")));
        out.push(self.decision(a, "suspend", reason, pids, detail));
    }

    fn maybe_kill(&mut self, now: Instant, a: &Assessment, ranked: &[Candidate], out: &mut Vec<Decision>) {
        if a.level < Level::Kill || !self.config.actions.kill {
            self.kill_level_since = None;
            return;
        }
        if self.held() == 0 && !self.config.actions.suspend {
            // Suspension is off: kill the best candidate directly.
            let Some(victim) = ranked.iter().find(|c| !c.members.is_empty()) else { return };
            let pids = victim.members.iter().map(|t| t.pid).collect();
            let reason = format!("{}; victim {}", a.reasons.join("; "), victim.summary());
            let detail = if self.dry_run {
                Vec::new()
            } else {
                let fds: Vec<_> = victim.members.iter().filter_map(|t| t.open(&self.proc_root).ok()).collect();
                self.state.counts.kill += 1;
                vec![kill_fds(&fds, self.config.actions.kill_grace)]
            };
            out.push(self.decision(a, "kill", reason, pids, detail));
            return;
        }
        if self.held() == 0 {
            return;
        }
        let since = *self.kill_level_since.get_or_insert(now);
        if now.duration_since(since) < self.config.thresholds.kill_after {
            return;
        }
        self.kill_level_since = None;
        let reason = format!(
            "{}; suspension did not relieve pressure within {:?}",
            a.reasons.join("; "),
            self.config.thresholds.kill_after
        );
        if let Some(tree) = self.dry_held.pop() {
            let pids = tree.members.iter().map(|t| t.pid).collect();
            out.push(self.decision(a, "kill", reason, pids, vec![tree.summary()]));
            return;
        }
        let pids = self
            .suspended
            .trees
            .first()
            .map(|t| t.record.members.iter().map(|m| m.pid).collect())
            .unwrap_or_default();
        if let Some(line) = self.suspended.kill_oldest(self.config.actions.kill_grace) {
            self.state.counts.kill += 1;
            out.push(self.decision(a, "kill", reason, pids, vec![line]));
        }
    }
}

/// One reason per GPU at or above `percent`, naming its three largest holders.
fn gpu_reasons(sample: &GpuSample, snapshot: &Snapshot, percent: f64) -> Vec<String> {
    over_threshold(sample, percent)
        .into_iter()
        .map(|(index, used, holders)| {
            let names: Vec<String> = holders
                .iter()
                .take(3)
                .map(|(pid, bytes)| {
                    let comm = snapshot
                        .procs
                        .iter()
                        .find(|p| p.pid == *pid)
                        .map_or("?", |p| p.comm.as_str());
                    format!("{pid} ({comm}) {:.1} GiB", *bytes as f64 / (1u64 << 30) as f64)
                })
                .collect();
            format!("GPU {index} memory {used:.1} % >= {percent} %; top holders: {}", names.join(", "))
        })
        .collect()
}

/// The victim's own v2 cgroup, if it has one holding nothing but the tree (then it can be
/// frozen instead of signalled).
fn own_cgroup(proc_root: &Path, victim: &Candidate) -> Option<PathBuf> {
    let text = std::fs::read_to_string(proc_root.join(victim.root.pid.to_string()).join("cgroup")).ok()?;
    let relative = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    if relative == "/" || relative.is_empty() {
        return None;
    }
    let mount = std::fs::read_to_string(proc_root.join("mounts"))
        .ok()?
        .lines()
        .find_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let (_, target, fstype) = (f.next(), f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(target))
        })?;
    let dir = mount.join(relative.trim_start_matches('/'));
    if !dir.join("cgroup.freeze").exists() {
        return None;
    }
    let members: HashSet<u32> = victim.members.iter().map(|t| t.pid).collect();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let pids: Vec<u32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (!pids.is_empty() && pids.iter().all(|pid| members.contains(pid))).then_some(dir)
}

#[cfg(test)]
mod tests {
    //! The ladder in a dry run: suspend at pressure, resume after calm, GPU warn names holders.
    use std::time::Duration;

    use super::*;
    use crate::{gpu::GpuProcess, model::GpuDevice};

    fn engine() -> Engine {
        let text = "[thresholds]\nresume_after = \"1ms\"\n";
        let config = GuardConfig::from_layers(Some((text, "test"))).expect("config");
        let state = std::env::temp_dir().join(format!("memtrace-engine-test-{}.json", std::process::id()));
        Engine::new(config, Scope::Machine, Path::new("/nonexistent-proc"), &state, true)
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            procs: vec![ProcSample {
                pid: 4242,
                ppid: 1,
                comm: "leaker".to_owned(),
                start_ticks: 1,
                anon_bytes: 900 << 20,
                rss_bytes: 900 << 20,
                growth_bytes_per_s: 50.0 * 1048576.0,
                footprint_growth_bytes_per_s: 50.0 * 1048576.0,
                ..ProcSample::default()
            }],
            ..Snapshot::default()
        }
    }

    fn usage(percent: u64) -> Usage {
        Usage {
            used_bytes: percent << 20,
            limit_bytes: 100 << 20,
        }
    }

    #[test]
    fn dry_run_suspends_then_resumes_without_sending() {
        let mut engine = engine();
        // The victim must exist in /proc (identities are re-read before choosing): use this
        // test process, and let the engine believe the guard is someone else.
        engine.proc_root = std::path::PathBuf::from("/proc");
        engine.guard_pid = 1;
        let me = procfs::parse_pid_stat(&procfs::read(Path::new("/proc/self/stat")).expect("stat"))
            .expect("parse");
        let mut snap = snapshot();
        snap.procs[0].pid = me.pid;
        snap.procs[0].start_ticks = me.start_ticks;
        let decisions = engine.tick(usage(92), None, false, &snap, None, None);
        let suspend = decisions.iter().find(|d| d.action == "suspend").expect("a suspend decision");
        assert!(suspend.reason.starts_with("dry run, nothing sent"), "{}", suspend.reason);
        assert_eq!(suspend.pids, vec![me.pid]);
        assert_eq!(engine.state.suspended, 1);
        assert!(engine.suspended.trees.is_empty(), "nothing really suspended");
        let calm = engine.tick(usage(40), None, false, &snap, None, None);
        assert!(calm.iter().all(|d| d.action != "resume"), "resume waits for resume_after");
        std::thread::sleep(Duration::from_millis(5));
        let calm = engine.tick(usage(40), None, false, &snap, None, None);
        assert!(calm.iter().any(|d| d.action == "resume"), "{calm:?}");
        assert_eq!(engine.state.suspended, 0);
    }

    #[test]
    fn gpu_over_threshold_warns_with_holders() {
        let mut engine = engine();
        let snap = snapshot();
        let gpu = GpuSample {
            devices: vec![GpuDevice {
                index: 0,
                name: "Test GPU".to_owned(),
                used_bytes: 97 << 30,
                total_bytes: 100 << 30,
                utilization_percent: None,
            }],
            processes: vec![GpuProcess {
                pid: 4242,
                gpu_index: 0,
                used_bytes: 90 << 30,
            }],
        };
        let decisions = engine.tick(usage(10), None, false, &snap, None, Some(&gpu));
        let warn = decisions.iter().find(|d| d.action == "warn").expect("a warn decision");
        assert!(warn.reason.contains("GPU 0 memory 97.0 %"), "{}", warn.reason);
        assert!(warn.reason.contains("4242 (leaker) 90.0 GiB"), "{}", warn.reason);
        assert_eq!(engine.state.level, Level::Warn);
    }
}
