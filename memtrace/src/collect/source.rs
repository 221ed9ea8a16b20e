//! Where per-process memory comes from, decided once at start: the eBPF [`Tracer`] where it
//! loads, else the [`ProcSource`] (/proc and the cgroup's OOM counter), with one INFO line saying
//! why and what is lost. `--require-ebpf` turns the fallback back into the refusal. A tracer
//! started with [`Programs::RareEvents`] (the guard, and `top` by default) runs nothing on the
//! page-fault path, so its source is [`Source::Rare`]: the /proc source's reads joined with the
//! rare events. The [`Sampler`](crate::collect::sampler::Sampler) owns the chosen [`Source`];
//! everything above it sees the same snapshots either way.
use std::path::Path;

use crate::{
    collect::{
        proc_source::{Members, OomSource, ProcSource},
        tracer::{HelperFailure, Programs, Tracer, TracerError, TracerOptions},
    },
    host::privilege::{self, Capability, Credentials},
};

/// What memtrace loses without eBPF, for the INFO line, `doctor` and the help texts.
pub const LOST_WITHOUT_EBPF: &str = "short-lived processes born and gone between two samples, \
     reclaim stalls, and the kernel's own OOM-kill events (the cgroup's OOM counter is read \
     instead, naming a probable victim)";

/// The short help of `--require-ebpf`.
pub const REQUIRE_EBPF_HELP: &str =
    "Refuse to start without eBPF instead of reading /proc (--help: which mode costs what)";

/// What the guard's per-process reading costs, for its `--help` and the README.
pub const GUARD_MODE_HELP: &str = "Cost: by default the guard attaches only the eBPF \
     programs of rare events (reclaim begin/end, kswapd wake-ups, process exit, OOM victim), none \
     on the page-fault path, so a fault storm runs within noise of no tracer; it reads the \
     scope's processes from /proc only when it needs them (every round from 10 points below warn, \
     under PSI stall or while it holds a tree), and paces its rounds by the headroom below \
     suspend (sampling.fill_rate_mib_per_s; 1 s far from it, idling at about 0.01 % of a core). \
     With --per-event the kernel counts every change of every process's memory, as `run` does \
     (one program run per change, about 40 ns; a few per cent of a page-fault storm), and the \
     guard also reads those counts every sampling.processes_idle while idle (README: \
     Benchmarks).";

/// What `top`'s per-process reading costs, for its `--help` and the README.
pub const TOP_MODE_HELP: &str = "Cost: by default `top` runs nothing on the page-fault path, \
     so a fault storm runs within noise of no tracer: it attaches only the eBPF programs of rare \
     events (process exit, reclaim, OOM victim) and reads each process from /proc at every \
     interval (`stat` first, `status` only for a process that faulted or changed size). It \
     still sees transient peaks, through the kernel's own high-water mark (VmHWM, raised before \
     every unmap or reclaim), and processes born and gone between two samples, with their peak, \
     from the exit program (kernel 6.16 and later; before, the tracepoint runs after the task \
     lets go of its memory and such processes are missed). With --per-event the kernel counts \
     every change of every process's resident memory as it happens, as `run` and `record` do \
     (one program run per change, about 40 ns; a few per cent of a page-fault storm).";

/// The long help of `--require-ebpf`: which mode costs what.
pub const REQUIRE_EBPF_LONG_HELP: &str = "Refuse to start without eBPF instead of reading /proc. \
     With eBPF (root with CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, and kernel BTF) memtrace \
     sees short-lived processes, reclaim stalls and OOM kills, and for `run`, `record` and \
     --per-event the kernel counts every process's memory as it changes (about 40 ns per \
     change). Without it (a default container, or not root) \
     memtrace reads the scope's processes from /proc each interval (a few µs per process whose \
     memory changed; an idle one is re-read at least once a second) and loses short-lived \
     processes between samples, reclaim stalls and the kernel's OOM-kill events.";

