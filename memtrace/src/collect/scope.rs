//! Whose memory counts: the whole machine (MemTotal − MemAvailable) or one memory cgroup (its
//! usage minus inactive file cache, against the lowest limit that binds it), v1 or v2, with
//! the PSI file that goes with it and the set of pids inside.
//!
//! One scope for every command: [`ScopeArgs::select`] picks `--machine`, `--cgroup PATH`, or by
//! default the cgroup memtrace itself runs in when a limit below the machine's RAM binds it
//! (a container: [`crate::host::own_cgroup`]), else the machine. `status`, `doctor`, `swap`,
//! `run` and the guard all show and measure against what it picked.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::host::{
    cgroup::{self, Version},
    own_cgroup::{self, Detected},
    procfs,
    units::human_bytes,
};

/// A scope that cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// Not a memory cgroup directory.
    #[error("{0} is not a memory cgroup (no memory.current or memory.usage_in_bytes there)")]
    NotCgroup(String),
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A file had unexpected content.
    #[error("unexpected content in {0}")]
    Format(String),
    /// A file could not be read.
    #[error(transparent)]
    Proc(#[from] procfs::ProcError),
}

/// Whose memory counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole machine.
    Machine,
    /// One cgroup and its descendants.
    Cgroup {
        /// Its directory.
        path: PathBuf,
        /// Its hierarchy.
        version: Version,
    },
}

/// The scope flags every command that measures memory takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ScopeArgs {
    /// Measure against the whole machine (MemTotal) even when memtrace runs in a
    /// memory-limited cgroup (a container).
    #[arg(long, conflicts_with = "cgroup")]
    pub machine: bool,
    /// Measure against this memory cgroup (its usage against its limit, its PSI) instead of
    /// the one memtrace runs in [default: memtrace's own cgroup when a limit below the
    /// machine's RAM binds it (a container), else the machine].
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
}

/// How the scope was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--machine`.
    MachineFlag,
    /// Nothing limits memtrace below the machine's RAM (why, in words).
    NoLimit(String),
    /// memtrace runs in (or below) this cgroup and its limit is below the machine's RAM.
    Container,
    /// `--cgroup PATH`.
    CgroupFlag,
}

/// The scope a command uses, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The scope.
    pub scope: Scope,
    /// How it was chosen.
    pub origin: Origin,
}

impl ScopeArgs {
    /// The scope these flags ask for: `--machine`, `--cgroup PATH`, else detected from the
    /// cgroup memtrace runs in (see the module doc).
    pub fn select(&self, proc_root: &Path) -> Result<Selected, ScopeError> {
        if self.machine {
            return Ok(Selected {
                scope: Scope::Machine,
                origin: Origin::MachineFlag,
            });
        }
        if let Some(path) = &self.cgroup {
            return Ok(Selected {
                scope: Scope::cgroup(path)?,
                origin: Origin::CgroupFlag,
            });
        }
        let total = procfs::read_meminfo(proc_root)?.total;
        Ok(match own_cgroup::detect(proc_root, total) {
            Detected::Limited(limited) => Selected {
                scope: Scope::Cgroup {
                    path: limited.path,
                    version: limited.version,
                },
                origin: Origin::Container,
            },
            Detected::Unlimited(why) => Selected {
                scope: Scope::Machine,
                origin: Origin::NoLimit(why),
            },
        })
    }
}

impl Selected {
    /// Whether memtrace measures against the limit of the container it runs in.
    pub fn in_container(&self) -> bool {
        self.origin == Origin::Container
    }

