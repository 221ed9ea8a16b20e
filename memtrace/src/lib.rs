//! memtrace: a low-overhead eBPF memory tracer and pressure responder for Linux GPU hosts.
//!
//! Data flows one way, and so do the dependencies between the folders: each one only imports
//! from the ones above it.
//!
//! ```text
//!  kernel   eBPF programs (memtrace-ebpf) aggregate per process in maps; the #[repr(C)] types
//!     │     and the counter merge rule they share with userspace are in memtrace-common
//!     ▼
//!  host     memtrace-host, re-exported as `host`: /proc, cgroups, BTF, tracefs, pidfds,
//!     │     sysctls, swap, cache/temp reclaim, units — what memtrace reads from and does to
//!     │     the machine, with no model and no eBPF
//!     ▼
//!  collect  the tracer reads the maps, the GPU source reads NVML, the sampler joins them with
//!     │     /proc into one model::Snapshot per interval (rates derived from raw samples)
//!     ▼
//!  record   the recorder: runs or attaches to a pipeline, samples its tree at intervals and
//!     │     stage marks, writes the trace file format (record::trace); hooks watch each sample
//!     ├──────────────────────────────┐
//!     ▼                              ▼
//!  guard    pressure → level →      analyze  reads traces back: report (which stage keeps
//!     │     reclaim, suspend,          │     memory) and export (Perfetto, CSV, JSON lines)
//!     │     resume, kill; rides        │
//!     │     along `run` as a hook      │
//!     ▼                              ▼
//!  cmd      the other subcommands people type (top, status, run/record, swap, doctor, clean,
//!           demo); `cli` holds the raw arguments of all of them, `main.rs` dispatches
//! ```
//!
//! Every layer prints and writes its output files through [`output`], so a closed pipe or a full
//! disk ends in a quiet exit or one error line, never a panic or a half-written file.
#![deny(clippy::print_stdout)]

pub mod analyze;
pub mod cli;
pub mod cmd;
pub mod collect;
pub mod guard;
pub mod output;
pub mod record;

pub use memtrace_host as host;
