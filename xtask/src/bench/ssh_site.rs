//! Where a `bench ssh` run's processes live, and the guest command for each step there:
//! - the whole guest ([`Site::Machine`]): the hog, the bystander and the contender each in a
//!   systemd unit of their own, the probes and the login shell on the guest's sshd;
//! - a container ([`Site::Container`]): one memory-limited cgroup, `container.service`
//!   (`MemoryMax` [`CONTAINER_MIB`] MiB, `MemorySwapMax=0`, `OOMPolicy=continue`: an OOM kill
//!   inside does not stop it, as in Docker), whose main process is a second
//!   sshd on port 2222 (the probes and the login shell go to it, it runs without PAM so its
//!   sessions stay in the cgroup) in a mount namespace where, as in a Docker container, `/sys`
//!   (so the cgroup filesystem) and `/proc/sys` are read-only (`ProtectKernelTunables`,
//!   `ProtectControlGroups`); the bystander, the ballast, the hog and the contender join that
//!   cgroup and mount namespace as `docker exec` would (their own pid written to its
//!   `cgroup.procs`, then `nsenter --mount`, through `/root/enter`) and, like every process of
//!   the container, run without the capabilities a Docker container lacks (CAP_SYS_ADMIN,
//!   CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE). The test's own commands (setup, reading back,
//!   stopping the hog) come in through the guest's sshd, from outside the container.
use super::ssh_guest::{BALLAST_MIB, Contender};

/// The container's memory limit, MiB.
pub const CONTAINER_MIB: u32 = 640;
/// The container's ballast: the machine's, scaled to the container's limit (MiB).
const CONTAINER_BALLAST_MIB: u32 = BALLAST_MIB * CONTAINER_MIB / crate::vm::guest::GUEST_MIB;
/// The container's cgroup in the guest.
pub const CONTAINER_CGROUP: &str = "/sys/fs/cgroup/system.slice/container.service";
/// The capabilities a Docker container's default set lacks that memtrace could use, as
/// `setpriv --bounding-set` drops them (the container's sshd: `CapabilityBoundingSet=~…`).
const DROPPED_CAPS: &str = "-sys_admin,-bpf,-perfmon,-sys_resource";

/// How memtrace runs in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContainerGuard {
    /// As in a Docker container: capabilities dropped, no `--cgroup` (memtrace finds its own
    /// cgroup's limit, and runs without eBPF).
    Docker,
    /// A stand-in: memtrace keeps every capability (eBPF) and is given
    /// `--cgroup <the container's cgroup>`; the rest of the container is unchanged.
    StandIn,
}

/// Where a run's processes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The whole guest.
    Machine,
    /// The memory-limited container, memtrace run as given.
    Container(ContainerGuard),
}

/// The container's sshd configuration (`/root/sshd_container`): no PAM, so no pam_systemd
/// moving its sessions out of the cgroup; key logins for root only.
const SSHD_CONFIG: &str = "Port 2222
PidFile /run/sshd-container.pid
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
# bench ssh starts a probe every 2 s whatever the earlier ones do.
MaxStartups 200
";

