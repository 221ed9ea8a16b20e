//! The self-describing trace header: host, kernel, RAM, swap, GPUs, start time, what was traced
//! and with which settings. Stored as JSON so any tool can read it.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::collect::model::GpuDevice;

/// First record of every trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// memtrace version that wrote it.
    pub memtrace_version: String,
    /// Host name.
    pub host: String,
    /// Kernel release.
    pub kernel: String,
    /// MemTotal at start.
    pub ram_bytes: u64,
    /// SwapTotal at start.
    pub swap_bytes: u64,
    /// Online CPUs.
    pub cpus: u32,
    /// GPUs seen at start (empty without a GPU source).
    #[serde(default)]
    pub gpus: Vec<GpuDevice>,
    /// Start, ms since the Unix epoch.
    pub start_unix_ms: u64,
    /// Sampling interval, ms.
    pub interval_ms: u64,
    /// What is traced, in words (`process tree of pid 123`, `all processes`).
    pub scope: String,
    /// The traced command, when memtrace started it.
    #[serde(default)]
    pub command: Vec<String>,
    /// The settings in effect (run config, environment set for the child, …).
    #[serde(default)]
    pub config: serde_json::Value,
}

fn first_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.lines().next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default()
}

impl Header {
    /// Describes this host now (reading `proc_root`), for a trace of `scope`.
    pub fn collect(proc_root: &Path, scope: String, interval_ms: u64, start_unix_ms: u64) -> Self {
        let (ram_bytes, swap_bytes) = crate::host::procfs::read_meminfo(proc_root)
            .map(|m| (m.total, m.swap_total))
            .unwrap_or_default();
        let cpus = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        Self {
            memtrace_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: first_line(&proc_root.join("sys/kernel/hostname")),
            kernel: first_line(&proc_root.join("sys/kernel/osrelease")),
            ram_bytes,
            swap_bytes,
            cpus,
            gpus: Vec::new(),
            start_unix_ms,
            interval_ms,
            scope,
            command: Vec::new(),
            config: serde_json::Value::Null,
        }
    }
}
