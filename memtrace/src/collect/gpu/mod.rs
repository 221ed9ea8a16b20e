//! GPU memory next to host memory. A [`GpuSource`] takes one look at every GPU and at the
//! processes holding memory on them; [`join`] puts that into a [`Snapshot`] by pid, so `top`,
//! `status`, the guard and the recorders read GPU and host memory from the same model.
//!
//! The real source is NVML ([`NvmlSource`], opened once for the process lifetime); without a GPU,
//! a driver or `libnvidia-ml.so.1`, [`open_default`] says so in one info line and returns a
//! source that reports nothing, so the GPU columns stay hidden. [`FakeGpuSource`] replays
//! scripted samples for unit tests, and [`ReplaySource`] (chosen by `MEMTRACE_GPU_REPLAY=FILE`)
//! a file of per-process GPU memory over time, so the real binary runs the GPU path without a
//! GPU.
//!
//! NVML reports the pids of the host's pid namespace (the driver knows no other). In a child pid
//! namespace (a container) they are mapped to ours where the /proc memtrace reads shows host
//! pids (`NSpid:`), and otherwise the per-process list is dropped, said once, and only the
//! device totals are shown ([`pids`]).
mod fake;
mod nvml;
mod paced;
pub mod pids;
pub mod replay;

use std::{collections::HashMap, time::Duration};

pub use fake::FakeGpuSource;
pub use nvml::{GpuError, NVML_LIBRARY, NvmlSource, loadable as nvml_loadable};
pub use paced::Paced;
use pids::PidView;
pub use replay::{REPLAY_ENV, ReplaySource};

use crate::collect::model::{GpuDevice, Snapshot};

/// How often GPUs are sampled by default.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often GPUs are sampled while memory pressure is above "warn".
pub const SAMPLE_EVERY_UNDER_PRESSURE: Duration = Duration::from_millis(250);

/// Something that can look at the GPUs.
pub trait GpuSource: Send {
    /// One look at every device and the processes holding memory on them. Never fails: what
    /// cannot be read is left out (and logged once by the source).
    fn sample(&mut self) -> GpuSample;

    /// Which source this is: `"nvml"`, `"none"` or `"fake"`.
    fn name(&self) -> &'static str;

    /// Mean wall time of one [`GpuSource::sample`] so far, where the source measures it.
    fn mean_sample_cost(&self) -> Option<Duration> {
        None
    }
}

/// One look at the GPUs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuSample {
    /// Every device that could be read, by index.
    pub devices: Vec<GpuDevice>,
    /// Memory held per (process, device); a process on two devices appears twice.
    pub processes: Vec<GpuProcess>,
}

/// GPU memory one process holds on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuProcess {
    /// Process id (tgid) in memtrace's pid namespace.
    pub pid: u32,
    /// Device index as NVML numbers it.
    pub gpu_index: u32,
    /// Device memory held.
    pub used_bytes: u64,
}

/// The source used when no GPU can be read: reports nothing, forever, at no cost.
#[derive(Clone, Debug)]
pub struct NoGpu {
    reason: String,
}

impl NoGpu {
    /// A no-op source; `reason` says why there is no GPU.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// Why there is no GPU.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl GpuSource for NoGpu {
    fn sample(&mut self) -> GpuSample {
        GpuSample::default()
    }

    fn name(&self) -> &'static str {
        "none"
    }
}

/// The replay file named by `MEMTRACE_GPU_REPLAY` when set ([`replay`]); else NVML when it
/// loads (one info line saying which GPUs), else a no-op source (one info line: "no NVML: …, GPU
/// columns hidden"). Never errors, never retries in a loop.
pub fn open_default() -> Box<dyn GpuSource> {
    if let Some(path) = std::env::var_os(REPLAY_ENV).filter(|p| !p.is_empty()) {
        log::info!(
            "GPU: replaying {} ({REPLAY_ENV})",
            std::path::Path::new(&path).display()
        );
        return Box::new(ReplaySource::open(std::path::Path::new(&path)));
    }
    match NvmlSource::open() {
        Ok(source) => {
            if source.pid_view() == PidView::Unavailable {
                log::info!("GPU: NVML sees {}; {FOREIGN_PIDS_NOTE}", source.describe());
            } else {
                log::info!("GPU: NVML sees {}", source.describe());
            }
            Box::new(source)
        }
        Err(err) => {
            log::info!("no NVML: {err}, GPU columns hidden");
            Box::new(NoGpu::new(err.to_string()))
        }
    }
}

