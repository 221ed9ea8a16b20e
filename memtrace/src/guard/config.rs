//! The guard's TOML configuration: an embedded, documented default (`--print-config`), user
//! files layered over it key by key, and validation into [`GuardConfig`]. Unknown keys and bad
//! values are one-line errors naming the key (and the line, for syntax errors).
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use regex::Regex;
use serde::Deserialize;

use crate::host::{
    reclaim::check_temp_root,
    units::{MIB, parse_duration},
};

/// The default configuration, printed by `memtrace guard --print-config`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("config {origin}:{line}: {message}")]
    Parse {
        /// File name (or "default").
        origin: String,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, one line.
        message: String,
    },
    /// A value of the right type but out of range or inconsistent.
    #[error("config key {key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `thresholds.warn_used_percent`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sampling: RawSampling,
    #[serde(default)]
    thresholds: RawThresholds,
    #[serde(default)]
    actions: RawActions,
    #[serde(default)]
    victims: RawVictims,
    #[serde(default)]
    protect: RawProtect,
    #[serde(default)]
    notify: RawNotify,
}

/// Declares a raw config section whose every key is optional: a missing key keeps the default
/// from `default.toml`.
macro_rules! section {
    ($name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $(#[serde(default)] $field: Option<$ty>,)*
        }
        impl $name {
            /// Keys set in `over` replace ours.
            fn layer(&mut self, over: Self) {
                $(if over.$field.is_some() { self.$field = over.$field; })*
            }
        }
    };
}

section!(RawSampling {
    interval_idle: String,
    interval_pressure: String,
    processes_idle: String,
    fill_rate_mib_per_s: f64,
    psi_stall: String,
    psi_window: String,
    growth_window: String,
});
section!(RawThresholds {
    warn_used_percent: f64,
    reclaim_used_percent: f64,
    suspend_used_percent: f64,
    kill_used_percent: f64,
    resume_used_percent: f64,
    resume_after: String,
    resume_hold: String,
    max_cycles: u32,
    psi_some_warn: f64,
    psi_full_suspend: f64,
    gpu_warn_percent: f64,
    exhaustion_suspend: String,
    kill_after: String,
});
section!(RawActions {
    drop_caches: bool,
    cgroup_reclaim: bool,
    temp_dirs: Vec<String>,
    temp_older_than: String,
    reclaim_every: String,
    suspend: bool,
    kill: bool,
    kill_grace: String,
});
section!(RawVictims {
    prefer: Vec<String>,
    avoid: Vec<String>,
    protected: Vec<String>,
    min_growth_mib_per_s: f64,
});
section!(RawProtect {
    sshd_oom_score_adj: i32,
    sshd_stall_escalates: bool,
});

section!(RawNotify {
    terminals: bool,
    extra_terminals: Vec<String>,
    on_suspend: Vec<String>,
    on_resume: Vec<String>,
    on_keep: Vec<String>,
    on_kill: Vec<String>,
    hook_timeout: String,
});

impl RawConfig {
    fn layer(&mut self, over: Self) {
        self.notify.layer(over.notify);
        self.sampling.layer(over.sampling);
        self.thresholds.layer(over.thresholds);
        self.actions.layer(over.actions);
        self.victims.layer(over.victims);
        self.protect.layer(over.protect);
    }
}

/// When to sample and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// The longest interval between two rounds (far from the thresholds).
    pub interval_idle: Duration,
    /// The shortest interval between two rounds (the headroom almost gone).
    pub interval_pressure: Duration,
    /// Per-process sampling interval while well below warn (per-event counting only).
    pub processes_idle: Duration,
    /// The fastest growth the pacing plans for, bytes/s ([`crate::guard::pace`]).
    pub fill_rate_bytes_per_s: f64,
    /// PSI trigger stall.
    pub psi_stall: Duration,
    /// PSI trigger window.
    pub psi_window: Duration,
    /// Window for rates and the forecast.
    pub growth_window: Duration,
}

