//! Checks that `bench ssh`'s container is what its table says (see [`super::ssh_site`]): right
//! before the hog starts, every process in the container's cgroup is listed with its bounding
//! capability set and how it sees the cgroup filesystem; a process holding a capability a
//! Docker container lacks, or seeing the cgroup filesystem writable, fails the run (the stand-in
//! memtrace excepted, which keeps both on purpose).
use super::ssh_site::{CONTAINER_CGROUP, ContainerGuard};

/// CAP_SYS_ADMIN (21), CAP_SYS_RESOURCE (24), CAP_PERFMON (38), CAP_BPF (39).
const DOCKER_LACKS: u64 = (1 << 21) | (1 << 24) | (1 << 38) | (1 << 39);

/// Prints one line per process of the container: `COMM CAPBND CGROUPFS` (CAPBND in hex as in
/// `/proc/PID/status`, CGROUPFS `ro` or `rw` as the process's mount namespace shows it).
pub fn list_command() -> String {
    format!(
        "for p in $(cat {CONTAINER_CGROUP}/cgroup.procs); do \
           c=$(cat /proc/$p/comm 2>/dev/null) || continue; \
           b=$(awk '/^CapBnd/ {{print $2}}' /proc/$p/status 2>/dev/null); \
           m=$(awk '$5 == \"/sys/fs/cgroup\" {{split($6, o, \",\"); print o[1]}}' \
               /proc/$p/mountinfo 2>/dev/null | tail -n 1); \
           echo \"$c $b $m\"; \
         done"
    )
}

/// One process of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its command name.
    pub comm: String,
    /// Its bounding capability set (`None`: unreadable).
    pub cap_bnd: Option<u64>,
    /// `ro` or `rw` (empty: unreadable).
    pub cgroupfs: String,
}

/// The lines of [`list_command`]'s output.
pub fn parse(text: &str) -> Vec<Member> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let comm = words.next()?.to_owned();
            let cap_bnd = words.next().and_then(|b| u64::from_str_radix(b, 16).ok());
            let cgroupfs = words.next().unwrap_or_default().to_owned();
            Some(Member {
                comm,
                cap_bnd,
                cgroupfs,
            })
        })
        .collect()
}

/// `COUNT COMM` for each command name, sorted by name.
pub fn summary(members: &[Member]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for m in members {
        *counts.entry(&m.comm).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{n} {c}")).collect();
    parts.join(", ")
}

/// What makes the container not a Docker container, one entry per process.
pub fn violations(members: &[Member], guard: ContainerGuard) -> Vec<String> {
    let mut out = Vec::new();
    for m in members {
        if guard == ContainerGuard::StandIn && m.comm == "memtrace" {
            continue;
        }
        match m.cap_bnd {
            Some(bnd) if bnd & DOCKER_LACKS == 0 => {}
            Some(bnd) => out.push(format!(
                "{} holds capabilities a Docker container lacks (CapBnd {bnd:016x})",
                m.comm
            )),
            None => out.push(format!("{}: bounding set unreadable", m.comm)),
        }
        if m.cgroupfs != "ro" {
            out.push(format!(
                "{} sees the cgroup filesystem {:?}, not read-only",
                m.comm, m.cgroupfs
            ));
        }
    }
    for needed in ["sshd", "bash", "bystander"] {
        if !members.iter().any(|m| m.comm == needed) {
            out.push(format!("no {needed} in the container"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Reading the container's process list.
    use super::*;

    /// Debian 6.1's full set (41 capabilities) and the same without the four.
    const FULL: &str = "000001ffffffffff";
    const DOCKER: &str = "0000013ffedfffff";

    fn list(lines: &[&str]) -> Vec<Member> {
        parse(&lines.join("\n"))
    }

    #[test]
    fn a_docker_like_container_passes_and_is_summarised() {
        assert_eq!(
            u64::from_str_radix(DOCKER, 16).map(|b| b & DOCKER_LACKS),
            Ok(0)
        );
        let members = list(&[
            &format!("sshd {DOCKER} ro"),
            &format!("sshd {DOCKER} ro"),
            &format!("bash {DOCKER} ro"),
            &format!("bystander {DOCKER} ro"),
            &format!("memtrace {DOCKER} ro"),
        ]);
        assert_eq!(
            violations(&members, ContainerGuard::Docker),
            Vec::<String>::new()
        );
        assert_eq!(summary(&members), "1 bash, 1 bystander, 1 memtrace, 2 sshd");
    }

    #[test]
    fn a_capability_or_a_writable_cgroupfs_is_named() {
        let members = list(&[
            &format!("sshd {DOCKER} ro"),
            &format!("bash {DOCKER} rw"),
            &format!("bystander {DOCKER} ro"),
            &format!("memtrace {FULL} ro"),
        ]);
        let found = violations(&members, ContainerGuard::Docker);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("bash sees the cgroup filesystem \"rw\""));
        assert!(found[1].starts_with("memtrace holds capabilities"));
        // The stand-in memtrace keeps its capabilities on purpose; the shell still may not.
        assert_eq!(violations(&members, ContainerGuard::StandIn).len(), 1);
    }

    #[test]
    fn a_missing_process_or_an_unreadable_line_is_named() {
        let members = list(&[&format!("sshd {DOCKER} ro"), "bash"]);
        let found = violations(&members, ContainerGuard::Docker);
        assert!(
            found.iter().any(|v| v == "bash: bounding set unreadable"),
            "{found:?}"
        );
        assert!(
            found.iter().any(|v| v == "no bystander in the container"),
            "{found:?}"
        );
    }
}