    /// What the limit is called in output: `container limit`, `cgroup limit` or `RAM`.
    pub fn limit_name(&self) -> &'static str {
        match (&self.scope, &self.origin) {
            (Scope::Machine, _) => "RAM",
            (_, Origin::Container) => "container limit",
            _ => "cgroup limit",
        }
    }

    /// One line for logs: `container limit 640.0 MiB (cgroup PATH, v2; memtrace runs there,
    /// --machine measures the machine)`, `machine (RAM 24.0 GiB; …)`.
    pub fn describe(&self, usage: Option<&Usage>) -> String {
        let limit = usage.map_or_else(String::new, |u| format!(" {}", human_bytes(u.limit_bytes)));
        match (&self.scope, &self.origin) {
            (Scope::Machine, Origin::MachineFlag) => format!("machine (RAM{limit}; --machine)"),
            (Scope::Machine, Origin::NoLimit(why)) => format!("machine (RAM{limit}; {why})"),
            (Scope::Machine, _) => format!("machine (RAM{limit})"),
            (Scope::Cgroup { path, version }, origin) => format!(
                "{}{limit} (cgroup {}, {}{})",
                self.limit_name(),
                path.display(),
                version_name(*version),
                if *origin == Origin::Container {
                    "; memtrace runs there, --machine measures the whole machine"
                } else {
                    ""
                }
            ),
        }
    }

    /// The JSON form, with the scope's usage now (`None` when it could not be read).
    pub fn report(&self, usage: Option<&Usage>) -> ScopeReport {
        let (path, version, swap_max_bytes) = match &self.scope {
            Scope::Machine => (None, None, None),
            Scope::Cgroup { path, version } => (
                Some(path.display().to_string()),
                Some(version_name(*version)),
                usage.and_then(|u| cgroup::swap_allowance(path, *version, u.limit_bytes)),
            ),
        };
        ScopeReport {
            kind: match (&self.scope, &self.origin) {
                (Scope::Machine, _) => "machine",
                (_, Origin::Container) => "container",
                _ => "cgroup",
            },
            path,
            version,
            limit_bytes: usage.map(|u| u.limit_bytes),
            used_bytes: usage.map(|u| u.used_bytes),
            used_percent: usage.map(Usage::percent),
            swap_max_bytes,
            why: match &self.origin {
                Origin::MachineFlag => "--machine".to_owned(),
                Origin::NoLimit(why) => why.clone(),
                Origin::Container => "memtrace runs in this cgroup (or below it) and its memory \
                                      limit is below the machine's RAM"
                    .to_owned(),
                Origin::CgroupFlag => "--cgroup".to_owned(),
            },
        }
    }
}

/// `v1` or `v2`.
pub fn version_name(version: Version) -> &'static str {
    match version {
        Version::V1 => "v1",
        Version::V2 => "v2",
    }
}

/// The scope in `--json` output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScopeReport {
    /// `machine`, `container` (detected) or `cgroup` (`--cgroup`).
    pub kind: &'static str,
    /// The cgroup's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `v1` or `v2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    /// The limit measured against (MemTotal for the machine).
    pub limit_bytes: Option<u64>,
    /// In use and not simply droppable.
    pub used_bytes: Option<u64>,
    /// Used as a percentage of the limit.
    pub used_percent: Option<f64>,
    /// Swap the cgroup may use besides its limit (`memory.swap.max`), when limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_max_bytes: Option<u64>,
    /// Why this scope.
    pub why: String,
}

/// A cgroup's usage, limit and stat files, open.
#[derive(Debug)]
struct CgroupFiles {
    usage: procfs::OpenFile,
    /// Its own limit file, then (v2) every ancestor's.
    limits: Vec<procfs::OpenFile>,
    stat: procfs::OpenFile,
    version: Version,
}

/// The files a scope's usage is read from, kept open between rounds.
#[derive(Debug)]
pub struct ScopeFiles {
    meminfo: procfs::OpenFile,
    cgroup: Option<CgroupFiles>,
}

fn number(text: &str, what: &str) -> Result<Option<u64>, ScopeError> {
    cgroup::parse_limit(text).map_err(|_| ScopeError::Format(what.to_owned()))
}

