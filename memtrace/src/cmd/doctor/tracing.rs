//! The `memtrace doctor` checks of what the eBPF tracer and the GPU columns need: kernel BTF,
//! tracefs, the `btf_trace_*` tracepoint types (looked up with [`crate::host::btf`]) and NVML.
use std::{fs, path::PathBuf};

use super::report::{Check, Severity, SysRoots};
use crate::{
    collect::gpu::NVML_LIBRARY,
    host::{btf::Btf, units::human_bytes},
};

/// The BTF tracepoint types the eBPF tracer attaches to.
pub const REQUIRED_TRACEPOINTS: [&str; 9] = [
    "btf_trace_rss_stat",
    "btf_trace_page_fault_user",
    "btf_trace_mm_vmscan_direct_reclaim_begin",
    "btf_trace_mm_vmscan_direct_reclaim_end",
    "btf_trace_mm_vmscan_memcg_reclaim_begin",
    "btf_trace_mm_vmscan_memcg_reclaim_end",
    "btf_trace_mm_vmscan_wakeup_kswapd",
    "btf_trace_sched_process_exit",
    "btf_trace_mark_victim",
];

fn vmlinux(roots: &SysRoots) -> PathBuf {
    roots.sys.join("kernel/btf/vmlinux")
}

/// Kernel BTF, which the eBPF tracer needs.
pub fn btf(roots: &SysRoots) -> Check {
    let name = "BTF";
    match fs::metadata(vmlinux(roots)) {
        Ok(meta) => Check::new(
            name,
            Severity::Ok,
            format!("/sys/kernel/btf/vmlinux ({})", human_bytes(meta.len())),
        ),
        Err(_) => Check::new(
            name,
            Severity::Fail,
            "/sys/kernel/btf/vmlinux missing: `memtrace top` cannot run".to_owned(),
        )
        .with_fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y".to_owned()),
    }
}

/// tracefs mounted, or at least mountable.
pub fn tracefs(roots: &SysRoots) -> Check {
    let name = "tracefs";
    let mounts = fs::read_to_string(roots.proc.join("mounts")).unwrap_or_default();
    if crate::host::tracefs::is_mounted_in(&mounts) {
        return Check::new(
            name,
            Severity::Ok,
            format!("mounted at {}", crate::host::tracefs::TRACEFS),
        );
    }
    let filesystems = fs::read_to_string(roots.proc.join("filesystems")).unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.split_ascii_whitespace().last() == Some("tracefs"))
    {
        return Check::new(
            name,
            Severity::Ok,
            "not mounted; mountable (memtrace mounts it when needed)".to_owned(),
        );
    }
    Check::new(name, Severity::Fail, "kernel has no tracefs".to_owned())
        .with_fix("use a kernel with CONFIG_TRACING=y".to_owned())
}

/// The tracepoints the tracer attaches to, looked up as `btf_trace_*` types in kernel BTF.
pub fn tracepoints(roots: &SysRoots) -> Check {
    let name = "tracepoints";
    let btf = match Btf::from_file(&vmlinux(roots)) {
        Ok(btf) => btf,
        Err(err) => return Check::new(name, Severity::Fail, format!("cannot check: {err}")),
    };
    let missing: Vec<_> = REQUIRED_TRACEPOINTS
        .iter()
        .filter(|t| !btf.has_type(t))
        .map(|t| t.trim_start_matches("btf_trace_"))
        .collect();
    if missing.is_empty() {
        Check::new(
            name,
            Severity::Ok,
            format!("all {} present", REQUIRED_TRACEPOINTS.len()),
        )
    } else {
        Check::new(
            name,
            Severity::Fail,
            format!("missing: {}", missing.join(", ")),
        )
        .with_fix("use a newer kernel (6.1 or later has them all)".to_owned())
    }
}

/// NVML, for the GPU columns; its absence is information, never a failure.
pub fn nvml(loadable: bool) -> Check {
    if loadable {
        Check::new("NVML", Severity::Ok, format!("{NVML_LIBRARY} loads"))
    } else {
        Check::new(
            "NVML",
            Severity::Info,
            "absent (no NVIDIA driver): GPU columns stay empty".to_owned(),
        )
    }
}
