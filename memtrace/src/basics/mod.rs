//! The everyday basics that need no eBPF: `memtrace swap` (status, setup, remove), `memtrace
//! doctor` (host checks with safe fixes) and `memtrace clean` (drop caches, old temp files).

pub mod clean;
pub mod clean_walk;
pub mod doctor;
pub mod doctor_checks;
pub mod doctor_report;
pub mod doctor_tracing;
pub mod fstab;
pub mod proc_swaps;
pub mod swap;
pub mod swap_fs;
pub mod swap_plan;
pub mod swap_status;
pub mod swapfile;
pub mod sysctl;
