//! The `memtrace doctor` line that says how `top`, `guard`, `run` and `record` will collect on
//! this host: with eBPF, or from /proc — and why, what is lost, and how to get eBPF back. It
//! predicts what [`Source::start`](crate::collect::source::Source::start) decides, from this
//! process's uid and capabilities (`/proc/self/status`) and the BTF and tracepoint checks; a
//! verifier refusal can only be seen by loading, which `top --once` does.
use super::{
    report::{Check, Severity, SysRoots},
    tracing,
};
use crate::{
    collect::source::{LOST_WITHOUT_EBPF, NoEbpf},
    host::privilege::{self, Capability},
};

/// The collection mode this host gives memtrace.
pub fn mode(roots: &SysRoots) -> Check {
    let name = "collection";
    let Some(creds) = privilege::credentials(&roots.proc) else {
        return Check::new(
            name,
            Severity::Info,
            format!(
                "cannot read {}/self/status to tell whether eBPF can load",
                roots.proc.display()
            ),
        );
    };
    let why = NoEbpf::from_credentials(&creds).or_else(|| {
        let btf = tracing::btf(roots);
        if btf.level != Severity::Ok {
            return Some(NoEbpf::NoBtf(btf.detail));
        }
        let tracepoints = tracing::tracepoints(roots);
        (tracepoints.level != Severity::Ok)
            .then_some(NoEbpf::MissingTracepoints(tracepoints.detail))
    });
    let Some(why) = why else {
        return Check::new(
            name,
            Severity::Ok,
            "eBPF: privileges, kernel BTF and tracepoints are all there".to_owned(),
        );
    };
    let fix = match &why {
        NoEbpf::NotRoot { .. } => "for eBPF run them as root (sudo)".to_owned(),
        NoEbpf::MissingCapabilities(_) => format!(
            "for eBPF give the container {} and {} (docker run --cap-add BPF --cap-add \
             PERFMON; kernel 5.8+), or {}",
            Capability::Bpf.name(),
            Capability::Perfmon.name(),
            Capability::SysAdmin.name()
        ),
        NoEbpf::NoBtf(_) | NoEbpf::MissingTracepoints(_) | NoEbpf::Refused(_) => {
            "for eBPF use a kernel with BTF and the tracepoints (see the lines above)".to_owned()
        }
    };
    Check::new(
        name,
        Severity::Info,
        format!("/proc, without eBPF: {why}; loses {LOST_WITHOUT_EBPF}"),
    )
    .with_fix(fix)
}

#[cfg(test)]
mod tests {
    //! The prediction from a fake status file, BTF and tracepoints.
    use std::fs;

    use super::*;

    fn roots_with_status(status: &str) -> (tempfile::TempDir, SysRoots) {
        let dir = tempfile::tempdir().expect("temp dir");
        let roots = SysRoots::under(dir.path());
        fs::create_dir_all(roots.proc.join("self")).expect("mkdir");
        fs::write(roots.proc.join("self/status"), status).expect("write");
        (dir, roots)
    }

    #[test]
    fn not_root_and_a_default_container_run_from_proc() {
        let (_dir, roots) = roots_with_status("Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0\n");
        let check = mode(&roots);
        assert_eq!(check.level, Severity::Info);
        assert!(
            check
                .detail
                .starts_with("/proc, without eBPF: not root (effective uid 1000); loses "),
            "{}",
            check.detail
        );
        assert!(check.detail.contains("reclaim stalls"), "{}", check.detail);
        let (_dir, roots) = roots_with_status("Uid:\t0\t0\t0\t0\nCapEff:\t00000000a80425fb\n");
        let check = mode(&roots);
        assert!(
            check
                .detail
                .contains("root without CAP_BPF and CAP_PERFMON (nor CAP_SYS_ADMIN)"),
            "{}",
            check.detail
        );
        assert!(
            check
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("--cap-add BPF")),
            "{check:?}"
        );
    }

    #[test]
    fn full_privileges_without_btf_still_run_from_proc() {
        let (_dir, roots) = roots_with_status("Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n");
        let check = mode(&roots);
        assert_eq!(check.level, Severity::Info);
        assert!(
            check.detail.contains("no usable kernel BTF"),
            "{}",
            check.detail
        );
        let (_dir, roots) = roots_with_status("Uid:\t0\n");
        assert!(
            mode(&roots).detail.starts_with("cannot read"),
            "unreadable status"
        );
    }
}