/// Where each level starts, and how it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Warn at this used percent.
    pub warn: f64,
    /// Reclaim at this used percent.
    pub reclaim: f64,
    /// Suspend at this used percent.
    pub suspend: f64,
    /// Kill (if allowed) at this used percent.
    pub kill: f64,
    /// Resume below this used percent…
    pub resume: f64,
    /// …held this long.
    pub resume_after: Duration,
    /// A held tree is resumed only when the headroom below the suspend line would last it this
    /// long at its pre-suspension growth (or it was not growing).
    pub resume_hold: Duration,
    /// A tree the guard has resumed this many times stays held (0: the guard never resumes).
    pub max_cycles: u32,
    /// PSI some avg10 that raises warn.
    pub psi_some_warn: f64,
    /// PSI full avg10 that raises suspend.
    pub psi_full_suspend: f64,
    /// GPU memory percent (any device) that raises warn.
    pub gpu_warn_percent: f64,
    /// Time-to-exhaustion below which (at or above warn) we suspend.
    pub exhaustion_suspend: Duration,
    /// Suspended and still at kill level this long → kill.
    pub kill_after: Duration,
}

/// What the guard may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    /// Drop the page cache on reclaim (machine scope).
    pub drop_caches: bool,
    /// Write memory.reclaim on reclaim (v2 cgroup scope).
    pub cgroup_reclaim: bool,
    /// Temp directories to clean on reclaim: canonical, each passed
    /// [`crate::host::reclaim::check_temp_root`] at load (and is checked again at every pass).
    pub temp_dirs: Vec<PathBuf>,
    /// Age of temp files that may be deleted.
    pub temp_older_than: Duration,
    /// Minimum time between reclaim passes.
    pub reclaim_every: Duration,
    /// Suspend the offender.
    pub suspend: bool,
    /// Kill the offender as a last resort.
    pub kill: bool,
    /// SIGTERM → SIGKILL grace.
    pub kill_grace: Duration,
}

/// How victims are chosen.
#[derive(Debug, Clone)]
pub struct Victims {
    /// Chosen first.
    pub prefer: Vec<Regex>,
    /// Chosen last.
    pub avoid: Vec<Regex>,
    /// Never touched (command names).
    pub protected: Vec<Regex>,
    /// Growth above which a tree counts as growing, bytes/s.
    pub min_growth_bytes_per_s: f64,
}

/// Protection of the way into the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protect {
    /// oom_score_adj for the listening sshd (0: leave alone).
    pub sshd_oom_score_adj: i32,
    /// sshd/login-shell reclaim stalls escalate to suspend.
    pub sshd_stall_escalates: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Sampling.
    pub sampling: Sampling,
    /// Levels.
    pub thresholds: Thresholds,
    /// Allowed actions.
    pub actions: Actions,
    /// Victim choice.
    pub victims: Victims,
    /// sshd protection.
    pub protect: Protect,
    /// Messages to the logged-in terminals and hook commands.
    pub notify: crate::guard::notify::Settings,
}

fn parse_raw(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Parse {
            origin: origin.to_owned(),
            line,
            message: err.message().replace('\n', " "),
        }
    })
}

impl GuardConfig {
    /// The embedded default.
    pub fn default_config() -> Result<Self, ConfigError> {
        Self::from_layers(None)
    }

    /// Reads `path` and layers it over the default.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        use crate::host::input;
        // A regular file of at most CONFIG_MAX_BYTES: a FIFO or /dev/zero is one clear error,
        // never a hang or an endless read.
        let text = input::read_to_string(path, input::CONFIG_MAX_BYTES, "a config file").map_err(
            |source| ConfigError::Io {
                path: path.display().to_string(),
                source,
            },
        )?;
        Self::from_layers(Some((&text, &path.display().to_string())))
    }

    /// Layers the user text (if any) over the default and validates.
    pub fn from_layers(user: Option<(&str, &str)>) -> Result<Self, ConfigError> {
        let mut raw = parse_raw(DEFAULT_TOML, "default")?;
        if let Some((text, origin)) = user {
            raw.layer(parse_raw(text, origin)?);
        }
        validate(raw)
    }
}

/// Takes a key that the embedded default always sets.
fn need<T>(value: Option<T>, key: &'static str) -> Result<T, ConfigError> {
    value.ok_or(ConfigError::Invalid {
        key,
        message: "missing (the embedded default sets every key)".to_owned(),
    })
}

fn duration(value: Option<String>, key: &'static str) -> Result<Duration, ConfigError> {
    let text = need(value, key)?;
    parse_duration(&text).map_err(|err| ConfigError::Invalid {
        key,
        message: err.to_string(),
    })
}