impl ScopeFiles {
    /// Reads the current usage.
    pub fn usage(&mut self) -> Result<Usage, ScopeError> {
        let total = procfs::parse_meminfo(self.meminfo.text()?)
            .ok_or_else(|| ScopeError::Format("meminfo".to_owned()))?;
        let Some(files) = &mut self.cgroup else {
            return Ok(Usage {
                used_bytes: total.total.saturating_sub(total.available),
                limit_bytes: total.total,
            });
        };
        let usage = number(files.usage.text()?, "cgroup usage")?.unwrap_or(0);
        let mut limits = Vec::with_capacity(files.limits.len());
        for file in &mut files.limits {
            limits.push(number(file.text()?, "cgroup limit")?);
        }
        let stat = files.stat.text()?;
        let inactive = cgroup::stat_value(stat, files.version.inactive_file_key()).unwrap_or(0);
        // v1 reports "unlimited" as a huge page-aligned number.
        let limit = cgroup::lowest_limit(limits, Some(stat), files.version)
            .filter(|&l| l < total.total)
            .unwrap_or(total.total);
        Ok(Usage {
            used_bytes: usage.saturating_sub(inactive),
            limit_bytes: limit,
        })
    }
}

/// Memory in use in a scope.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Bytes in use that cannot simply be dropped.
    pub used_bytes: u64,
    /// The scope's limit (MemTotal for the machine or an unlimited cgroup).
    pub limit_bytes: u64,
}

impl Usage {
    /// Used as a percentage of the limit.
    pub fn percent(&self) -> f64 {
        crate::collect::system::percent(self.used_bytes, self.limit_bytes)
    }
}

impl Scope {
    /// Parses `--cgroup PATH`.
    pub fn cgroup(path: &Path) -> Result<Self, ScopeError> {
        let version =
            Version::of(path).ok_or_else(|| ScopeError::NotCgroup(path.display().to_string()))?;
        Ok(Self::Cgroup {
            path: path.to_owned(),
            version,
        })
    }

    /// Current usage (opens the files for one read; a loop keeps [`ScopeFiles`] instead).
    pub fn usage(&self, proc_root: &Path) -> Result<Usage, ScopeError> {
        self.open_files(proc_root)?.usage()
    }

    /// The files the usage is read from, opened once.
    pub fn open_files(&self, proc_root: &Path) -> Result<ScopeFiles, ScopeError> {
        let open = |path: &Path| procfs::OpenFile::open(path).map_err(ScopeError::from);
        let meminfo = open(&proc_root.join("meminfo"))?;
        let cgroup = match self {
            Self::Machine => None,
            Self::Cgroup { path, version } => Some(CgroupFiles {
                usage: open(&path.join(version.usage_file()))?,
                limits: cgroup::limit_dirs(path, *version)
                    .iter()
                    .map(|dir| open(&dir.join(version.limit_file())))
                    .collect::<Result<_, _>>()?,
                stat: open(&path.join("memory.stat"))?,
                version: *version,
            }),
        };
        Ok(ScopeFiles { meminfo, cgroup })
    }

    /// The PSI file for this scope: the cgroup's own on v2, the system's otherwise.
    pub fn pressure_file(&self, proc_root: &Path) -> PathBuf {
        match self {
            Self::Cgroup {
                path,
                version: Version::V2,
            } => path.join("memory.pressure"),
            _ => proc_root.join("pressure/memory"),
        }
    }

    /// Pids in the scope (`None` for the machine: everything).
    pub fn pids(&self) -> Result<Option<HashSet<u32>>, ScopeError> {
        let Self::Cgroup { path, .. } = self else {
            return Ok(None);
        };
        let pids = cgroup::pids_below(path).map_err(|source| ScopeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Some(pids))
    }

