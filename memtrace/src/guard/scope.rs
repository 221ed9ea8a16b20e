//! What the guard watches: the whole machine (MemTotal − MemAvailable) or one cgroup (its
//! usage minus inactive file cache, against its limit), v1 or v2, with the PSI file that goes
//! with it and the set of pids inside.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::host::{
    cgroup::{self, Version},
    procfs,
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

/// The guard's scope.
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

/// A cgroup's usage, limit and stat files, open.
#[derive(Debug)]
struct CgroupFiles {
    usage: procfs::OpenFile,
    limit: procfs::OpenFile,
    stat: procfs::OpenFile,
    inactive_key: &'static str,
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
        let inactive = cgroup::stat_value(files.stat.text()?, files.inactive_key).unwrap_or(0);
        // v1 reports "unlimited" as a huge page-aligned number.
        let limit = number(files.limit.text()?, "cgroup limit")?
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
                limit: open(&path.join(version.limit_file()))?,
                stat: open(&path.join("memory.stat"))?,
                inactive_key: version.inactive_file_key(),
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

    /// For logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Machine => "machine".to_owned(),
            Self::Cgroup { path, version } => format!("cgroup {} ({version:?})", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The cgroup check and the machine usage.
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
}