fn fill_rate(value: Option<f64>) -> Result<f64, ConfigError> {
    let key = "sampling.fill_rate_mib_per_s";
    let value = need(value, key)?;
    if !(value > 0.0 && value.is_finite()) {
        return Err(ConfigError::Invalid {
            key,
            message: format!("must be a positive number, got {value}"),
        });
    }
    Ok(value * MIB as f64)
}

fn percent(value: Option<f64>, key: &'static str) -> Result<f64, ConfigError> {
    let value = need(value, key)?;
    if !(0.0..=100.0).contains(&value) {
        return Err(ConfigError::Invalid {
            key,
            message: format!("must be between 0 and 100, got {value}"),
        });
    }
    Ok(value)
}

fn regexes(value: Option<Vec<String>>, key: &'static str) -> Result<Vec<Regex>, ConfigError> {
    need(value, key)?
        .iter()
        .map(|pattern| {
            Regex::new(pattern).map_err(|err| ConfigError::Invalid {
                key,
                message: format!(
                    "bad regex {pattern:?}: {}",
                    err.to_string().replace('\n', " ")
                ),
            })
        })
        .collect()
}

/// The temp roots, absolute and passing [`check_temp_root`] (no system directory, symlink, …),
/// as their canonical paths.
fn temp_dirs(dirs: Vec<String>) -> Result<Vec<PathBuf>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "actions.temp_dirs",
        message,
    };
    dirs.iter()
        .map(|dir| {
            if !Path::new(dir).is_absolute() {
                return Err(invalid(format!("{dir} must be an absolute path")));
            }
            check_temp_root(Path::new(dir)).map_err(|err| invalid(err.to_string()))
        })
        .collect()
}