/// Said once when memtrace runs in a child pid namespace whose /proc shows no host pids.
pub const FOREIGN_PIDS_NOTE: &str = "memtrace runs in a child pid namespace (a container) \
     and NVML reports host pids, which nothing here maps to this container's processes: \
     per-process GPU memory is not available here, only the GPUs' totals (run in the host's pid \
     namespace, e.g. docker run --pid=host, to see it per process)";

/// Sets `gpu_bytes` (sum over devices) on each live process of the snapshot that NVML lists, and
/// `snapshot.gpus`. Other processes get `None`: exited ones keep no GPU memory, and pids NVML
/// lists that the snapshot lacks are ignored.
pub fn join(snapshot: &mut Snapshot, sample: &GpuSample) {
    snapshot.gpus = sample.devices.clone();
    let per_pid = bytes_per_pid(sample);
    for proc in &mut snapshot.procs {
        proc.gpu_bytes = if proc.exited {
            None
        } else {
            per_pid.get(&proc.pid).copied()
        };
    }
}

/// GPU memory per pid, summed over devices.
pub fn bytes_per_pid(sample: &GpuSample) -> HashMap<u32, u64> {
    let mut per_pid: HashMap<u32, u64> = HashMap::new();
    for process in &sample.processes {
        let total = per_pid.entry(process.pid).or_default();
        *total = total.saturating_add(process.used_bytes);
    }
    per_pid
}

/// A device over a threshold: (device index, used percent, holders as (pid, bytes), largest first).
pub type OverThreshold = (u32, f64, Vec<(u32, u64)>);