    /// For logs and lock messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Machine => "machine".to_owned(),
            Self::Cgroup { path, version } => format!("cgroup {} ({version:?})", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The cgroup check, the machine usage, the limit that binds a child cgroup, selection by
    //! flag, and the JSON form.
    use std::fs;

    use super::*;

    #[test]
    fn non_cgroup_is_refused() {
        let err = Scope::cgroup(Path::new("/proc")).expect_err("not a cgroup");
        assert!(err.to_string().contains("is not a memory cgroup"));
    }

    #[test]
    fn machine_usage_reads_meminfo() {
        let usage = Scope::Machine.usage(Path::new("/proc")).expect("meminfo");
        assert!(usage.limit_bytes > 0 && usage.used_bytes <= usage.limit_bytes);
        assert!(usage.percent() > 0.0 && usage.percent() < 100.0);
    }

    /// A fake /proc with 24 GiB of RAM, and a v2 cgroup `parent/child` below `cg/`.
    fn v2_tree(parent_max: &str, child_max: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path();
        fs::create_dir_all(base.join("proc")).expect("mkdir");
        fs::write(
            base.join("proc/meminfo"),
            "MemTotal: 25165824 kB\nMemFree: 1 kB\nMemAvailable: 20971520 kB\n",
        )
        .expect("meminfo");
        let child = base.join("cg/parent/child");
        fs::create_dir_all(&child).expect("mkdir");
        fs::write(base.join("cg/parent/memory.max"), parent_max).expect("write");
        for (file, text) in [
            ("memory.current", "314572800\n"),
            ("memory.max", child_max),
            ("memory.stat", "anon 1\ninactive_file 104857600\n"),
        ] {
            fs::write(child.join(file), text).expect("write");
        }
        (tmp, child)
    }

    #[test]
    fn a_parents_lower_limit_binds_a_cgroup_scope() {
        let (tmp, child) = v2_tree("536870912\n", "max\n");
        let scope = Scope::cgroup(&child).expect("a v2 cgroup");
        let proc_root = tmp.path().join("proc");
        let mut files = scope.open_files(&proc_root).expect("open");
        assert_eq!(
            files.usage().expect("usage"),
            Usage {
                used_bytes: 200 << 20,
                limit_bytes: 512 << 20
            }
        );
        // Limits are re-read every round: the parent's is raised, the child's lowered.
        fs::write(tmp.path().join("cg/parent/memory.max"), "max\n").expect("write");
        assert_eq!(files.usage().expect("usage").limit_bytes, 24 << 30);
        fs::write(child.join("memory.max"), "268435456\n").expect("write");
        assert_eq!(files.usage().expect("usage").limit_bytes, 256 << 20);
    }

    #[test]
    fn flags_pick_the_scope_and_json_says_why() {
        let (tmp, child) = v2_tree("max\n", "671088640\n");
        let proc_root = tmp.path().join("proc");
        let machine = ScopeArgs {
            machine: true,
            cgroup: None,
        }
        .select(&proc_root)
        .expect("machine");
        assert_eq!(machine.scope, Scope::Machine);
        assert_eq!(machine.limit_name(), "RAM");
        let picked = ScopeArgs {
            machine: false,
            cgroup: Some(child.clone()),
        }
        .select(&proc_root)
        .expect("cgroup");
        assert_eq!(picked.origin, Origin::CgroupFlag);
        let usage = picked.scope.usage(&proc_root).expect("usage");
        let json = serde_json::to_value(picked.report(Some(&usage))).expect("json");
        assert_eq!(json["kind"], "cgroup");
        assert_eq!(json["version"], "v2");
        assert_eq!(json["limit_bytes"].as_u64(), Some(640 << 20));
        assert_eq!(json["used_bytes"].as_u64(), Some(200 << 20));
        // No memory cgroup mounted in the fake /proc: detection falls back to the machine.
        let detected = ScopeArgs::default().select(&proc_root).expect("detects");
        assert!(
            matches!(detected.origin, Origin::NoLimit(_)),
            "{detected:?}"
        );
        let text = detected.describe(Some(&Usage {
            used_bytes: 0,
            limit_bytes: 24 << 30,
        }));
        assert!(
            text.starts_with("machine (RAM 24.0 GiB; no memory cgroup"),
            "{text}"
        );
        let container = Selected {
            scope: picked.scope.clone(),
            origin: Origin::Container,
        };
        assert_eq!(container.limit_name(), "container limit");
        assert!(
            container
                .describe(Some(&usage))
                .starts_with("container limit 640.0 MiB (cgroup "),
            "{}",
            container.describe(Some(&usage))
        );
        assert_eq!(container.report(None).kind, "container");
    }
}
