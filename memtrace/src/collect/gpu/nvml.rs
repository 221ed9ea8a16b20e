//! The real GPU source: NVML through `nvml-wrapper`, initialised once for the process lifetime. Per
//! sample: each device's name (cached), memory and utilisation, and the memory of its compute and
//! graphics processes, their pids mapped from the host's to ours ([`super::pids`]). A query that
//! fails is logged once and left out; nothing is retried in a loop. The wall time of every sample
//! is measured (debug log, running mean).
use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use nvml_wrapper::{Nvml, enums::device::UsedGpuMemory, error::NvmlError};

use super::{
    GpuProcess, GpuSample, GpuSource,
    pids::{self, PidView},
};
use crate::collect::model::GpuDevice;

/// The library NVML lives in (installed with the NVIDIA driver).
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Why NVML cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The library could not be loaded.
    #[error("{library} not found (no NVIDIA driver)")]
    Library {
        /// What was loaded.
        library: String,
        /// The loader's message.
        #[source]
        source: NvmlError,
    },
    /// The library loaded but the kernel driver is not running.
    #[error("the NVIDIA kernel driver is not loaded")]
    DriverNotLoaded,
    /// Not allowed to talk to the driver.
    #[error("no permission to talk to the NVIDIA driver")]
    NoPermission,
    /// NVML works but lists no GPU.
    #[error("NVML lists no GPU")]
    NoDevices,
    /// Anything else NVML reported while starting.
    #[error("NVML failed to start: {0}")]
    Init(#[source] NvmlError),
}

impl GpuError {
    fn from_init(library: &str, err: NvmlError) -> Self {
        match err {
            NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => Self::Library {
                library: library.to_owned(),
                source: err,
            },
            NvmlError::DriverNotLoaded => Self::DriverNotLoaded,
            NvmlError::NoPermission => Self::NoPermission,
            other => Self::Init(other),
        }
    }
}

/// Running mean of the sample cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleCost {
    /// Samples taken.
    pub samples: u64,
    /// Their total wall time.
    pub total: Duration,
    /// The slowest one.
    pub max: Duration,
}

impl SampleCost {
    /// Adds one measured sample.
    pub fn add(&mut self, took: Duration) {
        self.samples += 1;
        self.total = self.total.saturating_add(took);
        self.max = self.max.max(took);
    }

    /// Mean per sample, `None` before the first.
    pub fn mean(&self) -> Option<Duration> {
        u32::try_from(self.samples)
            .ok()
            .filter(|&n| n > 0)
            .map(|n| self.total / n)
    }
}

/// NVML, opened once.
pub struct NvmlSource {
    nvml: Nvml,
    /// Device names by index (they do not change while running).
    names: Vec<String>,
    /// How NVML's (host) pids relate to ours.
    pids: PidView,
    /// (device, query) pairs whose failure was already logged.
    logged: HashSet<(u32, &'static str)>,
    cost: SampleCost,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSource")
            .field("names", &self.names)
            .field("pids", &self.pids)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

/// Whether NVML's library can be loaded at all (dlopen, then closed again): the cheap check
/// `doctor` and the tests make before anything is initialised.
pub fn loadable() -> bool {
    let Ok(name) = std::ffi::CString::new(NVML_LIBRARY) else {
        return false;
    };
    // SAFETY: name is a NUL-terminated string that outlives the call. Loading runs the NVML
    // library's initialisers (the same library nvml-wrapper loads); no symbol is taken from the
    // handle, which is only closed again. rustix has no dlopen.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return false;
    }
    // SAFETY: handle came from a successful dlopen and is closed exactly once.
    unsafe { libc::dlclose(handle) };
    true
}

impl NvmlSource {
    /// Loads [`NVML_LIBRARY`] and initialises NVML.
    pub fn open() -> Result<Self, GpuError> {
        Self::open_library(NVML_LIBRARY)
    }

    /// Loads NVML from `library` (a name the dynamic loader resolves, or a path).
    pub fn open_library(library: &str) -> Result<Self, GpuError> {
        let nvml = Nvml::builder()
            .lib_path(std::ffi::OsStr::new(library))
            .init()
            .map_err(|err| GpuError::from_init(library, err))?;
        let count = nvml.device_count().map_err(GpuError::Init)?;
        if count == 0 {
            return Err(GpuError::NoDevices);
        }
        let names = (0..count)
            .map(|index| {
                nvml.device_by_index(index)
                    .and_then(|device| device.name())
                    .unwrap_or_else(|err| format!("GPU {index} ({err})"))
            })
            .collect();
        Ok(Self {
            nvml,
            names,
            pids: PidView::detect(Path::new("/proc")),
            logged: HashSet::new(),
            cost: SampleCost::default(),
        })
    }

    /// "2 GPUs: 0 NVIDIA H100 80GB HBM3, 1 …".
    pub fn describe(&self) -> String {
        let list: Vec<String> = self
            .names
            .iter()
            .enumerate()
            .map(|(index, name)| format!("{index} {name}"))
            .collect();
        let plural = if self.names.len() == 1 { "" } else { "s" };
        format!("{} GPU{plural}: {}", self.names.len(), list.join(", "))
    }

    /// How NVML's pids relate to ours; with [`PidView::Unavailable`] the per-process list is
    /// left empty.
    pub fn pid_view(&self) -> PidView {
        self.pids
    }

    /// What sampling has cost so far.
    pub fn cost(&self) -> SampleCost {
        self.cost
    }

