//! memtrace: a low-overhead eBPF memory tracer and pressure responder for Linux GPU hosts.
//!
//! Data flows one way, and so do the dependencies between the folders:
//!
//! ```text
//!  kernel: eBPF programs (memtrace-ebpf) aggregate per process in maps,
//!          types shared with userspace in memtrace-common
//!     │
//!  host    (memtrace-host, re-exported as `host`): /proc, cgroups, BTF, tracefs, pidfds,
//!     │     sysctls, swap, reclaim, units — what memtrace reads from and does to the machine
//!     ▼
//!  collect  the tracer reads the maps, GPU sources read NVML, the sampler joins them with
//!     │     /proc into one model::Snapshot per interval (growth rates from raw samples)
//!     ▼
//!  record   the recorder: runs or attaches to a pipeline, samples it at marks and intervals,
//!     │     writes the trace file format (record::trace)
//!  guard    the pressure responder: signals → level → reclaim, suspend, resume, kill;
//!     │     it can ride along a recording through record::RunHook
//!  analyze  reads traces back: report (which stage leaks) and export (Perfetto, CSV, JSONL)
//!     ▼
//!  cmd      the subcommands people type (top, status, swap, doctor, clean, demo), thin
//!           layers that read snapshots or traces and print them; cli holds the raw arguments
//! ```
//!
//! A folder only imports from the folders above it in this picture.

pub mod analyze;
pub mod cli;
pub mod cmd;
pub mod collect;
pub mod guard;
pub mod record;

pub use memtrace_host as host;
