//! The guard inside `memtrace run`: the same engine, with the run's scope (the machine, or the
//! container's limit when memtrace runs in one: [`crate::collect::scope`]) as the signal and
//! only the pipeline's own process tree as possible victims. Its decisions go into the
//! trace; whatever it holds suspended is resumed when the run ends. Its state file is its own
//! (`/run/memtrace/run-PID-suspended.json`, locked for the run's lifetime), so a run killed
//! with SIGKILL while holding its pipeline leaves a file the next guard or run recovers.
//!
//! It tells the people as `memtrace guard` does ([`crate::guard::notify`]: the logged-in sessions'
//! terminals and the configured hooks), and also the terminal the run was started from; and it
//! answers `memtrace guard --run PID status | resume ID | kill ID | keep ID` on a control
//! socket beside its state file ([`crate::guard::control`]), between two samples.
//!
//! The machine's PSI counts only while the machine stalls now and not for the stalls of the
//! pipeline at its own `--memory-high` / `--memory-max`, or of any other cgroup at its own limit
//! ([`crate::guard::limit_stalls`]).
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    collect::{model::Snapshot, scope::Scope},
    guard::{
        config::GuardConfig,
        control,
        engine::{Act, Decision, Engine},
        limit_stalls::StallMeter,
        lock::{self, Lock},
        notify::Notifier,
        recover,
        state::{STATE_DIR, StateDir, StateFile},
    },
    host::{privilege, procfs},
    record::{RunHook, trace::Event},
};

/// The guard as a [`RunHook`].
#[derive(Debug)]
pub struct GuardHook {
    // Declared before the lock: dropped (resuming what it holds) while the lock is still held.
    engine: Engine,
    _lock: Lock,
    proc_root: &'static Path,
    scope: Scope,
    notifier: Notifier,
    control: Option<control::Server>,
    /// Which stalls count: the pipeline's cgroup is pinned when it has a limit.
    stalls: StallMeter,
}

