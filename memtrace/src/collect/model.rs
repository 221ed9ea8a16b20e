//! The one process/system model every consumer reads (top, status, guard, recorder, report):
//! plain data, serializable, produced by the sampler.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One process as seen in one sampling interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// Process id (tgid).
    pub pid: u32,
    /// Parent process id (0 when unknown, e.g. already exited).
    pub ppid: u32,
    /// Command name (`/proc/PID/comm`, or the kernel's comm at exit). Shared, not copied,
    /// between a process's snapshots.
    pub comm: Arc<str>,
    /// Full command line, space-separated (empty for kernel threads and exited processes).
    pub cmdline: Arc<str>,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22); with the pid it names the
    /// process unambiguously.
    pub start_ticks: u64,
    /// Resident set: anon + file + shmem.
    pub rss_bytes: u64,
    /// Anonymous resident memory.
    pub anon_bytes: u64,
    /// File-backed resident memory.
    pub file_bytes: u64,
    /// Shared-memory (tmpfs/shm) resident memory.
    pub shmem_bytes: u64,
    /// Memory swapped out.
    pub swap_bytes: u64,
    /// Highest resident set seen.
    pub peak_rss_bytes: u64,
    /// Change of the resident set over the window, bytes per second (negative: shrinking).
    pub growth_bytes_per_s: f64,
    /// Change of the [footprint](ProcSample::footprint_bytes) over the window, bytes/s. The
    /// guard ranks victims by this: mapping a binary's file pages is not a leak.
    #[serde(default)]
    pub footprint_growth_bytes_per_s: f64,
    /// User page faults since tracing began.
    pub faults: u64,
    /// User page faults per second over the window.
    pub faults_per_s: f64,
    /// Direct-reclaim stalls since tracing began.
    pub reclaim_count: u64,
    /// Time stalled in direct reclaim since tracing began, ns.
    pub reclaim_stall_ns: u64,
    /// Stall time per second over the window, ms/s.
    pub reclaim_stall_ms_per_s: f64,
    /// GPU memory held by the process, where a GPU source knows it (`null` in JSON otherwise:
    /// the keys are the same with or without a GPU).
    #[serde(default)]
    pub gpu_bytes: Option<u64>,
    /// The process exited during the interval; the values are its last ones.
    pub exited: bool,
    /// The kernel OOM killer chose this process.
    pub oom_killed: bool,
}

/// A process's **footprint**: the memory it owns that dropping caches cannot free —
/// anonymous + shared-memory resident pages plus what of them is swapped out (anon + shmem +
/// swap). File pages are left out: the kernel drops or re-reads them at will. Every consumer
/// (growth rates, victim ranking, stage reports) measures a process by this one definition.
pub fn footprint(anon: u64, shmem: u64, swap: u64) -> u64 {
    anon.saturating_add(shmem).saturating_add(swap)
}

impl ProcSample {
    /// The process's [`footprint`]: anon + shmem + swap.
    pub fn footprint_bytes(&self) -> u64 {
        footprint(self.anon_bytes, self.shmem_bytes, self.swap_bytes)
    }

    /// Everything the process holds that only its exit gives back: its footprint plus the GPU
    /// memory it holds, where a GPU source knows it.
    pub fn held_bytes(&self) -> u64 {
        self.footprint_bytes()
            .saturating_add(self.gpu_bytes.unwrap_or(0))
    }
}

/// Machine-wide memory state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemSample {
    /// MemTotal.
    pub mem_total_bytes: u64,
    /// MemAvailable.
    pub mem_available_bytes: u64,
    /// MemTotal − MemAvailable.
    pub mem_used_bytes: u64,
    /// Used as a percentage of total.
    pub mem_used_percent: f64,
    /// SwapTotal.
    pub swap_total_bytes: u64,
    /// SwapFree.
    pub swap_free_bytes: u64,
    /// PSI memory "some" avg10 (percent), when PSI is available.
    pub psi_some_avg10: Option<f64>,
    /// PSI memory "full" avg10 (percent), when PSI is available.
    pub psi_full_avg10: Option<f64>,
}

/// Health counters of the tracer itself: losses are shown, never silent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracerHealth {
    /// kswapd wakeups since tracing began (system wide).
    pub kswapd_wakeups: u64,
    /// Events dropped because the per-process map was full.
    pub map_full: u64,
    /// Events dropped because the ring buffer was full.
    pub ringbuf_drops: u64,
    /// rss events of an mm without owner (being torn down).
    pub no_owner: u64,
    /// Reclaim ends without a begin.
    pub reclaim_unmatched: u64,
}

/// A kernel OOM kill observed by the tracer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    /// The victim (tgid).
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Its resident set when chosen.
    pub rss_bytes: u64,
    /// When, in ms since the Unix epoch.
    pub time_unix_ms: u64,
}

/// Everything known at the end of one sampling interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// End of the interval, ms since the Unix epoch.
    pub time_unix_ms: u64,
    /// Length of the window the rates are computed over, seconds.
    pub window_s: f64,
    /// Machine-wide state.
    pub system: SystemSample,
    /// Processes, live and just exited.
    pub procs: Vec<ProcSample>,
    /// OOM kills seen during the interval.
    pub oom_kills: Vec<OomKill>,
    /// Tracer losses and system-wide counters.
    pub health: TracerHealth,
    /// GPUs, when a GPU source is available (an empty array otherwise).
    #[serde(default)]
    pub gpus: Vec<GpuDevice>,
}

/// One GPU's memory state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// Device index as NVML numbers it.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Memory in use.
    pub used_bytes: u64,
    /// Total memory.
    pub total_bytes: u64,
    /// GPU utilisation, percent, when known (`null` otherwise).
    #[serde(default)]
    pub utilization_percent: Option<u32>,
}