/// Devices whose used memory is at or above `percent` of their total → for a warn signal: returns
/// (device index, used percent, holders on that device as (pid, bytes), largest first).
/// Devices with an unknown (zero) total are skipped.
pub fn over_threshold(sample: &GpuSample, percent: f64) -> Vec<OverThreshold> {
    sample
        .devices
        .iter()
        .filter(|device| device.total_bytes > 0)
        .filter_map(|device| {
            let used = device.used_bytes as f64 * 100.0 / device.total_bytes as f64;
            if used < percent {
                return None;
            }
            let mut holders: Vec<(u32, u64)> = sample
                .processes
                .iter()
                .filter(|p| p.gpu_index == device.index)
                .map(|p| (p.pid, p.used_bytes))
                .collect();
            holders.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Some((device.index, used, holders))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Joining by pid, thresholds, the missing-GPU path and processes that exit between samples.
    use super::*;
    use crate::collect::model::ProcSample;

    const GIB: u64 = 1 << 30;

    fn device(index: u32, used: u64, total: u64) -> GpuDevice {
        GpuDevice {
            index,
            name: format!("Fake GPU {index}"),
            used_bytes: used,
            total_bytes: total,
            utilization_percent: Some(50),
        }
    }

    fn on(pid: u32, gpu_index: u32, used_bytes: u64) -> GpuProcess {
        GpuProcess {
            pid,
            gpu_index,
            used_bytes,
        }
    }

    fn snapshot(pids: &[(u32, bool)]) -> Snapshot {
        Snapshot {
            procs: pids
                .iter()
                .map(|&(pid, exited)| ProcSample {
                    pid,
                    exited,
                    ..ProcSample::default()
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    fn gpu_of(snapshot: &Snapshot, pid: u32) -> Option<u64> {
        snapshot
            .procs
            .iter()
            .find(|p| p.pid == pid)
            .and_then(|p| p.gpu_bytes)
    }

    #[test]
    fn join_sums_devices_per_live_pid() {
        let sample = GpuSample {
            devices: vec![device(0, 10 * GIB, 80 * GIB), device(1, 3 * GIB, 80 * GIB)],
            processes: vec![on(10, 0, 8 * GIB), on(10, 1, 2 * GIB), on(11, 0, GIB)],
        };
        let mut snap = snapshot(&[(10, false), (11, false), (12, false)]);
        join(&mut snap, &sample);
        assert_eq!(gpu_of(&snap, 10), Some(10 * GIB));
        assert_eq!(gpu_of(&snap, 11), Some(GIB));
        assert_eq!(gpu_of(&snap, 12), None, "not on a GPU: no value, not zero");
        assert_eq!(snap.gpus, sample.devices);
    }

    #[test]
    fn pids_the_snapshot_lacks_are_ignored() {
        let sample = GpuSample {
            devices: vec![device(0, GIB, 8 * GIB)],
            processes: vec![on(999, 0, GIB)],
        };
        let mut snap = snapshot(&[(10, false)]);
        join(&mut snap, &sample);
        assert_eq!(snap.procs.len(), 1);
        assert_eq!(gpu_of(&snap, 10), None);
    }

    #[test]
    fn process_exiting_between_samples_loses_its_gpu_memory() {
        let mut source = FakeGpuSource::new(vec![
            GpuSample {
                devices: vec![device(0, 4 * GIB, 8 * GIB)],
                processes: vec![on(10, 0, 2 * GIB), on(11, 0, 2 * GIB)],
            },
            GpuSample {
                devices: vec![device(0, 2 * GIB, 8 * GIB)],
                processes: vec![on(11, 0, 2 * GIB)],
            },
        ]);
        let mut first = snapshot(&[(10, false), (11, false)]);
        join(&mut first, &source.sample());
        assert_eq!(gpu_of(&first, 10), Some(2 * GIB));
        // 10 exits: the tracer reports it exited while NVML may still list it for a moment.
        let mut racing = snapshot(&[(10, true), (11, false)]);
        join(&mut racing, &first_sample_again());
        assert_eq!(gpu_of(&racing, 10), None, "an exited process holds nothing");
        // Next sample: NVML no longer lists it.
        let mut second = snapshot(&[(11, false)]);
        join(&mut second, &source.sample());
        assert_eq!(gpu_of(&second, 11), Some(2 * GIB));
        assert_eq!(second.gpus[0].used_bytes, 2 * GIB);
        // The last sample repeats.
        assert_eq!(source.sample().processes, vec![on(11, 0, 2 * GIB)]);
    }

    fn first_sample_again() -> GpuSample {
        GpuSample {
            devices: vec![device(0, 4 * GIB, 8 * GIB)],
            processes: vec![on(10, 0, 2 * GIB), on(11, 0, 2 * GIB)],
        }
    }

    #[test]
    fn join_clears_stale_values() {
        let mut snap = snapshot(&[(10, false)]);
        snap.procs[0].gpu_bytes = Some(GIB);
        snap.gpus = vec![device(0, GIB, 8 * GIB)];
        join(&mut snap, &GpuSample::default());
        assert_eq!(gpu_of(&snap, 10), None);
        assert!(snap.gpus.is_empty());
    }

    #[test]
    fn missing_gpu_path_reports_nothing() {
        let mut source = NoGpu::new("libnvidia-ml.so.1 not found");
        assert_eq!(source.name(), "none");
        assert_eq!(source.reason(), "libnvidia-ml.so.1 not found");
        let sample = source.sample();
        assert_eq!(sample, GpuSample::default());
        let mut snap = snapshot(&[(10, false)]);
        join(&mut snap, &sample);
        assert!(snap.gpus.is_empty());
        assert_eq!(gpu_of(&snap, 10), None);
        assert!(over_threshold(&sample, 0.0).is_empty());
        assert_eq!(source.mean_sample_cost(), None);
        // The JSON form keeps both keys: an empty array and a null.
        let json = serde_json::to_value(&snap).expect("serializes");
        assert_eq!(json["gpus"], serde_json::json!([]));
        assert!(
            json["procs"][0]
                .get("gpu_bytes")
                .is_some_and(serde_json::Value::is_null)
        );
    }

    #[test]
    fn threshold_lists_holders_largest_first() {
        let sample = GpuSample {
            devices: vec![device(0, 72 * GIB, 80 * GIB), device(1, 8 * GIB, 80 * GIB)],
            processes: vec![
                on(10, 0, 20 * GIB),
                on(11, 0, 50 * GIB),
                on(12, 1, 8 * GIB),
                on(13, 0, GIB),
            ],
        };
        let over = over_threshold(&sample, 85.0);
        assert_eq!(over.len(), 1);
        let (index, percent, holders) = &over[0];
        assert_eq!(*index, 0);
        assert!((percent - 90.0).abs() < 1e-9);
        assert_eq!(holders, &vec![(11, 50 * GIB), (10, 20 * GIB), (13, GIB)]);
        assert_eq!(over_threshold(&sample, 10.0).len(), 2);
        assert_eq!(
            over_threshold(&sample, 90.0).len(),
            1,
            "at the threshold counts"
        );
        let unknown = GpuSample {
            devices: vec![device(0, GIB, 0)],
            processes: Vec::new(),
        };
        assert!(over_threshold(&unknown, 0.0).is_empty());
    }
}

/// Samples for the tests of this module's files.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{GpuProcess, GpuSample};

    /// A sample in which only `pid` holds (1 byte of) GPU memory.
    pub(crate) fn with_pid(pid: u32) -> GpuSample {
        GpuSample {
            devices: Vec::new(),
            processes: vec![GpuProcess {
                pid,
                gpu_index: 0,
                used_bytes: 1,
            }],
        }
    }
}