/// The guard configuration of a `memtrace run --config` file: everything but its `[run]` table
/// (the guard refuses keys it does not know), layered over the default.
pub fn config_from_run_file(path: Option<&Path>) -> anyhow::Result<GuardConfig> {
    let Some(path) = path else {
        return Ok(GuardConfig::default_config()?);
    };
    let text = crate::host::input::read_to_string(
        path,
        crate::host::input::CONFIG_MAX_BYTES,
        "a config file",
    )
    .with_context(|| format!("reading {}", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|err| anyhow::anyhow!("config {}: {}", path.display(), err.message()))?;
    table.remove("run");
    let rest = toml::to_string(&table).context("re-encoding the guard part of the config")?;
    Ok(GuardConfig::from_layers(Some((
        &rest,
        &path.display().to_string(),
    )))?)
}

impl GuardHook {
    /// A guard for one run measuring `scope`: its state file is its own and locked, so runs
    /// never share suspensions, and it is proven writable first. Resumes what dead runs left
    /// suspended.
    pub fn new(config: GuardConfig, scope: Scope) -> anyhow::Result<Self> {
        privilege::require_root("memtrace run")?;
        let proc_root = Path::new("/proc");
        let dir = StateDir::open(Path::new(STATE_DIR), true)?;
        let name = lock::run_state_name(std::process::id());
        // A recovering guard may hold a dead run's lock of this pid for a moment.
        let held = Lock::acquire(
            &dir,
            &lock::state_lock_name(&name),
            &format!("the state file of run {} is in use", std::process::id()),
            Duration::from_secs(2),
        )?;
        let file = StateFile::new(&dir, &name);
        file.check()?;
        file.check_writable()?;
        for line in recover::recover_runs(&dir, proc_root, false, Some(&name)) {
            log::warn!("recovered from a dead `memtrace run`: {line}");
        }
        let socket = control::socket_path(&file.path());
        let control = match control::Server::bind(&socket, rustix::process::Uid::ROOT) {
            Ok(server) => Some(server),
            Err(err) => {
                log::warn!(
                    "control socket {}: {err}; `memtrace guard --run {}` will not reach this run",
                    socket.display(),
                    std::process::id()
                );
                None
            }
        };
        let mut settings = config.notify.clone();
        settings.run = Some(std::process::id());
        settings.extra_terminals.extend(own_terminal());
        Ok(Self {
            notifier: Notifier::start(settings, proc_root),
            engine: Engine::new(config, scope.clone(), proc_root, Some(file), false),
            _lock: held,
            proc_root,
            stalls: StallMeter::for_scope(&scope, proc_root),
            scope,
            control,
        })
    }

    /// The machine's (or container's) PSI for this round, if its stalls count
    /// ([`crate::guard::limit_stalls`]); `scope_limit` is the scope's limit, bytes.
    fn pressure(&mut self, scope_limit: u64) -> Option<procfs::Psi> {
        let psi = procfs::read(&self.scope.pressure_file(self.proc_root))
            .ok()
            .and_then(|text| procfs::parse_psi(&text))?;
        self.stalls
            .filter(psi, scope_limit, std::time::Instant::now())
    }

    /// Answers the control socket's waiting clients; what they had done.
    fn serve(&mut self) -> Vec<Decision> {
        let mut by_hand = Vec::new();
        if let Some(server) = &mut self.control {
            let scope = format!("the pipeline of run {}", std::process::id());
            let engine = &mut self.engine;
            server.serve(&mut |request| engine.by_hand(request, &scope, &mut by_hand));
        }
        by_hand
    }
}

/// The terminal the run was started from (its stderr), if it is one.
fn own_terminal() -> Option<PathBuf> {
    if !rustix::termios::isatty(std::io::stderr()) {
        return None;
    }
    std::fs::read_link("/proc/self/fd/2")
        .ok()
        .filter(|path| path.starts_with("/dev/"))
}

fn event(decision: Decision) -> Event {
    let mut reason = decision.reason;
    if !decision.detail.is_empty() {
        reason.push_str(" | ");
        reason.push_str(&decision.detail.join(" | "));
    }
    Event::GuardDecision {
        level: decision.level.to_string(),
        action: decision.action,
        reason,
        pids: decision.pids,
        outcome: Some(decision.outcome),
    }
}

impl RunHook for GuardHook {
    fn on_snapshot(&mut self, snapshot: &Snapshot, tree: &[u32]) -> Vec<Event> {
        let usage = match self.scope.usage(self.proc_root) {
            Ok(usage) => usage,
            Err(err) => {
                log::warn!("guard: {err}");
                return Vec::new();
            }
        };
        let psi = self.pressure(usage.limit_bytes);
        let scope: HashSet<u32> = tree.iter().copied().collect();
        let mut decisions =
            self.engine
                .tick(usage, psi.as_ref(), false, snapshot, Some(&scope), None);
        decisions.extend(self.serve());
        decisions
            .into_iter()
            .filter(|d| d.action != Act::Level)
            .inspect(|d| {
                log::warn!("guard: {} [{}] {}", d.action, d.level, d.reason);
                self.notifier.send_for(d);
            })
            .map(event)
            .collect()
    }

    fn on_terminate(&mut self) -> Vec<Event> {
        self.finish()
    }

    fn pipeline_cgroup(&mut self, dir: &Path, limit: Option<u64>) {
        if let Some(limit) = limit {
            self.stalls.pin(dir, limit);
        }
    }

    fn finish(&mut self) -> Vec<Event> {
        let level = self.engine.state().level.to_string();
        self.engine
            .resume_all()
            .into_iter()
            .map(|line| Event::GuardDecision {
                level: level.clone(),
                action: Act::Resume,
                reason: format!("run ended: {line}"),
                pids: Vec::new(),
                // Each line says itself whether the release worked; no typed outcome here.
                outcome: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The run config's `[run]` table does not upset the guard's strict parser.
    use super::*;

    #[test]
    fn run_table_is_ignored_and_guard_keys_apply() {
        let path =
            std::env::temp_dir().join(format!("memtrace-run-hook-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[run]\ninterval = \"500ms\"\n[thresholds]\nwarn_used_percent = 81\n",
        )
        .expect("write");
        let config = config_from_run_file(Some(&path)).expect("valid");
        assert_eq!(config.thresholds.warn, 81.0);
        std::fs::write(&path, "[run]\n[thresholds]\nwarn_used_percnt = 81\n").expect("write");
        let err = config_from_run_file(Some(&path)).expect_err("unknown key");
        assert!(err.to_string().contains("warn_used_percnt"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