    fn read(&mut self) -> GpuSample {
        let mut sample = GpuSample::default();
        let Self {
            nvml,
            names,
            pids: view,
            logged,
            ..
        } = self;
        let mut failed = |index: u32, what: &'static str, err: &NvmlError| {
            if logged.insert((index, what)) {
                log::warn!("GPU {index}: reading {what} failed: {err} (left out from now on)");
            }
        };
        for (index, name) in (0u32..).zip(names.iter()) {
            let device = match nvml.device_by_index(index) {
                Ok(device) => device,
                Err(err) => {
                    failed(index, "the device", &err);
                    continue;
                }
            };
            let memory = match device.memory_info() {
                Ok(memory) => memory,
                Err(err) => {
                    failed(index, "memory", &err);
                    continue;
                }
            };
            let utilization_percent = match device.utilization_rates() {
                Ok(rates) => Some(rates.gpu),
                Err(NvmlError::NotSupported) => None,
                Err(err) => {
                    failed(index, "utilisation", &err);
                    None
                }
            };
            sample.devices.push(GpuDevice {
                index,
                name: name.clone(),
                used_bytes: memory.used,
                total_bytes: memory.total,
                utilization_percent,
            });
            if *view == PidView::Unavailable {
                continue;
            }
            for (what, listed) in [
                ("compute processes", device.running_compute_processes()),
                ("graphics processes", device.running_graphics_processes()),
            ] {
                match listed {
                    Ok(processes) => {
                        for process in processes {
                            if let UsedGpuMemory::Used(bytes) = process.used_gpu_memory {
                                merge(&mut sample.processes, process.pid, index, bytes);
                            }
                        }
                    }
                    Err(NvmlError::NotSupported) => {}
                    Err(err) => failed(index, what, &err),
                }
            }
        }
        if *view == PidView::Nspid {
            let map = pids::map_listed(Path::new("/proc"), &sample.processes);
            let dropped = pids::translate(&mut sample.processes, &map);
            if dropped > 0 && logged.insert((u32::MAX, "pid mapping")) {
                log::info!(
                    "GPU: {dropped} process(es) NVML lists are not visible from here (left out)"
                );
            }
        }
        sample
    }
}

/// Adds a listed (pid, device, bytes); a process listed as both compute and graphics on the same
/// device holds one allocation, so the larger figure is kept rather than the sum.
pub fn merge(processes: &mut Vec<GpuProcess>, pid: u32, gpu_index: u32, bytes: u64) {
    match processes
        .iter_mut()
        .find(|p| p.pid == pid && p.gpu_index == gpu_index)
    {
        Some(known) => known.used_bytes = known.used_bytes.max(bytes),
        None => processes.push(GpuProcess {
            pid,
            gpu_index,
            used_bytes: bytes,
        }),
    }
}

impl GpuSource for NvmlSource {
    fn sample(&mut self) -> GpuSample {
        let started = Instant::now();
        let sample = self.read();
        let took = started.elapsed();
        self.cost.add(took);
        log::debug!(
            "GPU sample: {} devices, {} processes in {took:?} (mean {:?} over {}, max {:?})",
            sample.devices.len(),
            sample.processes.len(),
            self.cost.mean().unwrap_or_default(),
            self.cost.samples,
            self.cost.max
        );
        sample
    }

    fn name(&self) -> &'static str {
        "nvml"
    }

    fn mean_sample_cost(&self) -> Option<Duration> {
        self.cost.mean()
    }
}

#[cfg(test)]
mod tests {
    //! The "no NVML" path on machines without the library, error wording, merging, cost.
    use super::*;

    #[test]
    fn missing_library_is_reported_cleanly() {
        let err = NvmlSource::open_library("/nonexistent/libnvidia-ml.so.1")
            .expect_err("no library there");
        assert!(matches!(err, GpuError::Library { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "/nonexistent/libnvidia-ml.so.1 not found (no NVIDIA driver)"
        );
    }

    #[test]
    fn real_source_without_nvml_says_no_nvml() {
        if loadable() {
            eprintln!("libnvidia-ml.so.1 loads here: the no-NVML path is not testable");
            return;
        }
        let err = NvmlSource::open().expect_err("no NVML on this machine");
        assert_eq!(
            err.to_string(),
            "libnvidia-ml.so.1 not found (no NVIDIA driver)"
        );
        let mut source = crate::collect::gpu::open_default();
        assert_eq!(source.name(), "none");
        assert_eq!(source.sample(), GpuSample::default());
    }

    #[test]
    fn compute_and_graphics_listing_is_not_double_counted() {
        let mut processes = Vec::new();
        merge(&mut processes, 7, 0, 100);
        merge(&mut processes, 7, 0, 100);
        merge(&mut processes, 7, 1, 50);
        merge(&mut processes, 8, 0, 10);
        assert_eq!(
            processes,
            vec![
                GpuProcess {
                    pid: 7,
                    gpu_index: 0,
                    used_bytes: 100
                },
                GpuProcess {
                    pid: 7,
                    gpu_index: 1,
                    used_bytes: 50
                },
                GpuProcess {
                    pid: 8,
                    gpu_index: 0,
                    used_bytes: 10
                },
            ]
        );
    }

    #[test]
    fn cost_keeps_a_running_mean() {
        let mut cost = SampleCost::default();
        assert_eq!(cost.mean(), None);
        cost.add(Duration::from_millis(1));
        cost.add(Duration::from_millis(3));
        assert_eq!(cost.mean(), Some(Duration::from_millis(2)));
        assert_eq!(cost.max, Duration::from_millis(3));
    }
}
