//! The cgroup `memtrace run` starts its pipeline in, so that the guard can freeze it without
//! the shell's job control noticing, its memory is accounted exactly (peak, OOM kills and
//! `memory.high` throttling in the run's summary), and `--memory-high` / `--memory-max` can
//! limit it.
//!
//! Where: on the hierarchy that holds the memory controller ([`cgroup::memory_hierarchy`]).
//! v2 under systemd: in the transient scope `memtrace-run-PID.scope` that systemd delegated to
//! the run ([`super::run_scope`]): memtrace moves itself into its `supervisor` child, enables
//! the memory controller for the scope's children and makes `pipeline` beside it; it is frozen
//! with `cgroup.freeze`, and the scope goes when memtrace exits. v2 elsewhere (no systemd,
//! `--no-scope`): `memtrace-run-PID` at the root of the unified hierarchy, with the memory
//! controller enabled for the root's children. v1 (hybrid hosts): a memory cgroup
//! `memtrace-run-PID` below memtrace's own memory cgroup (a container's limit still covers the
//! pipeline), and a freezer cgroup of the same name at the root of the v1 freezer hierarchy. v1
//! has no `memory.high`: `--memory-high` is refused there (`memory.soft_limit_in_bytes` only
//! orders global reclaim, which is not what the flag promises).
//!
//! The child enters the cgroups before it execs: their `cgroup.procs` files are opened here and
//! a pre-exec hook writes `0` (the writer itself) to each ([`enter_on_exec`]), so no byte of the
//! pipeline runs outside. The directories are removed when the [`RunCgroup`] is dropped, and the
//! empty ones a run killed with SIGKILL left behind at the root are removed by the next run.
use std::{
    fs, io,
    os::{fd::OwnedFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use rustix::fs::{Mode, OFlags, open};

use crate::{
    host::{
        cgroup::{self, Version},
        freezer, own_cgroup, privilege,
        units::mib,
    },
    record::run_scope,
};

/// Name prefix of the run cgroups.
pub const PREFIX: &str = "memtrace-run";

/// `--memory-high` / `--memory-max`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Throttle and reclaim above this (v2 `memory.high`).
    pub high: Option<u64>,
    /// OOM-kill within the cgroup above this (`memory.max`, v1 `memory.limit_in_bytes`).
    pub max: Option<u64>,
}

impl Limits {
    /// Whether a limit was asked for.
    pub fn any(&self) -> bool {
        self.high.is_some() || self.max.is_some()
    }
}

/// Why the run gets no cgroup of its own.
#[derive(Debug, thiserror::Error)]
pub enum RunCgroupError {
    /// Only root may make cgroups.
    #[error("memtrace is not running as root")]
    NotRoot,
    /// No memory controller is mounted.
    #[error("no memory cgroup controller is mounted")]
    NoHierarchy,
    /// Making or setting up a directory failed (a read-only cgroupfs, as in most containers).
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The file or directory.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// `--memory-high` on v1.
    #[error("--memory-high needs cgroup v2 (v1 has no memory.high); use --memory-max")]
    HighOnV1,
    /// At the root of the hierarchy the pipeline would leave a limit it is under now.
    #[error(
        "its cgroup {0} has a memory limit that the pipeline would leave in a transient scope or a cgroup at the root of the hierarchy"
    )]
    WouldLeaveLimit(String),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RunCgroupError {
    let path = path.display().to_string();
    move |source| RunCgroupError::Io { what, path, source }
}

/// The run's cgroups (see the module doc); removed on drop.
#[derive(Debug)]
pub struct RunCgroup {
    /// The memory cgroup (on v2 also the one frozen).
    pub memory: PathBuf,
    /// Its hierarchy.
    pub version: Version,
    /// The v1 freezer cgroup (v1 memory only).
    pub freezer: Option<PathBuf>,
    /// What was set.
    pub limits: Limits,
    /// The transient systemd scope it is in, if any.
    pub scope: Option<String>,
}

/// What the cgroup counted for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accounting {
    /// The most it ever used (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`), page cache
    /// included; `None` where the kernel has no such file (v2 before 5.19).
    pub peak_bytes: Option<u64>,
    /// OOM kills inside it.
    pub oom_kills: u64,
    /// How often it went over `memory.high` and was throttled (v2 `memory.events` `high`).
    pub high_events: Option<u64>,
}