/// `--require-ebpf` and the tracer could not start.
#[derive(Debug, thiserror::Error)]
#[error("--require-ebpf: the eBPF tracer cannot start: {0}")]
pub struct EbpfRequired(#[source] pub TracerError);

/// The per-process source a sampler reads.
#[derive(Debug)]
pub enum Source {
    /// The eBPF programs' maps and events.
    Ebpf(Tracer),
    /// /proc files of the scope's processes, read each interval.
    Proc(ProcSource),
    /// The rare-event programs ([`Programs::RareEvents`]) with the /proc source's reads of the
    /// scope's processes (each followed process read at every reading; OOM kills from the
    /// kernel's event, not the counter).
    Rare {
        /// The programs of reclaim, kswapd wake-ups, exits and OOM victims.
        tracer: Tracer,
        /// Per-process memory.
        procs: Box<ProcSource>,
    },
}

/// Which kind of [`Source`], for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// eBPF tracer.
    Ebpf,
    /// /proc source.
    Proc,
}

/// Why memtrace runs without eBPF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoEbpf {
    /// Not root.
    NotRoot {
        /// The effective uid.
        euid: u32,
    },
    /// Root without the capabilities eBPF needs (a default container).
    MissingCapabilities(Vec<Capability>),
    /// No usable kernel BTF.
    NoBtf(String),
    /// The kernel lacks tracepoints the programs attach to.
    MissingTracepoints(String),
    /// The kernel refused the object: the verifier, a map or an attach step.
    Refused(String),
}

impl std::fmt::Display for NoEbpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRoot { euid } => write!(f, "not root (effective uid {euid})"),
            Self::MissingCapabilities(missing) => {
                let names: Vec<&str> = missing.iter().map(|cap| cap.name()).collect();
                write!(
                    f,
                    "root without {} (nor {}), as in a default container",
                    names.join(" and "),
                    Capability::SysAdmin.name()
                )
            }
            Self::NoBtf(why) => write!(f, "no usable kernel BTF ({why})"),
            Self::MissingTracepoints(list) => write!(f, "the kernel lacks the tracepoints {list}"),
            Self::Refused(why) => write!(f, "the kernel refused the eBPF programs ({why})"),
        }
    }
}

impl NoEbpf {
    /// Why the tracer failed to start, in these terms. `creds` are this process's, for a
    /// refusal that their missing capabilities explain.
    pub fn from_error(err: &TracerError, creds: Option<&Credentials>) -> Self {
        match err {
            TracerError::Privilege(err) => Self::NotRoot { euid: err.euid },
            TracerError::Btf(err) => Self::NoBtf(err.to_string()),
            TracerError::MissingTracepoints(list) => Self::MissingTracepoints(list.clone()),
            TracerError::Helper {
                kind: HelperFailure::Btf,
                message,
            } => Self::NoBtf(message.clone()),
            TracerError::Helper {
                kind: HelperFailure::Tracepoints,
                message,
            } => Self::MissingTracepoints(message.clone()),
            TracerError::Load(_)
            | TracerError::Program { .. }
            | TracerError::Map { .. }
            | TracerError::Helper {
                kind: HelperFailure::Refused,
                ..
            } => match creds.map(Credentials::missing_for_ebpf) {
                Some(missing) if !missing.is_empty() => Self::MissingCapabilities(missing),
                _ => Self::Refused(one_line(&err.to_string(), 160)),
            },
        }
    }

    /// What keeps eBPF out from the credentials alone (`doctor`'s prediction; the BTF and
    /// tracepoint checks are its own lines): not root, or root without the capabilities.
    pub fn from_credentials(creds: &Credentials) -> Option<Self> {
        if creds.euid != 0 {
            return Some(Self::NotRoot { euid: creds.euid });
        }
        let missing = creds.missing_for_ebpf();
        (!missing.is_empty()).then_some(Self::MissingCapabilities(missing))
    }
}

/// `text` on one line, at most `max` characters (a verifier log can be long).
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max).collect();
    cut.push('…');
    cut
}