/// `/root/enter [--privileged] CMD…`: runs CMD in the container.
fn enter() -> String {
    format!(
        "#!/bin/sh
# Runs a command inside bench ssh's container, as `docker exec` would: in its cgroup, its mount
# namespace (read-only /sys and /proc/sys) and without the capabilities a Docker container lacks.
# `--privileged` (the stand-in memtrace): in its cgroup only, every capability kept.
set -e
echo $$ > {CONTAINER_CGROUP}/cgroup.procs
if [ \"$1\" = --privileged ]; then
    shift
    exec \"$@\"
fi
sshd=$(systemctl show container -p MainPID --value)
exec nsenter --mount --target \"$sshd\" \\
    setpriv --bounding-set={DROPPED_CAPS} --inh-caps=-all \"$@\"
"
    )
}

/// `/root/stop_hog`: kills the container's hog by the pid recorded when it started, if that pid
/// is still the hog (also the guest-side deadline, a transient timer).
const STOP_HOG: &str = "#!/bin/sh
pid=$(cat /run/bench-hog.pid 2>/dev/null) || exit 0
if [ \"$(cat /proc/$pid/comm 2>/dev/null)\" = hog ]; then
    kill -KILL \"$pid\"
fi
exit 0
";

/// Prints the state of the process whose pid is in the file `$1`: `active`, `stopped`
/// (SIGSTOP) or `gone`.
const STATE_OF: &str = "s=$(ps -o stat= -p \"$(cat $1 2>/dev/null)\" 2>/dev/null); \
case \"$s\" in '') echo gone ;; *T*) echo stopped ;; *) echo active ;; esac";

/// Starts `command` detached in the container (`enter` with `flags`), its pid in `pid_file`.
fn detached(flags: &str, command: &str, pid_file: &str) -> String {
    format!(
        "(/root/enter {flags}setsid {command} </dev/null >/dev/null 2>&1 & echo $! > {pid_file})"
    )
}

/// Fails unless the pid in `pid_file` is alive and named `comm`.
fn check_comm(pid_file: &str, comm: &str) -> String {
    format!(
        "test \"$(cat /proc/$(cat {pid_file})/comm 2>/dev/null)\" = {comm} || \
         {{ echo '{comm} did not start in the container' >&2; exit 1; }}"
    )
}

const CONTENDER_PID: &str = "/run/bench-contender.pid";
const BYSTANDER_PID: &str = "/run/bench-bystander.pid";
const HOG_PID: &str = "/run/bench-hog.pid";

impl Site {
    /// Files written to `/root` before the run (name, text, executable).
    pub fn files(self) -> Vec<(&'static str, String, bool)> {
        match self {
            Self::Machine => Vec::new(),
            Self::Container(_) => vec![
                ("sshd_container", SSHD_CONFIG.to_owned(), false),
                ("enter", enter(), true),
                ("stop_hog", STOP_HOG.to_owned(), true),
            ],
        }
    }

    /// Starts the site's own infrastructure (the container and its sshd); `None`: nothing.
    pub fn setup(self) -> Option<String> {
        match self {
            Self::Machine => None,
            Self::Container(_) => Some(format!(
                "systemd-run -q --unit=container -p MemoryMax={CONTAINER_MIB}M \
                 -p MemorySwapMax=0 -p OOMPolicy=continue -p ProtectKernelTunables=yes \
                 -p ProtectControlGroups=yes -p 'CapabilityBoundingSet=~CAP_SYS_ADMIN CAP_BPF \
                 CAP_PERFMON CAP_SYS_RESOURCE' /usr/sbin/sshd -D -e -f /root/sshd_container"
            )),
        }
    }

    /// Prints the main PID of the sshd the probes go to.
    pub fn sshd_pid(self) -> &'static str {
        match self {
            Self::Machine => "systemctl show ssh -p MainPID --value",
            Self::Container(_) => "systemctl show container -p MainPID --value",
        }
    }

    /// Starts `contender` (empty: nothing to start).
    pub fn start_contender(self, contender: Contender) -> String {
        let inside = |flags: &str, comm: &str, command: &str| {
            format!(
                "{} && sleep 2 && {}",
                detached(
                    flags,
                    &format!("systemd-cat -t {comm} {command}"),
                    CONTENDER_PID
                ),
                check_comm(CONTENDER_PID, comm)
            )
        };
        match (self, contender) {
            (_, Contender::Kernel) => String::new(),
            (Self::Machine, _) => contender.start().to_owned(),
            // Debian's defaults (/etc/default/earlyoom), as root in the container.
            (Self::Container(_), Contender::Earlyoom) => {
                inside("", "earlyoom", "/usr/bin/earlyoom -r 3600")
            }
            (Self::Container(ContainerGuard::Docker), Contender::Memtrace) => {
                inside("", "memtrace", "/usr/local/bin/memtrace guard")
            }
            (Self::Container(ContainerGuard::StandIn), Contender::Memtrace) => inside(
                "--privileged ",
                "memtrace",
                &format!("/usr/local/bin/memtrace guard --cgroup {CONTAINER_CGROUP}"),
            ),
        }
    }

    /// Prints memtrace's log so far (to wait for `guarding`).
    pub fn memtrace_log(self) -> &'static str {
        match self {
            Self::Machine => "journalctl -b -u memtrace-guard --no-pager -o cat | tail -n 200",
            Self::Container(_) => {
                "journalctl -b -t memtrace --no-pager -o cat | tail -n 200; \
                 kill -0 $(cat /run/bench-contender.pid) 2>/dev/null || echo 'memtrace: error: exited'"
            }
        }
    }

    /// Prints the CPU time `contender` used so far, in seconds (`None`: nothing to measure).
    pub fn contender_cpu(self, contender: Contender) -> Option<String> {
        let unit = contender.unit()?;
        Some(match self {
            Self::Machine => {
                format!("systemctl show {unit} -p CPUUsageNSec --value | awk '{{print $1 / 1e9}}'")
            }
            Self::Container(_) => format!(
                "awk -v t=$(getconf CLK_TCK) '{{print ($14 + $15) / t}}' /proc/$(cat {CONTENDER_PID})/stat"
            ),
        })
    }

    /// Starts the bystander.
    pub fn start_bystander(self) -> String {
        let command = "/usr/local/bin/bystander /root/bystander.py";
        match self {
            Self::Machine => format!("systemd-run -q --unit=bystander {command}"),
            Self::Container(_) => format!(
                "{} && sleep 1 && {}",
                detached("", command, BYSTANDER_PID),
                check_comm(BYSTANDER_PID, "bystander")
            ),
        }
    }

    /// Prints the bystander's state at the end (`active` expected).
    pub fn bystander_state(self) -> String {
        match self {
            Self::Machine => "systemctl is-active bystander || true".to_owned(),
            Self::Container(_) => format!("set -- {BYSTANDER_PID}; {STATE_OF}"),
        }
    }

    /// Writes the tmpfs ballast (charged to the site's memory).
    pub fn write_ballast(self) -> String {
        match self {
            Self::Machine => format!("head -c {BALLAST_MIB}M /dev/zero > /dev/shm/ballast"),
            Self::Container(_) => format!(
                "/root/enter sh -c 'head -c {CONTAINER_BALLAST_MIB}M /dev/zero > /dev/shm/ballast'"
            ),
        }
    }

    /// The sshd the probes and the login shell go to.
    pub fn sshd(self) -> crate::vm::guest::Sshd {
        match self {
            Self::Machine => crate::vm::guest::Sshd::Guest,
            Self::Container(_) => crate::vm::guest::Sshd::Container,
        }
    }

    /// Prints the guest time, then starts `hog` so that the guest itself ends it `deadline_s`
    /// seconds later.
    pub fn start_hog(self, hog: &str, deadline_s: u64) -> String {
        match self {
            Self::Machine => format!(
                "date +%s.%N && systemd-run -q --unit=hog -p OOMPolicy=continue \
                 -p RuntimeMaxSec={deadline_s} -p TimeoutStopSec=2 {hog}"
            ),
            Self::Container(_) => format!(
                "date +%s.%N && {} && systemd-run -q --unit=hog-deadline \
                 --on-active={deadline_s} /root/stop_hog",
                detached("", hog, HOG_PID)
            ),
        }
    }

    /// Prints the hog's state right before it is stopped.
    pub fn hog_state(self) -> String {
        match self {
            Self::Machine => "echo $(systemctl show hog -p SubState --value) \
                 frozen=$(cat /sys/fs/cgroup/system.slice/hog.service/cgroup.freeze 2>/dev/null || echo -) \
                 stopped=$(ps -o stat= -C hog | grep -c T)"
                .to_owned(),
            Self::Container(_) => format!("set -- {HOG_PID}; {STATE_OF}"),
        }
    }

    /// Stops the hog (and, on the machine, its unit).
    pub fn stop_hog(self) -> &'static str {
        match self {
            Self::Machine => {
                "systemctl kill -s KILL hog 2>/dev/null; systemctl stop hog 2>/dev/null; true"
            }
            Self::Container(_) => "/root/stop_hog",
        }
    }

    /// Prints the site's cgroup `memory.events` (`None`: the machine has none of its own).
    pub fn memory_events(self) -> Option<String> {
        match self {
            Self::Machine => None,
            Self::Container(_) => Some(format!("cat {CONTAINER_CGROUP}/memory.events")),
        }
    }
}

