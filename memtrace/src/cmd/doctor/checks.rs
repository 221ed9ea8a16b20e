//! The `memtrace doctor` checks of memory settings and processes (the tracing prerequisites are
//! in [`super::tracing`]). Each reads only below a [`SysRoots`] (so tests run them on a
//! fake /proc + /sys + /etc tree) and returns one [`Check`]; the few safe, reversible fixes
//! travel with the check as [`Action`]s for `--apply`.
//!
//! Inside a container (memtrace runs in a cgroup whose limit is below the machine's RAM) the
//! first check shows that limit, and the checks of the host's own settings (swap, the vm
//! sysctls, THP) say INFO with the host as the place to change them, offering no `--apply`: they
//! are not namespaced, so a container cannot change them (and must not, where it could).
use std::{fs, path::Path};

use super::{
    mode,
    report::{Action, Check, Severity, SysRoots},
    tracing,
};
use crate::{
    cmd::swap::status as swap_status,
    collect::scope::{Scope, Selected},
    host::{
        privilege::{self, Capability},
        procfs, sshd,
        swap::{active as proc_swaps, fstab, plan::SwapVerdict},
        sysctl,
        units::human_bytes,
    },
};

/// `vm.swappiness` advised for hosts that should keep hot pages in RAM but may swap cold ones.
pub const SWAPPINESS: i64 = 10;
/// `vm.vfs_cache_pressure` advised: keep dentries and inodes cached a little longer.
pub const VFS_CACHE_PRESSURE: i64 = 50;
/// `oom_score_adj` advised for the sshd listener: never the OOM killer's victim.
pub const SSHD_OOM_SCORE_ADJ: i64 = -1000;

/// Checks of settings that are the host's, not a container's.
const HOST_SETTINGS: [&str; 4] = [
    "vm.swappiness",
    "vm.vfs_cache_pressure",
    "vm.overcommit_memory",
    "transparent hugepages",
];

/// Every check, in display order, for `scope`.
pub fn all(roots: &SysRoots, scope: &Selected) -> Vec<Check> {
    let mut checks = vec![memory_scope(roots, scope), swap_size(roots, scope)];
    checks.extend(swap_at_boot(roots, scope.in_container()));
    checks.extend([
        sysctl_value(roots, "vm.swappiness", SWAPPINESS),
        sysctl_value(roots, "vm.vfs_cache_pressure", VFS_CACHE_PRESSURE),
        overcommit(roots),
        hugepages(roots),
        psi(roots),
        tracing::btf(roots),
        tracing::tracefs(roots),
        tracing::tracepoints(roots),
        mode::mode(roots),
        tracing::nvml(crate::collect::gpu::nvml_loadable()),
        sshd(roots),
        compressed_swap(roots),
        guard(roots),
    ]);
    if scope.in_container() {
        for check in &mut checks {
            if HOST_SETTINGS.contains(&check.name) {
                host_setting(check);
            }
            if check.name == "sshd oom_score_adj"
                && !privilege::has_capability(&roots.proc, Capability::SysResource)
            {
                needs_sys_resource(check);
            }
        }
    }
    checks
}

/// A check of a host setting seen from inside a container: information, changed on the host.
fn host_setting(check: &mut Check) {
    if check.level == Severity::Ok {
        return;
    }
    check.level = Severity::Info;
    check
        .detail
        .push_str(" (the host's setting: not changeable from inside a container)");
    check.fix = check
        .fix
        .take()
        .map(|fix| format!("on the host: {}", fix.trim_end_matches(APPLY_NOTE)));
    check.actions.clear();
}

/// The sshd check where lowering `oom_score_adj` needs CAP_SYS_RESOURCE, which containers drop.
fn needs_sys_resource(check: &mut Check) {
    if check.actions.is_empty() {
        return;
    }
    check.level = Severity::Info;
    check.actions.clear();
    check.fix = Some(
        "lowering oom_score_adj needs CAP_SYS_RESOURCE, which this container lacks: set it when \
         the container starts (docker run --oom-score-adj) or ask the provider"
            .to_owned(),
    );
}