/// The INFO line of a start without eBPF.
pub fn fallback_line(why: &NoEbpf) -> String {
    format!(
        "running without eBPF: {why}; reading /proc each interval instead, which loses \
         {LOST_WITHOUT_EBPF} (--require-ebpf refuses instead)"
    )
}

impl Source {
    /// Tries the eBPF tracer; where it cannot start, logs the one INFO line and returns the
    /// /proc source over `members` (OOM kills from `oom`), or, with `require_ebpf`, the
    /// tracer's error. Called once per command: nothing retries.
    pub fn start(
        options: TracerOptions,
        require_ebpf: bool,
        proc_root: &Path,
        members: Members,
        oom: OomSource,
    ) -> Result<Self, EbpfRequired> {
        match Tracer::start(options) {
            Ok(tracer) if options.programs == Programs::RareEvents => Ok(Self::Rare {
                tracer,
                procs: Box::new(
                    ProcSource::new(proc_root, members, oom)
                        .every_sample()
                        .without_oom_counter(),
                ),
            }),
            Ok(tracer) => Ok(Self::Ebpf(tracer)),
            Err(err) if require_ebpf => Err(EbpfRequired(err)),
            Err(err) => {
                let why = NoEbpf::from_error(&err, privilege::credentials(proc_root).as_ref());
                log::info!("{}", fallback_line(&why));
                log::debug!("the eBPF tracer's error: {err}");
                Ok(Self::Proc(ProcSource::new(proc_root, members, oom)))
            }
        }
    }

    /// Has the /proc source (if any) probe each process with `statm`, its sizes only
    /// ([`ProcSource::sizes_only`]): for the guard, which uses no peak.
    pub fn sizes_only(self) -> Self {
        match self {
            Self::Proc(procs) => Self::Proc(procs.sizes_only()),
            Self::Rare { tracer, procs } => Self::Rare {
                tracer,
                procs: Box::new(procs.sizes_only()),
            },
            ebpf @ Self::Ebpf(_) => ebpf,
        }
    }

    /// Which kind this is (eBPF or not: the rare-event source counts as eBPF).
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::Ebpf(_) | Self::Rare { .. } => SourceKind::Ebpf,
            Self::Proc(_) => SourceKind::Proc,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The reasons, and the one line they make.
    use super::*;
    use crate::host::privilege::PrivilegeError;

    #[test]
    fn reasons_name_the_cause() {
        let not_root = TracerError::Privilege(PrivilegeError {
            action: "load eBPF programs",
            euid: 1000,
        });
        assert_eq!(
            NoEbpf::from_error(&not_root, None).to_string(),
            "not root (effective uid 1000)"
        );
        let refused = TracerError::MissingTracepoints("rss_stat".to_owned());
        assert_eq!(
            NoEbpf::from_error(&refused, None),
            NoEbpf::MissingTracepoints("rss_stat".to_owned())
        );
        let docker = Credentials {
            euid: 0,
            effective: 0xa80425fb,
        };
        let why = NoEbpf::from_credentials(&docker).expect("capabilities missing");
        assert_eq!(
            why.to_string(),
            "root without CAP_BPF and CAP_PERFMON (nor CAP_SYS_ADMIN), as in a default container"
        );
        let full = Credentials {
            euid: 0,
            effective: u64::MAX,
        };
        assert_eq!(NoEbpf::from_credentials(&full), None);
    }

    #[test]
    fn the_fallback_line_is_one_line_that_says_what_is_lost() {
        let why = NoEbpf::Refused(one_line("verifier\nlog line 1\n  line 2", 160));
        let line = fallback_line(&why);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("verifier log line 1 line 2"), "{line}");
        for lost in ["short-lived processes", "reclaim stalls", "OOM-kill events"] {
            assert!(line.contains(lost), "{line}");
        }
        assert_eq!(
            one_line(&"x".repeat(200), 10),
            format!("{}…", "x".repeat(10))
        );
    }
}