/// The `oom_kill` count of a cgroup v2 `memory.events` text.
pub fn oom_kill_count(events: &str) -> Option<u64> {
    events.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    //! The container's commands and the reading of its `memory.events`.
    use super::*;

    const CONTAINER: Site = Site::Container(ContainerGuard::Docker);

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 812\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(events), Some(2));
        assert_eq!(oom_kill_count("low 0\nmax 0\n"), None);
        assert_eq!(oom_kill_count("oom_kill x\n"), None);
    }

    #[test]
    fn the_container_is_one_limited_cgroup_without_the_docker_capabilities() {
        let setup = CONTAINER.setup().expect("the container has a setup");
        for needle in [
            "--unit=container",
            "MemoryMax=640M",
            "MemorySwapMax=0",
            // A cgroup OOM kill does not stop a Docker container: systemd's default would.
            "OOMPolicy=continue",
            "ProtectKernelTunables=yes",
            "ProtectControlGroups=yes",
            "CapabilityBoundingSet=~CAP_SYS_ADMIN CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE",
            "/usr/sbin/sshd -D -e -f /root/sshd_container",
        ] {
            assert!(setup.contains(needle), "{needle:?} missing from {setup}");
        }
        assert_eq!(
            CONTAINER_CGROUP,
            format!("/sys/fs/cgroup/system.slice/{}.service", "container")
        );
        let enter = enter();
        assert!(
            enter
                .contains("echo $$ > /sys/fs/cgroup/system.slice/container.service/cgroup.procs\n")
        );
        assert!(enter.contains(
            "exec nsenter --mount --target \"$sshd\" \\\n    setpriv --bounding-set=-sys_admin,-bpf,-perfmon,-sys_resource --inh-caps=-all \"$@\""
        ));
        assert!(SSHD_CONFIG.contains("Port 2222\n") && SSHD_CONFIG.contains("UsePAM no\n"));
        assert_eq!(crate::vm::guest::CONTAINER_SSH_PORT, 2222);
        assert_eq!(CONTAINER_BALLAST_MIB, 120);
        assert_eq!(Site::Machine.setup(), None);
    }

    #[test]
    fn memtrace_in_the_container_gets_no_cgroup_and_the_stand_in_keeps_its_capabilities() {
        let docker = CONTAINER.start_contender(Contender::Memtrace);
        assert!(
            docker.contains(
                "(/root/enter setsid systemd-cat -t memtrace /usr/local/bin/memtrace guard <"
            ),
            "{docker}"
        );
        assert!(!docker.contains("--cgroup") && !docker.contains("--privileged"));
        let stand_in =
            Site::Container(ContainerGuard::StandIn).start_contender(Contender::Memtrace);
        assert!(
            stand_in.contains("/root/enter --privileged setsid"),
            "{stand_in}"
        );
        assert!(stand_in.contains(&format!("guard --cgroup {CONTAINER_CGROUP} <")));
        let earlyoom = CONTAINER.start_contender(Contender::Earlyoom);
        assert!(
            earlyoom
                .contains("/root/enter setsid systemd-cat -t earlyoom /usr/bin/earlyoom -r 3600")
        );
        assert_eq!(CONTAINER.start_contender(Contender::Kernel), "");
        assert_eq!(
            Site::Machine.start_contender(Contender::Memtrace),
            "systemctl start memtrace-guard"
        );
    }

    #[test]
    fn the_container_hog_runs_inside_and_ends_by_its_deadline() {
        let start = CONTAINER.start_hog("/usr/local/bin/hog /root/hog.py 100", 75);
        assert!(start.starts_with("date +%s.%N && (/root/enter setsid /usr/local/bin/hog"));
        assert!(start.contains("echo $! > /run/bench-hog.pid"));
        assert!(start.contains("--on-active=75 /root/stop_hog"));
        assert!(STOP_HOG.contains("= hog ]") && STOP_HOG.contains("kill -KILL \"$pid\""));
    }
}
