//! `memtrace run` on cgroup v2 under systemd: before anything else, it executes itself again
//! through `systemd-run --scope -p Delegate=yes`, so that it runs (same pid, same terminal,
//! same foreground job) in a transient scope of its own, `memtrace-run-PID.scope`, in the slice
//! it was started from (an ssh user's `user-UID.slice`, a service's `system.slice`): slice
//! limits and per-user accounting still cover the pipeline, `systemctl status` and
//! `systemd-cgtop` show it, and systemd, which owns the rest of the tree, has handed this
//! subtree to memtrace. Inside, [`super::run_cgroup`] moves memtrace into `supervisor` and makes
//! the pipeline's cgroup beside it. The scope ends with memtrace and systemd removes it, both
//! cgroups included.
//!
//! Where systemd is not the init (most containers), without root, on v1 or with `--no-scope`,
//! the run stays where it is and its cgroup is made at the root of the hierarchy instead.
//! [`decide`] is the pure choice; [`enter`] the exec.
use std::{
    ffi::OsString,
    fmt,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use crate::host::{
    cgroup::{self, Version},
    own_cgroup, privilege,
};

/// The transient scope of the run whose memtrace has pid `pid`.
pub fn unit_name(pid: u32) -> String {
    format!("memtrace-run-{pid}.scope")
}

/// The name of memtrace's cgroup inside its scope.
pub const SUPERVISOR: &str = "supervisor";
/// The name of the pipeline's cgroup inside the scope.
pub const PIPELINE: &str = "pipeline";

/// What decides where the run goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// memtrace runs as root.
    pub root: bool,
    /// The hierarchy of the memory controller.
    pub version: Option<Version>,
    /// systemd is the init and answers on its private socket.
    pub systemd: bool,
    /// Where `systemd-run` is.
    pub systemd_run: Option<PathBuf>,
    /// memtrace's own v2 cgroup, as `/proc/self/cgroup` writes it.
    pub own_cgroup: Option<String>,
    /// memtrace's pid.
    pub pid: u32,
    /// `--no-scope`.
    pub no_scope: bool,
}

/// Why the run stays where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stay {
    /// `--no-scope`.
    Asked,
    /// Not root: no cgroup of its own either.
    NotRoot,
    /// The memory controller is on v1 (or missing): the run's cgroups are made there.
    NotV2,
    /// systemd is not the init, or its socket is missing.
    NoSystemd,
    /// No `systemd-run` on the PATH.
    NoSystemdRun,
}

impl fmt::Display for Stay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Asked => "--no-scope",
            Self::NotRoot => "not root",
            Self::NotV2 => "the memory controller is not on cgroup v2",
            Self::NoSystemd => "systemd is not the init here",
            Self::NoSystemdRun => "no systemd-run on the PATH",
        })
    }
}

/// Where the run goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// It already runs in its own scope (this is the second execution).
    Inside,
    /// Execute again in a transient scope in this slice (`None`: systemd's default).
    Enter {
        /// The slice.
        slice: Option<String>,
    },
    /// Stay here.
    Stay(Stay),
}

/// Where the run goes (see the module doc).
pub fn decide(facts: &Facts) -> Placement {
    let own = facts.own_cgroup.as_deref().unwrap_or("/");
    if in_own_scope(own, facts.pid) {
        return Placement::Inside;
    }
    let stay = if facts.no_scope {
        Some(Stay::Asked)
    } else if !facts.root {
        Some(Stay::NotRoot)
    } else if facts.version != Some(Version::V2) {
        Some(Stay::NotV2)
    } else if !facts.systemd {
        Some(Stay::NoSystemd)
    } else if facts.systemd_run.is_none() {
        Some(Stay::NoSystemdRun)
    } else {
        None
    };
    match stay {
        Some(why) => Placement::Stay(why),
        None => Placement::Enter {
            slice: slice_of(own).map(str::to_owned),
        },
    }
}

/// Whether the cgroup `own` (`/proc/self/cgroup`'s path) is the scope made for `pid`, or one of
/// its children (memtrace already moved into `supervisor`).
pub fn in_own_scope(own: &str, pid: u32) -> bool {
    let unit = unit_name(pid);
    let mut parts = own.rsplit('/');
    let last = parts.next().unwrap_or_default();
    last == unit || (last == SUPERVISOR && parts.next() == Some(unit.as_str()))
}

/// The system manager's slice that holds the cgroup `own`: the last of the `.slice` components
/// that lead the path (`/user.slice/user-0.slice/session-3.scope` → `user-0.slice`). Slices
/// below a service (a user manager's `app.slice` under `user@1000.service`) are another
/// manager's units and are not counted.
pub fn slice_of(own: &str) -> Option<&str> {
    own.split('/')
        .filter(|part| !part.is_empty())
        .take_while(|part| part.ends_with(".slice"))
        .last()
}