fn validate(raw: RawConfig) -> Result<GuardConfig, ConfigError> {
    let s = raw.sampling;
    let sampling = Sampling {
        interval_idle: duration(s.interval_idle, "sampling.interval_idle")?,
        interval_pressure: duration(s.interval_pressure, "sampling.interval_pressure")?,
        processes_idle: duration(s.processes_idle, "sampling.processes_idle")?,
        fill_rate_bytes_per_s: fill_rate(s.fill_rate_mib_per_s)?,
        psi_stall: duration(s.psi_stall, "sampling.psi_stall")?,
        psi_window: duration(s.psi_window, "sampling.psi_window")?,
        growth_window: duration(s.growth_window, "sampling.growth_window")?,
    };
    if sampling.interval_pressure > sampling.interval_idle {
        return Err(ConfigError::Invalid {
            key: "sampling.interval_pressure",
            message: "must not be longer than sampling.interval_idle".to_owned(),
        });
    }
    if !(Duration::from_millis(500)..=Duration::from_secs(10)).contains(&sampling.psi_window) {
        return Err(ConfigError::Invalid {
            key: "sampling.psi_window",
            message: "the kernel accepts PSI windows from 500ms to 10s".to_owned(),
        });
    }
    if sampling.psi_stall >= sampling.psi_window {
        return Err(ConfigError::Invalid {
            key: "sampling.psi_stall",
            message: "must be shorter than sampling.psi_window".to_owned(),
        });
    }
    let t = raw.thresholds;
    let thresholds = Thresholds {
        warn: percent(t.warn_used_percent, "thresholds.warn_used_percent")?,
        reclaim: percent(t.reclaim_used_percent, "thresholds.reclaim_used_percent")?,
        suspend: percent(t.suspend_used_percent, "thresholds.suspend_used_percent")?,
        kill: percent(t.kill_used_percent, "thresholds.kill_used_percent")?,
        resume: percent(t.resume_used_percent, "thresholds.resume_used_percent")?,
        resume_after: duration(t.resume_after, "thresholds.resume_after")?,
        resume_hold: duration(t.resume_hold, "thresholds.resume_hold")?,
        max_cycles: need(t.max_cycles, "thresholds.max_cycles")?,
        psi_some_warn: percent(t.psi_some_warn, "thresholds.psi_some_warn")?,
        psi_full_suspend: percent(t.psi_full_suspend, "thresholds.psi_full_suspend")?,
        gpu_warn_percent: percent(t.gpu_warn_percent, "thresholds.gpu_warn_percent")?,
        exhaustion_suspend: duration(t.exhaustion_suspend, "thresholds.exhaustion_suspend")?,
        kill_after: duration(t.kill_after, "thresholds.kill_after")?,
    };
    let ordered = [
        ("thresholds.resume_used_percent", thresholds.resume),
        ("thresholds.warn_used_percent", thresholds.warn),
        ("thresholds.reclaim_used_percent", thresholds.reclaim),
        ("thresholds.suspend_used_percent", thresholds.suspend),
        ("thresholds.kill_used_percent", thresholds.kill),
    ];
    for pair in ordered.windows(2) {
        if let [(low_key, low), (key, value)] = pair
            && value < low
        {
            return Err(ConfigError::Invalid {
                key,
                message: format!("must not be below {low_key} ({value} < {low})"),
            });
        }
    }
    if thresholds.resume >= thresholds.suspend {
        return Err(ConfigError::Invalid {
            key: "thresholds.resume_used_percent",
            message: "must be below thresholds.suspend_used_percent (hysteresis)".to_owned(),
        });
    }
    let a = raw.actions;
    let actions = Actions {
        drop_caches: need(a.drop_caches, "actions.drop_caches")?,
        cgroup_reclaim: need(a.cgroup_reclaim, "actions.cgroup_reclaim")?,
        temp_dirs: temp_dirs(need(a.temp_dirs, "actions.temp_dirs")?)?,
        temp_older_than: duration(a.temp_older_than, "actions.temp_older_than")?,
        reclaim_every: duration(a.reclaim_every, "actions.reclaim_every")?,
        suspend: need(a.suspend, "actions.suspend")?,
        kill: need(a.kill, "actions.kill")?,
        kill_grace: duration(a.kill_grace, "actions.kill_grace")?,
    };
    let v = raw.victims;
    let min_growth = need(v.min_growth_mib_per_s, "victims.min_growth_mib_per_s")?;
    if !(min_growth >= 0.0 && min_growth.is_finite()) {
        return Err(ConfigError::Invalid {
            key: "victims.min_growth_mib_per_s",
            message: format!("must be a non-negative number, got {min_growth}"),
        });
    }
    let victims = Victims {
        prefer: regexes(v.prefer, "victims.prefer")?,
        avoid: regexes(v.avoid, "victims.avoid")?,
        protected: regexes(v.protected, "victims.protected")?,
        min_growth_bytes_per_s: min_growth * MIB as f64,
    };
    let p = raw.protect;
    let protect = Protect {
        sshd_oom_score_adj: need(p.sshd_oom_score_adj, "protect.sshd_oom_score_adj")?,
        sshd_stall_escalates: need(p.sshd_stall_escalates, "protect.sshd_stall_escalates")?,
    };
    if !(-1000..=1000).contains(&protect.sshd_oom_score_adj) {
        return Err(ConfigError::Invalid {
            key: "protect.sshd_oom_score_adj",
            message: format!(
                "must be between -1000 and 1000, got {}",
                protect.sshd_oom_score_adj
            ),
        });
    }
    let n = raw.notify;
    let extra_terminals: Vec<PathBuf> = need(n.extra_terminals, "notify.extra_terminals")?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    if let Some(bad) = extra_terminals
        .iter()
        .find(|p| !p.starts_with("/dev/") || p.components().any(|c| c.as_os_str() == ".."))
    {
        return Err(ConfigError::Invalid {
            key: "notify.extra_terminals",
            message: format!("{} is not a terminal below /dev/", bad.display()),
        });
    }
    let notify = crate::guard::notify::Settings {
        terminals: need(n.terminals, "notify.terminals")?,
        extra_terminals,
        on_suspend: need(n.on_suspend, "notify.on_suspend")?,
        on_resume: need(n.on_resume, "notify.on_resume")?,
        on_keep: need(n.on_keep, "notify.on_keep")?,
        on_kill: need(n.on_kill, "notify.on_kill")?,
        hook_timeout: duration(n.hook_timeout, "notify.hook_timeout")?,
        run: None,
    };
    Ok(GuardConfig {
        sampling,
        thresholds,
        actions,
        victims,
        protect,
        notify,
    })
}

#[cfg(test)]
mod tests;
