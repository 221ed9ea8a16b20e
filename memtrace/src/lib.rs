//! memtrace: a low-overhead eBPF memory tracer and pressure responder for Linux GPU hosts.
//!
//! Data flows one way: kernel programs aggregate per process in maps → [`tracer`] reads them →
//! [`sampler`] builds one [`model::Snapshot`] → consumers (`top`, `status`, …) render or act.

pub mod basics;
pub mod btf;
pub mod cli;
pub mod duration;
pub mod export;
pub mod gpu;
pub mod growth;
pub mod guard;
pub mod model;
pub mod privilege;
pub mod procfs;
pub mod procscan;
pub mod report;
pub mod run;
pub mod sampler;
pub mod status;
pub mod system;
pub mod top;
pub mod trace;
pub mod tracefs;
pub mod tracer;
pub mod units;