/// Whose memory counts: the container's limit when memtrace runs in one, else the machine.
pub fn memory_scope(roots: &SysRoots, scope: &Selected) -> Check {
    let name = "memory scope";
    let usage = scope.scope.usage(&roots.proc).ok();
    let described = scope.describe(usage.as_ref());
    let used = usage.map_or_else(String::new, |u| {
        format!(
            ", {} used ({:.1} %)",
            human_bytes(u.used_bytes),
            u.percent()
        )
    });
    match scope.scope {
        Scope::Machine => Check::new(name, Severity::Ok, format!("{described}{used}")),
        Scope::Cgroup { .. } => Check::new(
            name,
            Severity::Info,
            format!(
                "{described}{used}: status, swap, run and the guard measure against this limit, \
                 not the host's MemTotal"
            ),
        ),
    }
}

/// Swap the scope may use against the recommendation for its RAM (or container limit). Inside
/// a container swap is the host's: information, with the advice for the provider.
pub fn swap_size(roots: &SysRoots, scope: &Selected) -> Check {
    let name = "swap";
    let status = match swap_status::collect(&roots.proc, scope) {
        Ok(status) => status,
        Err(err) => return Check::new(name, Severity::Fail, format!("cannot read: {err:#}")),
    };
    let rec = &status.recommendation;
    let active = if status.total_bytes == 0 {
        "none active".to_owned()
    } else {
        format!("{} active", human_bytes(status.total_bytes))
    };
    let detail = match scope.scope {
        Scope::Machine => format!(
            "{active}; recommended {} (minimum {}) for {} RAM",
            human_bytes(rec.recommended_low_bytes),
            human_bytes(rec.minimum_bytes),
            human_bytes(status.ram_bytes),
        ),
        Scope::Cgroup { .. } => format!(
            "{active} on the host, {} of it usable here; recommended {} (minimum {}) for the \
             {} limit",
            human_bytes(status.available_bytes),
            human_bytes(rec.recommended_low_bytes),
            human_bytes(rec.minimum_bytes),
            human_bytes(status.limit_bytes),
        ),
    };
    let level = match status.verdict {
        SwapVerdict::Ok => return Check::new(name, Severity::Ok, detail),
        _ if scope.in_container() => Severity::Info,
        SwapVerdict::BelowRecommended => Severity::Warn,
        SwapVerdict::BelowMinimum | SwapVerdict::None => Severity::Fail,
    };
    Check::new(name, level, detail).with_fix(status.advice)
}

/// Active swap files that /etc/fstab does not enable at boot; `None` without swap files. Inside
/// a container the swap files are the host's and its fstab is not the one visible here.
pub fn swap_at_boot(roots: &SysRoots, in_container: bool) -> Option<Check> {
    let files: Vec<_> = proc_swaps::read_swaps(&roots.proc)
        .ok()?
        .into_iter()
        .filter(|d| d.kind == "file")
        .collect();
    if files.is_empty() {
        return None;
    }
    let table = fstab::read(&roots.etc.join("fstab")).unwrap_or_default();
    let missing: Vec<_> = files
        .iter()
        .filter(|d| !fstab::has_entry(&table, Path::new(&d.path)))
        .map(|d| d.path.clone())
        .collect();
    let name = "swap at boot";
    if in_container {
        return Some(Check::new(
            name,
            Severity::Info,
            "the swap files are the host's; its /etc/fstab is not visible from this container"
                .to_owned(),
        ));
    }
    Some(match missing.first() {
        None => Check::new(
            name,
            Severity::Ok,
            "every swap file is in /etc/fstab".to_owned(),
        ),
        Some(first) => Check::new(
            name,
            Severity::Warn,
            format!(
                "not in /etc/fstab, gone after a reboot: {}",
                missing.join(", ")
            ),
        )
        .with_fix(format!("sudo memtrace swap setup --path {first} --persist")),
    })
}