impl RunCgroup {
    /// Makes the run's cgroups (named for `pid`, memtrace's own) with `limits`.
    pub fn create(proc_root: &Path, pid: u32, limits: Limits) -> Result<Self, RunCgroupError> {
        if !privilege::is_root() {
            return Err(RunCgroupError::NotRoot);
        }
        let (mount, version) =
            cgroup::memory_hierarchy(proc_root).ok_or(RunCgroupError::NoHierarchy)?;
        if version == Version::V1 && limits.high.is_some() {
            return Err(RunCgroupError::HighOnV1);
        }
        let name = format!("{PREFIX}-{pid}");
        if version == Version::V2
            && let Some(scope) = own_scope_dir(proc_root, &mount, pid)
        {
            let memory = enter_scope(&scope)?;
            let made = Self {
                memory,
                version,
                freezer: None,
                limits,
                scope: Some(run_scope::unit_name(pid)),
            };
            made.set_limits()?;
            return Ok(made);
        }
        let parent = match version {
            Version::V2 => {
                if let Some(limited) = run_scope::own_relative(proc_root).and_then(|own| {
                    run_scope::limited_among(&mount, &run_scope::leaving(&own, None))
                }) {
                    return Err(RunCgroupError::WouldLeaveLimit(limited));
                }
                // Harmless when already on; refused (and then the limit files are missing) when
                // the root holds processes of its own, as a container's namespace root does.
                let _ = fs::write(mount.join("cgroup.subtree_control"), "+memory");
                mount.clone()
            }
            Version::V1 => own_cgroup::own_dir(proc_root, &mount, version).unwrap_or(mount),
        };
        freezer::remove_leftovers(proc_root, &parent, PREFIX);
        let _ = fs::remove_dir(parent.join(&name));
        let memory = freezer::mkdir_below(&parent, &name)
            .map_err(io_err("creating", &parent.join(&name)))?;
        let mut made = Self {
            memory,
            version,
            freezer: None,
            limits,
            scope: None,
        };
        if version == Version::V1
            && let Some(mount) = freezer::v1_freezer_mount(proc_root)
        {
            freezer::remove_leftovers(proc_root, &mount, PREFIX);
            let _ = fs::remove_dir(mount.join(&name));
            made.freezer = Some(
                freezer::mkdir_below(&mount, &name)
                    .map_err(io_err("creating", &mount.join(&name)))?,
            );
        }
        made.set_limits()?;
        Ok(made)
    }

    /// Writes `--memory-max` (and no swap on v2) and `--memory-high`.
    fn set_limits(&self) -> Result<(), RunCgroupError> {
        let (limits, version) = (self.limits, self.version);
        if let Some(max) = limits.max {
            let file = self.memory.join(version.limit_file());
            fs::write(&file, max.to_string()).map_err(io_err("writing", &file))?;
            if version == Version::V2 {
                // No swap either: the limit is what the pipeline gets.
                let _ = fs::write(self.memory.join("memory.swap.max"), "0");
            }
        }
        if let Some(high) = limits.high {
            let file = self.memory.join("memory.high");
            fs::write(&file, high.to_string()).map_err(io_err("writing", &file))?;
        }
        Ok(())
    }

    /// Its directories.
    pub fn dirs(&self) -> Vec<&Path> {
        std::iter::once(self.memory.as_path())
            .chain(self.freezer.as_deref())
            .collect()
    }

    /// The `cgroup.procs` files to enter, opened for writing (see [`enter_on_exec`]).
    pub fn entry_files(&self) -> Result<Vec<OwnedFd>, RunCgroupError> {
        self.dirs()
            .into_iter()
            .map(|dir| {
                let file = dir.join("cgroup.procs");
                open(&file, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|errno| io_err("opening", &file)(io::Error::from(errno)))
            })
            .collect()
    }

    /// What the cgroup counted.
    pub fn accounting(&self) -> Accounting {
        let peak_file = match self.version {
            Version::V2 => "memory.peak",
            Version::V1 => "memory.max_usage_in_bytes",
        };
        Accounting {
            peak_bytes: fs::read_to_string(self.memory.join(peak_file))
                .ok()
                .and_then(|text| text.trim().parse().ok()),
            oom_kills: cgroup::oom_kills(&self.memory, self.version),
            high_events: (self.version == Version::V2)
                .then(|| fs::read_to_string(self.memory.join("memory.events")).ok())
                .flatten()
                .and_then(|text| cgroup::stat_value(&text, "high")),
        }
    }

    /// The summary line: where it ran, its peak, its limit, its OOM kills.
    pub fn summary(&self) -> String {
        summary_line(&self.memory, self.accounting(), self.limits)
    }
}

