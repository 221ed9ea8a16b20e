//! `memtrace doctor [--json] [--apply]`: one line per host check (OK, INFO, WARN, FAIL) with the
//! fix, and `--apply` for the safe, reversible fixes only (the swappiness and
//! vfs_cache_pressure sysctls until reboot, the sshd listener's oom_score_adj until sshd
//! restarts). Exits non-zero when a check FAILs or a fix could not be applied.
//!
//! Inside a container it shows the container's limit first and says INFO, with the host as the
//! place to fix them, for the host settings a container cannot change (see [`checks`]).
use std::{path::PathBuf, process::ExitCode};

pub mod checks;
pub mod mode;
pub mod report;
pub mod tracing;

use report::{Applied, Check, DoctorReport, Severity, SysRoots, render};

use crate::{
    collect::scope::{Origin, Scope, ScopeArgs, Selected},
    host::{privilege::is_root, sysctl},
};

/// Raw arguments of `memtrace doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Apply the safe, reversible fixes (sysctls, sshd's oom_score_adj) and print old → new.
    #[arg(long)]
    pub apply: bool,
    /// Which memory counts: the machine, a cgroup, or (default) the container memtrace runs in.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Read ROOT/proc, ROOT/sys and ROOT/etc instead of the host's (for tests).
    #[arg(long, hide = true, value_name = "ROOT")]
    pub root: Option<PathBuf>,
}

/// Runs `memtrace doctor`.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let roots = args
        .root
        .as_deref()
        .map_or_else(SysRoots::host, SysRoots::under);
    if args.apply && args.root.is_none() && !is_root() {
        anyhow::bail!("doctor --apply must be run as root (it writes sysctls and oom_score_adj)");
    }
    let checks = checks::all(&roots, &scope_for(&args.scope, &roots)?);
    let applied = if args.apply {
        apply(&checks)
    } else {
        Vec::new()
    };
    let report = DoctorReport { checks, applied };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out!("{}", render(&report, args.apply))?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The scope the checks are for. A `--cgroup` that is no memory cgroup is an error; otherwise
/// doctor reports what it can, and the scope check says why the machine was taken.
pub fn scope_for(args: &ScopeArgs, roots: &SysRoots) -> anyhow::Result<Selected> {
    match args.select(&roots.proc) {
        Ok(scope) => Ok(scope),
        Err(err) if args.cgroup.is_some() => Err(err.into()),
        Err(err) => Ok(Selected {
            scope: Scope::Machine,
            origin: Origin::NoLimit(format!("cannot tell ({err})")),
        }),
    }
}