/// What a sysctl's fix says about `--apply` (left out where `--apply` does not apply).
const APPLY_NOTE: &str = " (--apply sets it until reboot)";

/// A sysctl that should hold `advised`; `--apply` may set it (runtime only).
pub fn sysctl_value(roots: &SysRoots, name: &'static str, advised: i64) -> Check {
    let path = sysctl::path_of(&roots.proc, name);
    match sysctl::read_int(&path) {
        Ok(value) if value == advised => Check::new(name, Severity::Ok, format!("{value}")),
        Ok(value) => Check::new(name, Severity::Warn, format!("{value} (advised {advised})"))
            .with_fix(format!(
                "sysctl -w {name}={advised}; keep it in /etc/sysctl.d/90-memtrace.conf{APPLY_NOTE}"
            ))
            .with_action(Action {
                label: name.to_owned(),
                path,
                value: advised.to_string(),
            }),
        Err(err) => Check::new(name, Severity::Warn, format!("cannot read: {err}")),
    }
}

/// `vm.overcommit_memory`: 0 (heuristic) is right for GPU hosts; 2 breaks CUDA's large virtual
/// reservations.
pub fn overcommit(roots: &SysRoots) -> Check {
    let name = "vm.overcommit_memory";
    match sysctl::read_int(&sysctl::path_of(&roots.proc, name)) {
        Ok(0) => Check::new(name, Severity::Ok, "0 (heuristic)".to_owned()),
        Ok(1) => Check::new(
            name,
            Severity::Info,
            "1 (always): allocations never fail, the OOM killer decides".to_owned(),
        ),
        Ok(value) => Check::new(
            name,
            Severity::Warn,
            format!("{value} (strict): CUDA and PyTorch reserve huge virtual ranges and fail"),
        )
        .with_fix(format!("sysctl -w {name}=0")),
        Err(err) => Check::new(name, Severity::Warn, format!("cannot read: {err}")),
    }
}

/// Transparent hugepages: `madvise` or `never`; `always` brings compaction stalls and bloat.
pub fn hugepages(roots: &SysRoots) -> Check {
    let name = "transparent hugepages";
    let path = roots.sys.join("kernel/mm/transparent_hugepage/enabled");
    let Ok(text) = sysctl::read_trimmed(&path) else {
        return Check::new(
            name,
            Severity::Info,
            "not built into this kernel".to_owned(),
        );
    };
    let mode = text
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .unwrap_or(&text)
        .to_owned();
    match mode.as_str() {
        "always" => Check::new(
            name,
            Severity::Warn,
            "always: khugepaged stalls and RSS bloat".to_owned(),
        )
        .with_fix(format!("echo madvise > {}", path.display())),
        _ => Check::new(name, Severity::Ok, mode),
    }
}

/// Pressure stall information, which `memtrace guard` and `status` read.
pub fn psi(roots: &SysRoots) -> Check {
    let name = "PSI";
    match procfs::read_memory_psi(&roots.proc) {
        Ok(Some(_)) => Check::new(name, Severity::Ok, "memory pressure available".to_owned()),
        Ok(None) => Check::new(name, Severity::Warn, "not available".to_owned())
            .with_fix("boot with psi=1 (kernel needs CONFIG_PSI=y)".to_owned()),
        Err(err) => Check::new(name, Severity::Warn, format!("unreadable: {err}")),
    }
}