/// Reads the facts of this process.
pub fn facts(proc_root: &Path, no_scope: bool) -> Facts {
    let version = cgroup::memory_hierarchy(proc_root).map(|(_, version)| version);
    let own_cgroup = std::fs::read_to_string(proc_root.join("self/cgroup"))
        .ok()
        .and_then(|text| own_cgroup::relative_path(&text, Version::V2).map(str::to_owned));
    Facts {
        root: privilege::is_root(),
        version,
        systemd: Path::new("/run/systemd/system").is_dir()
            && Path::new("/run/systemd/private").exists(),
        systemd_run: find_on_path("systemd-run"),
        own_cgroup,
        pid: std::process::id(),
        no_scope,
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .as_deref()
        .map(std::env::split_paths)?
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The `systemd-run` command line that executes `exe args` again in the scope of `pid`.
pub fn command_line(
    systemd_run: &Path,
    pid: u32,
    slice: Option<&str>,
    exe: &Path,
    args: &[OsString],
) -> Command {
    let mut cmd = Command::new(systemd_run);
    cmd.args(["--scope", "--quiet", "--collect"])
        .arg(format!("--unit={}", unit_name(pid)))
        .args(["--property=Delegate=yes", "--description=memtrace run"]);
    if let Some(slice) = slice {
        cmd.arg(format!("--slice={slice}"));
    }
    cmd.arg("--").arg(exe).args(args);
    cmd
}

/// Executes this `memtrace run` again inside its transient scope when [`decide`] says so: on
/// success it does not return. Otherwise returns why it stays (`None`: it is inside already).
pub fn enter(no_scope: bool) -> Option<Stay> {
    let facts = facts(Path::new("/proc"), no_scope);
    let slice = match decide(&facts) {
        Placement::Inside => return None,
        Placement::Stay(why) => return Some(why),
        Placement::Enter { slice } => slice,
    };
    let (Some(systemd_run), Ok(exe)) = (&facts.systemd_run, std::env::current_exe()) else {
        return Some(Stay::NoSystemdRun);
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = command_line(systemd_run, facts.pid, slice.as_deref(), &exe, &args).exec();
    eprintln!(
        "[memtrace] info: could not start {}: {err}; the run stays in its cgroup",
        systemd_run.display()
    );
    Some(Stay::NoSystemdRun)
}

#[cfg(test)]
mod tests {
    //! The choice of placement from plain facts, the slice of a cgroup path, the command line.
    use super::*;

    fn systemd_host() -> Facts {
        Facts {
            root: true,
            version: Some(Version::V2),
            systemd: true,
            systemd_run: Some(PathBuf::from("/usr/bin/systemd-run")),
            own_cgroup: Some("/user.slice/user-0.slice/session-3.scope".to_owned()),
            pid: 377,
            no_scope: false,
        }
    }

    #[test]
    fn a_root_run_under_systemd_on_v2_enters_a_scope_in_its_slice() {
        assert_eq!(
            decide(&systemd_host()),
            Placement::Enter {
                slice: Some("user-0.slice".to_owned())
            }
        );
        let at_root = Facts {
            own_cgroup: Some("/".to_owned()),
            ..systemd_host()
        };
        assert_eq!(decide(&at_root), Placement::Enter { slice: None });
    }

    #[test]
    fn the_second_execution_is_inside_and_does_not_enter_again() {
        for own in [
            "/user.slice/user-0.slice/memtrace-run-377.scope",
            "/user.slice/user-0.slice/memtrace-run-377.scope/supervisor",
        ] {
            let facts = Facts {
                own_cgroup: Some(own.to_owned()),
                ..systemd_host()
            };
            assert_eq!(decide(&facts), Placement::Inside, "{own}");
        }
        // Another run's scope (a child memtrace run): enters its own.
        let nested = Facts {
            own_cgroup: Some("/user.slice/memtrace-run-376.scope/pipeline".to_owned()),
            ..systemd_host()
        };
        assert!(matches!(decide(&nested), Placement::Enter { .. }));
    }

    #[test]
    fn every_missing_piece_keeps_the_run_where_it_is() {
        let cases = [
            (
                Facts {
                    no_scope: true,
                    ..systemd_host()
                },
                Stay::Asked,
            ),
            (
                Facts {
                    root: false,
                    ..systemd_host()
                },
                Stay::NotRoot,
            ),
            (
                Facts {
                    version: Some(Version::V1),
                    ..systemd_host()
                },
                Stay::NotV2,
            ),
            (
                Facts {
                    systemd: false,
                    ..systemd_host()
                },
                Stay::NoSystemd,
            ),
            (
                Facts {
                    systemd_run: None,
                    ..systemd_host()
                },
                Stay::NoSystemdRun,
            ),
        ];
        for (facts, why) in cases {
            assert_eq!(decide(&facts), Placement::Stay(why));
        }
    }

    #[test]
    fn the_slice_is_the_system_managers() {
        assert_eq!(
            slice_of("/user.slice/user-1000.slice/session-3.scope"),
            Some("user-1000.slice")
        );
        assert_eq!(slice_of("/system.slice/ssh.service"), Some("system.slice"));
        assert_eq!(
            slice_of("/user.slice/user-1000.slice/user@1000.service/app.slice/tmux.scope"),
            Some("user-1000.slice"),
            "not the user manager's app.slice"
        );
        assert_eq!(slice_of("/"), None);
        assert_eq!(slice_of("/docker/abc"), None);
    }

    #[test]
    fn the_command_line_runs_memtrace_again_in_a_delegated_scope() {
        let cmd = command_line(
            Path::new("/usr/bin/systemd-run"),
            377,
            Some("user-0.slice"),
            Path::new("/usr/local/bin/memtrace"),
            &["run".into(), "--".into(), "./pipeline.sh".into()],
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--scope",
                "--quiet",
                "--collect",
                "--unit=memtrace-run-377.scope",
                "--property=Delegate=yes",
                "--description=memtrace run",
                "--slice=user-0.slice",
                "--",
                "/usr/local/bin/memtrace",
                "run",
                "--",
                "./pipeline.sh"
            ]
        );
    }
}