/// Performs every action of every check that is not OK.
pub fn apply(checks: &[Check]) -> Vec<Applied> {
    checks
        .iter()
        .filter(|c| c.level != Severity::Ok)
        .flat_map(|c| &c.actions)
        .map(|action| {
            let old = sysctl::read_trimmed(&action.path).unwrap_or_else(|_| "?".to_owned());
            let error = sysctl::write_value(&action.path, &action.value).err();
            Applied {
                label: action.label.clone(),
                old,
                new: action.value.clone(),
                error: error.map(|e| e.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Every check against a fake /proc + /sys + /etc tree, and `--apply` writing into it.
    use std::fs;

    use super::*;
    use crate::cmd::doctor::tracing::REQUIRED_TRACEPOINTS;

    /// A directory under the system temp dir, removed on drop.
    struct TempTree(PathBuf);

    impl TempTree {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("memtrace-doctor-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("mkdir");
            Self(dir)
        }

        fn write(&self, relative: &str, content: impl AsRef<[u8]>) {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
            fs::write(path, content).expect("write");
        }

        fn read(&self, relative: &str) -> String {
            fs::read_to_string(self.0.join(relative)).expect("read")
        }

        /// A symlink `relative` → the tree's `target` (as /proc/PID/exe).
        fn link(&self, relative: &str, target: &str) {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
            std::os::unix::fs::symlink(self.0.join(target), path).expect("symlink");
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Minimal BTF: one TYPEDEF (to void) per name.
    fn btf_with(names: &[&str]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut types = Vec::new();
        for name in names {
            let offset = u32::try_from(strings.len()).expect("small");
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            for word in [offset, 8 << 24, 0] {
                types.extend_from_slice(&u32::to_le_bytes(word));
            }
        }
        let (type_len, str_len) = (types.len() as u32, strings.len() as u32);
        let mut data = vec![0x9f, 0xeb, 1, 0];
        for word in [24, 0, type_len, type_len, str_len] {
            data.extend_from_slice(&u32::to_le_bytes(word));
        }
        data.extend(types);
        data.extend(strings);
        data
    }

    fn stat_line(pid: u32, comm: &str, ppid: u32) -> String {
        format!("{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 0\n")
    }

    fn fake_host(tree: &TempTree) {
        tree.write(
            "proc/meminfo",
            "MemTotal: 33554432 kB\nMemFree: 1 kB\nMemAvailable: 2 kB\n",
        );
        tree.write(
            "proc/swaps",
            "Filename Type Size Used Priority\n/swapfile file 4194300 0 -2\n",
        );
        tree.write("proc/sys/vm/swappiness", "60\n");
        tree.write("proc/sys/vm/vfs_cache_pressure", "50\n");
        tree.write("proc/sys/vm/overcommit_memory", "2\n");
        tree.write(
            "proc/pressure/memory",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        tree.write("proc/mounts", "/dev/vda / ext4 rw 0 0\n");
        tree.write("proc/filesystems", "nodev\tsysfs\nnodev\ttracefs\n\text4\n");
        tree.write("proc/1/stat", stat_line(1, "systemd", 0));
        tree.write("usr/sbin/sshd", "sshd binary");
        tree.write("usr/bin/python3", "python binary");
        tree.write("proc/100/stat", stat_line(100, "sshd", 1));
        tree.write("proc/100/oom_score_adj", "0\n");
        tree.link("proc/100/exe", "usr/sbin/sshd");
        tree.write("proc/101/stat", stat_line(101, "sshd", 100));
        tree.write("proc/101/oom_score_adj", "0\n");
        tree.link("proc/101/exe", "usr/sbin/sshd");
        // A process that renamed itself sshd: not the listener, whatever its name.
        tree.write("proc/103/stat", stat_line(103, "sshd", 1));
        tree.write("proc/103/oom_score_adj", "0\n");
        tree.link("proc/103/exe", "usr/bin/python3");
        tree.write("proc/102/cmdline", b"/usr/bin/python3\0memtrace\0guard\0");
        tree.write(
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        );
        let present = &REQUIRED_TRACEPOINTS[..8];
        tree.write("sys/kernel/btf/vmlinux", btf_with(present));
        tree.write("sys/module/zswap/parameters/enabled", "N\n");
        fs::create_dir_all(tree.0.join("sys/block/zram0")).expect("mkdir");
        tree.write("etc/fstab", "UUID=x / ext4 defaults 0 1\n");
    }

    /// Every check for the scope the tree's /proc gives.
    fn all(roots: &SysRoots) -> Vec<Check> {
        checks::all(
            roots,
            &scope_for(&ScopeArgs::default(), roots).expect("a scope"),
        )
    }

    fn level_of(checks: &[Check], name: &str) -> (Severity, String) {
        let check = checks
            .iter()
            .find(|c| c.name == name)
            .expect("check present");
        (check.level, check.detail.clone())
    }

    #[test]
    fn checks_read_the_fake_tree() {
        let tree = TempTree::new("checks");
        fake_host(&tree);
        let checks = all(&SysRoots::under(&tree.0));
        let level = |name| level_of(&checks, name).0;
        // 32 GiB RAM with 4 GiB swap: below the 8 GiB minimum.
        assert_eq!(level("swap"), Severity::Fail);
        assert!(level_of(&checks, "swap at boot").1.contains("/swapfile"));
        assert_eq!(level("swap at boot"), Severity::Warn);
        assert_eq!(level("vm.swappiness"), Severity::Warn);
        assert_eq!(level("vm.vfs_cache_pressure"), Severity::Ok);
        assert_eq!(level("vm.overcommit_memory"), Severity::Warn);
        assert_eq!(level("transparent hugepages"), Severity::Warn);
        assert_eq!(level("PSI"), Severity::Ok);
        assert_eq!(level("BTF"), Severity::Ok);
        assert_eq!(
            level_of(&checks, "tracefs"),
            (
                Severity::Ok,
                "not mounted; mountable (memtrace mounts it when needed)".to_owned()
            )
        );
        assert_eq!(
            level_of(&checks, "tracepoints"),
            (Severity::Fail, "missing: mark_victim".to_owned())
        );
        assert_ne!(level("NVML"), Severity::Fail);
        assert_eq!(
            level_of(&checks, "sshd oom_score_adj"),
            (Severity::Warn, "pid 100: 0 (advised -1000)".to_owned())
        );
        assert_eq!(level_of(&checks, "zswap/zram").0, Severity::Info);
        // python3 running a script called memtrace is not the guard.
        assert_eq!(level("memtrace guard"), Severity::Warn);
        let text = render(
            &DoctorReport {
                checks: checks.clone(),
                applied: vec![],
            },
            false,
        );
        assert_eq!(text.lines().count(), checks.len() + 1);
        assert!(text.contains(
            "WARN  vm.swappiness          60 (advised 10) -> fix: sysctl -w vm.swappiness=10"
        ));
    }

    #[test]
    fn apply_writes_only_the_safe_fixes() {
        let tree = TempTree::new("apply");
        fake_host(&tree);
        tree.write("proc/200/cmdline", b"/usr/local/bin/memtrace\0guard\0");
        tree.write("proc/sys/vm/vfs_cache_pressure", "100\n");
        let roots = SysRoots::under(&tree.0);
        let applied = apply(&all(&roots));
        let labels: Vec<_> = applied
            .iter()
            .map(|a| (a.label.as_str(), a.old.as_str(), a.new.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("vm.swappiness", "60", "10"),
                ("vm.vfs_cache_pressure", "100", "50"),
                ("sshd (pid 100) oom_score_adj", "0", "-1000"),
            ]
        );
        assert!(applied.iter().all(|a| a.error.is_none()));
        assert_eq!(tree.read("proc/sys/vm/swappiness"), "10\n");
        assert_eq!(tree.read("proc/100/oom_score_adj"), "-1000\n");
        assert_eq!(
            tree.read("proc/101/oom_score_adj"),
            "0\n",
            "session processes untouched"
        );
        assert_eq!(
            tree.read("proc/103/oom_score_adj"),
            "0\n",
            "a process that only calls itself sshd is untouched"
        );
        assert_eq!(
            tree.read("proc/sys/vm/overcommit_memory"),
            "2\n",
            "not a safe fix"
        );
        let after = all(&roots);
        assert_eq!(level_of(&after, "vm.swappiness").0, Severity::Ok);
        assert_eq!(level_of(&after, "sshd oom_score_adj").0, Severity::Ok);
        assert_eq!(
            level_of(&after, "memtrace guard"),
            (Severity::Ok, "running (pid 200)".to_owned())
        );
        assert!(apply(&after).is_empty(), "a second apply changes nothing");
    }

    #[test]
    fn empty_tree_degrades_without_panicking() {
        let tree = TempTree::new("empty");
        let checks = all(&SysRoots::under(&tree.0));
        assert_eq!(level_of(&checks, "BTF").0, Severity::Fail);
        assert_eq!(level_of(&checks, "tracefs").0, Severity::Fail);
        assert_eq!(level_of(&checks, "PSI").0, Severity::Warn);
        assert_eq!(level_of(&checks, "sshd oom_score_adj").0, Severity::Info);
        assert!(checks.iter().all(|c| !c.detail.contains('\n')));
        let report = DoctorReport {
            checks,
            applied: vec![],
        };
        assert!(report.failed());
        assert!(
            serde_json::to_string(&report)
                .expect("serializes")
                .contains("\"level\":\"FAIL\"")
        );
    }

    #[test]
    fn in_a_container_host_settings_are_info_and_the_limit_shows() {
        let tree = TempTree::new("container");
        fake_host(&tree);
        // memtrace runs in a cgroup namespace whose root is limited to 640 MiB (v2).
        let cg = tree.0.join("sys/fs/cgroup");
        tree.write(
            "proc/mounts",
            format!(
                "/dev/vda / ext4 rw 0 0\ncgroup2 {} cgroup2 rw 0 0\n",
                cg.display()
            ),
        );
        tree.write(
            "proc/4242/mountinfo",
            format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", cg.display()),
        );
        tree.write("proc/4242/cgroup", "0::/\n");
        std::os::unix::fs::symlink("4242", tree.0.join("proc/self")).expect("symlink");
        for (file, text) in [
            ("cgroup.controllers", "cpu memory\n"),
            ("memory.current", "104857600\n"),
            ("memory.max", "671088640\n"),
            ("memory.stat", "inactive_file 0\n"),
            ("memory.swap.max", "0\n"),
            ("cgroup.procs", "1\n"),
        ] {
            tree.write(&format!("sys/fs/cgroup/{file}"), text);
        }
        let roots = SysRoots::under(&tree.0);
        let checks = all(&roots);
        let (level, detail) = level_of(&checks, "memory scope");
        assert_eq!(level, Severity::Info);
        assert!(
            detail.starts_with("container limit 640.0 MiB (cgroup ")
                && detail.contains("100.0 MiB used (15.6 %)"),
            "{detail}"
        );
        let swap = checks.iter().find(|c| c.name == "swap").expect("swap");
        assert_eq!(swap.level, Severity::Info, "{swap:?}");
        assert!(swap.detail.contains("0 B of it usable here"), "{swap:?}");
        assert!(
            swap.fix
                .as_deref()
                .is_some_and(|f| f.contains("ask the provider")),
            "{swap:?}"
        );
        assert_eq!(level_of(&checks, "swap at boot").0, Severity::Info);
        for name in [
            "vm.swappiness",
            "vm.overcommit_memory",
            "transparent hugepages",
        ] {
            let check = checks.iter().find(|c| c.name == name).expect("present");
            assert_eq!(check.level, Severity::Info, "{check:?}");
            assert!(check.actions.is_empty(), "{check:?}");
            assert!(
                check
                    .fix
                    .as_deref()
                    .is_none_or(|f| f.starts_with("on the host: ")),
                "{check:?}"
            );
        }
        // No CAP_SYS_RESOURCE (the tree's /proc/self/status says nothing): no sshd fix either.
        let sshd = checks
            .iter()
            .find(|c| c.name == "sshd oom_score_adj")
            .expect("sshd");
        assert_eq!(sshd.level, Severity::Info);
        assert!(
            sshd.fix
                .as_deref()
                .is_some_and(|f| f.contains("CAP_SYS_RESOURCE"))
        );
        assert!(
            apply(&checks).is_empty(),
            "--apply changes nothing of the host's"
        );
        assert_eq!(tree.read("proc/sys/vm/swappiness"), "60\n");
        // --machine: the host's view again.
        let machine = checks::all(
            &roots,
            &scope_for(
                &ScopeArgs {
                    machine: true,
                    cgroup: None,
                },
                &roots,
            )
            .expect("scope"),
        );
        assert_eq!(level_of(&machine, "vm.swappiness").0, Severity::Warn);
        assert_eq!(level_of(&machine, "swap").0, Severity::Fail);
    }
}