/// The run summary's cgroup line.
pub fn summary_line(dir: &Path, acc: Accounting, limits: Limits) -> String {
    let mut line = format!("[memtrace] cgroup {}: peak ", dir.display());
    match acc.peak_bytes {
        Some(peak) => line.push_str(&format!("{} MiB", mib(peak))),
        None => line.push_str("unknown (no memory.peak before Linux 5.19)"),
    }
    if let Some(max) = limits.max {
        line.push_str(&format!(" of --memory-max {} MiB", mib(max)));
    }
    if let Some(high) = limits.high {
        line.push_str(&format!(", --memory-high {} MiB", mib(high)));
    }
    if let Some(times) = acc.high_events.filter(|&n| n > 0) {
        line.push_str(&format!(
            ", throttled above memory.high {times} time{}",
            if times == 1 { "" } else { "s" }
        ));
    }
    match acc.oom_kills {
        0 => line.push_str(", no OOM kill"),
        1 => line.push_str(", 1 OOM kill inside it (the pipeline hit its own limit)"),
        n => line.push_str(&format!(
            ", {n} OOM kills inside it (the pipeline hit its own limit)"
        )),
    }
    line
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        for dir in self.dirs() {
            // A process of the pipeline may still be on its way out: a few tries.
            let removed = (0..20).any(|_| {
                let done = fs::remove_dir(dir).is_ok() || !dir.exists();
                if !done {
                    std::thread::sleep(Duration::from_millis(50));
                }
                done
            });
            if !removed {
                eprintln!(
                    "[memtrace] left {} behind: processes of the pipeline still run in it",
                    dir.display()
                );
            }
        }
    }
}

/// The directory of the transient scope made for the run of `pid` ([`run_scope`]), when
/// memtrace runs in it (or already in its `supervisor`).
fn own_scope_dir(proc_root: &Path, mount: &Path, pid: u32) -> Option<PathBuf> {
    let own = own_cgroup::own_dir(proc_root, mount, Version::V2)?;
    run_scope::scope_of(&own, pid).map(Path::to_path_buf)
}

/// Inside the delegated scope `scope`: moves memtrace into `supervisor` (a cgroup with
/// processes cannot give controllers to its children), enables the memory controller for the
/// scope's children and makes the pipeline's cgroup. Returns the pipeline's.
fn enter_scope(scope: &Path) -> Result<PathBuf, RunCgroupError> {
    let supervisor = scope.join(run_scope::SUPERVISOR);
    match fs::create_dir(&supervisor) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
            return Err(io_err("creating", &supervisor)(err));
        }
        _ => {}
    }
    freezer::move_into(&supervisor, std::process::id())
        .map_err(io_err("moving memtrace into", &supervisor))?;
    let control = scope.join("cgroup.subtree_control");
    fs::write(&control, "+memory")
        .map_err(io_err("enabling the memory controller in", &control))?;
    let pipeline = scope.join(run_scope::PIPELINE);
    let _ = fs::remove_dir(&pipeline);
    fs::create_dir(&pipeline).map_err(io_err("creating", &pipeline))?;
    Ok(pipeline)
}

/// Makes the child started by `cmd` enter the cgroups whose `cgroup.procs` files `procs` are,
/// before it execs (spawning fails if it cannot).
pub fn enter_on_exec(cmd: &mut Command, procs: Vec<OwnedFd>) {
    if procs.is_empty() {
        return;
    }
    // SAFETY: the hook runs in the forked child before exec. It only calls write(2) on
    // descriptors opened before the fork and builds an io::Error from a raw errno: no
    // allocation, no lock, nothing that is not async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &procs {
                rustix::io::write(fd, b"0")
                    .map_err(|errno| io::Error::from_raw_os_error(errno.raw_os_error()))?;
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    //! The summary line says the peak, the limits, the throttling and the OOM kills.
    use super::*;

    #[test]
    fn the_summary_names_peak_limit_and_oom_kills() {
        let dir = Path::new("/sys/fs/cgroup/memory/memtrace-run-7");
        let line = summary_line(
            dir,
            Accounting {
                peak_bytes: Some(64 << 20),
                oom_kills: 1,
                high_events: Some(0),
            },
            Limits {
                high: None,
                max: Some(64 << 20),
            },
        );
        assert_eq!(
            line,
            "[memtrace] cgroup /sys/fs/cgroup/memory/memtrace-run-7: peak 64.0 MiB of --memory-max 64.0 MiB, 1 OOM kill inside it (the pipeline hit its own limit)"
        );
        let quiet = summary_line(
            dir,
            Accounting {
                peak_bytes: None,
                oom_kills: 0,
                high_events: None,
            },
            Limits::default(),
        );
        assert!(quiet.ends_with("no memory.peak before Linux 5.19), no OOM kill"));
        let throttled = summary_line(
            Path::new("/sys/fs/cgroup/user.slice/memtrace-run-7.scope/pipeline"),
            Accounting {
                peak_bytes: Some(50 << 20),
                oom_kills: 0,
                high_events: Some(12),
            },
            Limits {
                high: Some(48 << 20),
                max: None,
            },
        );
        assert!(
            throttled.ends_with(
                "peak 50.0 MiB, --memory-high 48.0 MiB, throttled above memory.high 12 times, no OOM kill"
            ),
            "{throttled}"
        );
    }
}