/// The sshd listener(s) (the `sshd` executable, a parent that is not sshd, a listening socket:
/// see [`sshd::sshd_listeners`]; a process that only calls itself sshd is not one) should have
/// oom_score_adj -1000 so a runaway job never takes the way in down with it. `--apply` sets it
/// (until sshd restarts).
pub fn sshd(roots: &SysRoots) -> Check {
    let name = "sshd oom_score_adj";
    let listeners = sshd::sshd_listeners(&roots.proc);
    if listeners.is_empty() {
        return Check::new(name, Severity::Info, "no sshd listener running".to_owned());
    }
    let mut check = Check::new(name, Severity::Ok, String::new());
    let mut parts = Vec::new();
    for pid in listeners {
        let path = roots.proc.join(pid.to_string()).join("oom_score_adj");
        match sysctl::read_int(&path) {
            Ok(SSHD_OOM_SCORE_ADJ) => parts.push(format!("pid {pid}: {SSHD_OOM_SCORE_ADJ}")),
            Ok(value) => {
                parts.push(format!("pid {pid}: {value} (advised {SSHD_OOM_SCORE_ADJ})"));
                check.level = Severity::Warn;
                check = check.with_action(Action {
                    label: format!("sshd (pid {pid}) oom_score_adj"),
                    path,
                    value: SSHD_OOM_SCORE_ADJ.to_string(),
                });
            }
            Err(err) => parts.push(format!("pid {pid}: {err}")),
        }
    }
    check.detail = parts.join("; ");
    if check.level == Severity::Warn {
        check = check.with_fix(
            "--apply sets it now; to keep it, add OOMScoreAdjust=-1000 to a drop-in for ssh.service"
                .to_owned(),
        );
    }
    check
}

/// zswap or zram: compressed swap in RAM, a cheap first tier before disk.
pub fn compressed_swap(roots: &SysRoots) -> Check {
    let name = "zswap/zram";
    let zswap = sysctl::read_trimmed(&roots.sys.join("module/zswap/parameters/enabled")).ok();
    let zswap_on = matches!(zswap.as_deref(), Some("Y" | "y" | "1"));
    let zram_swap = proc_swaps::read_swaps(&roots.proc)
        .unwrap_or_default()
        .into_iter()
        .any(|d| d.path.starts_with("/dev/zram"));
    let zram_devices = fs::read_dir(roots.sys.join("block"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("zram"))
                .count()
        })
        .unwrap_or(0);
    let zram_module = roots.sys.join("class/zram-control").exists()
        || fs::read_to_string(roots.proc.join("modules"))
            .is_ok_and(|m| m.lines().any(|l| l.starts_with("zram ")));
    let mut seen = Vec::new();
    if zswap.is_some() {
        seen.push(format!(
            "zswap {}",
            if zswap_on {
                "enabled"
            } else {
                "available, off"
            }
        ));
    }
    if zram_swap {
        seen.push("zram in use as swap".to_owned());
    } else if zram_devices > 0 || zram_module {
        seen.push(format!(
            "zram available ({zram_devices} device(s), not used as swap)"
        ));
    }
    if zswap_on || zram_swap {
        return Check::new(name, Severity::Ok, seen.join("; "));
    }
    if seen.is_empty() {
        return Check::new(
            name,
            Severity::Info,
            "neither zswap nor zram in this kernel".to_owned(),
        );
    }
    let mut check = Check::new(name, Severity::Info, seen.join("; "));
    if zswap.is_some() {
        check = check.with_fix(format!(
            "echo Y > {}",
            Path::new("/sys/module/zswap/parameters/enabled").display()
        ));
    }
    check
}

/// A running `memtrace guard`, which acts before the OOM killer does.
pub fn guard(roots: &SysRoots) -> Check {
    let name = "memtrace guard";
    let running: Vec<u32> = procfs::list_pids(&roots.proc)
        .unwrap_or_default()
        .into_iter()
        .filter(|pid| {
            let raw =
                fs::read(roots.proc.join(pid.to_string()).join("cmdline")).unwrap_or_default();
            let mut args = raw.split(|&b| b == 0);
            let program = args.next().unwrap_or_default();
            let base = program.rsplit(|&b| b == b'/').next().unwrap_or_default();
            base == b"memtrace" && args.next() == Some(b"guard".as_slice())
        })
        .collect();
    match running.first() {
        Some(pid) => Check::new(name, Severity::Ok, format!("running (pid {pid})")),
        None => Check::new(name, Severity::Warn, "not running".to_owned()).with_fix(
            "run `memtrace guard` as a service so memory pressure is handled before the OOM killer"
                .to_owned(),
        ),
    }
}
