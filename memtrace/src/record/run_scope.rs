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
//! the run stays where it is and its cgroup is made at the root of the hierarchy instead. Never
//! out of a limit: where a cgroup it would leave — those between its own and the slice, or its
//! own and the root — sets `memory.max` or `memory.high` (a service with `MemoryMax=`, an outer
//! `memtrace run`), it neither enters a scope nor makes a cgroup at the root ([`leaving`],
//! [`limited_among`]).
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
    limited_cgroups, own_cgroup, privilege, swap,
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
    /// The first cgroup the scope would take the pipeline out of that has a memory limit.
    pub limit_left: Option<String>,
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
    /// A cgroup it would leave has a memory limit ([`Facts::limit_left`]).
    LimitLeft,
}

impl fmt::Display for Stay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Asked => "--no-scope",
            Self::NotRoot => "not root",
            Self::NotV2 => "the memory controller is not on cgroup v2",
            Self::NoSystemd => "systemd is not the init here",
            Self::NoSystemdRun => "no systemd-run on the PATH",
            Self::LimitLeft => "its cgroup's memory limit would be left behind",
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
    } else if facts.limit_left.is_some() {
        Some(Stay::LimitLeft)
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

/// The scope made for `pid` when `own` (memtrace's cgroup, as a path of any root) is that scope
/// or its `supervisor` (memtrace already moved there).
pub fn scope_of(own: &Path, pid: u32) -> Option<&Path> {
    let unit = unit_name(pid);
    let named = |dir: &Path, name: &str| dir.file_name().is_some_and(|n| *n == *name);
    if named(own, &unit) {
        return Some(own);
    }
    let parent = own.parent()?;
    (named(own, SUPERVISOR) && named(parent, &unit)).then_some(parent)
}

/// Whether the cgroup `own` (`/proc/self/cgroup`'s path) is the scope made for `pid`, or its
/// `supervisor`.
pub fn in_own_scope(own: &str, pid: u32) -> bool {
    scope_of(Path::new(own), pid).is_some()
}

/// memtrace's own v2 cgroup as `/proc/self/cgroup` (below `proc_root`) writes it.
pub fn own_relative(proc_root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join("self/cgroup")).ok()?;
    own_cgroup::relative_path(&text, Version::V2).map(str::to_owned)
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

/// The cgroups (paths as `/proc/self/cgroup` writes them) a pipeline leaves when it goes from
/// `own` to a child of `slice` (`None`: of the root): `own` and its ancestors below it.
pub fn leaving(own: &str, slice: Option<&str>) -> Vec<String> {
    let parts: Vec<&str> = own.split('/').filter(|part| !part.is_empty()).collect();
    let keep = slice.map_or(0, |slice| {
        parts
            .iter()
            .position(|part| *part == slice)
            .map_or(0, |at| at + 1)
    });
    (keep..parts.len())
        .rev()
        .map(|end| format!("/{}", parts[..=end].join("/")))
        .collect()
}

/// The first of `dirs` (below the hierarchy mounted at `mount`) whose `memory.max` or
/// `memory.high` is set.
pub fn limited_among(mount: &Path, dirs: &[String]) -> Option<String> {
    dirs.iter()
        .find(|dir| limited_cgroups::own_limit(&mount.join(dir.trim_start_matches('/'))).is_some())
        .cloned()
}

/// Reads the facts of this process.
pub fn facts(proc_root: &Path, no_scope: bool) -> Facts {
    let hierarchy = cgroup::memory_hierarchy(proc_root);
    let version = hierarchy.as_ref().map(|(_, version)| *version);
    let own_cgroup = own_relative(proc_root);
    let limit_left = match (&hierarchy, &own_cgroup) {
        (Some((mount, Version::V2)), Some(own)) => {
            limited_among(mount, &leaving(own, slice_of(own)))
        }
        _ => None,
    };
    Facts {
        root: privilege::is_root(),
        version,
        systemd: Path::new("/run/systemd/system").is_dir()
            && Path::new("/run/systemd/private").exists(),
        systemd_run: swap::file::find_tool("systemd-run"),
        own_cgroup,
        pid: std::process::id(),
        no_scope,
        limit_left,
    }
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
            limit_left: None,
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
            (
                Facts {
                    limit_left: Some("/system.slice/render.service".to_owned()),
                    ..systemd_host()
                },
                Stay::LimitLeft,
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
    fn the_cgroups_left_are_those_below_the_slice_or_the_root() {
        assert_eq!(
            leaving(
                "/user.slice/user-0.slice/session-3.scope",
                Some("user-0.slice")
            ),
            ["/user.slice/user-0.slice/session-3.scope"]
        );
        assert_eq!(
            leaving("/system.slice/render.service/worker", Some("system.slice")),
            [
                "/system.slice/render.service/worker",
                "/system.slice/render.service"
            ]
        );
        // An outer run's pipeline: the nested run would leave it (and its limit).
        assert_eq!(
            leaving(
                "/user.slice/memtrace-run-9.scope/pipeline",
                Some("user.slice")
            ),
            [
                "/user.slice/memtrace-run-9.scope/pipeline",
                "/user.slice/memtrace-run-9.scope"
            ]
        );
        assert_eq!(leaving("/docker/abc", None), ["/docker/abc", "/docker"]);
        assert_eq!(leaving("/", None), Vec::<String>::new());
    }

    #[test]
    fn a_limit_on_a_cgroup_left_is_found() {
        let mount = tempfile::tempdir().expect("tempdir");
        let service = mount.path().join("system.slice/render.service");
        std::fs::create_dir_all(service.join("worker")).expect("mkdir");
        for dir in [&service, &service.join("worker")] {
            std::fs::write(dir.join("memory.max"), "max\n").expect("max");
            std::fs::write(dir.join("memory.high"), "max\n").expect("high");
        }
        let left = leaving("/system.slice/render.service/worker", Some("system.slice"));
        assert_eq!(limited_among(mount.path(), &left), None);
        std::fs::write(service.join("memory.max"), "17179869184\n").expect("max");
        assert_eq!(
            limited_among(mount.path(), &left).as_deref(),
            Some("/system.slice/render.service")
        );
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
