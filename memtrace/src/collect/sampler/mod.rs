//! Builds one [`Snapshot`] per interval from the [`Source`] chosen at start — the eBPF tracer's
//! maps and events joined with /proc identities ([`ebpf`]), the /proc source's readings, or
//! those readings joined with the rare-event programs' findings ([`rare`], the guard's) — with
//! rates over a sliding window, the machine's memory line, processes sorted by growth, and the
//! GPUs: the sampler owns the paced GPU source and joins its sample into every snapshot (the
//! devices, and each live process's GPU memory), so every consumer sees the same GPU columns.
mod ebpf;
mod exit_memory;
mod idents;
mod rare;

use std::{cmp::Reverse, collections::HashMap, path::Path};

pub use ebpf::{comm_string, sample_from_stats, seed_stats};

use crate::{
    collect::{
        gpu::{self, GpuSample, GpuSource, Paced},
        growth::{Point, Window},
        model::{ProcSample, Snapshot, TracerHealth},
        proc_source::ProcSource,
        source::{Source, SourceKind},
        system::SystemFiles,
        tracer::{Tracer, TracerError},
    },
    host::{clock, procfs},
};

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The maps could not be read.
    #[error(transparent)]
    Tracer(#[from] TracerError),
    /// /proc could not be read.
    #[error(transparent)]
    Proc(#[from] procfs::ProcError),
}

/// The source with what the sampler keeps beside it.
#[derive(Debug)]
enum Side {
    Ebpf(ebpf::EbpfJoin),
    Proc(ProcSource),
    Rare(rare::RareJoin),
}

/// Growth, fault and stall rates per process (pid, start time) over a sliding window.
#[derive(Debug)]
pub(super) struct Rates {
    /// Window length, seconds.
    span: f64,
    /// Each process's window, with the round it was last applied in.
    windows: HashMap<(u32, u64), (u64, Window)>,
    ticks_per_s: f64,
    round: u64,
}

impl Rates {
    /// Adds the sample's values at `now` to its process's window and sets its rates. A process
    /// born after `since` grows from zero at its birth.
    fn apply(&mut self, sample: &mut ProcSample, now: f64, since: f64) {
        let (seen, window) = self
            .windows
            .entry((sample.pid, sample.start_ticks))
            .or_default();
        *seen = self.round;
        let started_s = sample.start_ticks as f64 / self.ticks_per_s;
        if window.is_empty() && started_s > since && started_s < now {
            // Born during this interval: its growth counts from zero at birth.
            window.push(
                Point {
                    t: started_s,
                    rss: 0.0,
                    footprint: 0.0,
                    faults: 0.0,
                    stall_ns: 0.0,
                },
                self.span,
            );
        }
        window.push(
            Point {
                t: now,
                rss: sample.rss_bytes as f64,
                footprint: sample.footprint_bytes() as f64,
                faults: sample.faults as f64,
                stall_ns: sample.reclaim_stall_ns as f64,
            },
            self.span,
        );
        let rates = window.rates(self.span);
        sample.growth_bytes_per_s = rates.growth_bytes_per_s;
        sample.footprint_growth_bytes_per_s = rates.footprint_growth_bytes_per_s;
        sample.faults_per_s = rates.faults_per_s;
        sample.reclaim_stall_ms_per_s = rates.stall_ms_per_s;
    }

    /// Ends a round: forgets the windows of processes not applied in it (gone).
    fn end_round(&mut self) {
        let round = self.round;
        self.windows.retain(|_, (seen, _)| *seen == round);
        self.round += 1;
    }
}

/// Turns a source's raw readings into snapshots.
#[derive(Debug)]
pub struct Sampler {
    side: Side,
    system: SystemFiles,
    rates: Rates,
    last_sample_s: f64,
    gpu: Paced,
}

impl Sampler {
    /// Wraps a started source and a GPU source (e.g. [`gpu::open_default`], or
    /// [`gpu::NoGpu`] where no GPU is wanted), paced at [`gpu::SAMPLE_EVERY`]; an eBPF tracer is
    /// seeded with every process that exists now (the kernel side only sees changes).
    /// `window_s` is the span rates are computed over.
    pub fn new(
        source: Source,
        gpu: Box<dyn GpuSource>,
        proc_root: &Path,
        window_s: f64,
    ) -> Result<Self, SampleError> {
        let side = match source {
            Source::Ebpf(tracer) => Side::Ebpf(ebpf::EbpfJoin::new(tracer, proc_root)?),
            Source::Proc(source) => Side::Proc(source),
            Source::Rare { tracer, procs } => {
                Side::Rare(rare::RareJoin::new(tracer, procs, proc_root))
            }
        };
        Ok(Self {
            side,
            system: SystemFiles::open(proc_root),
            rates: Rates {
                span: window_s,
                windows: HashMap::new(),
                ticks_per_s: clock::clock_ticks() as f64,
                round: 0,
            },
            last_sample_s: clock::boottime_s(),
            gpu: Paced::new(gpu),
        })
    }

    /// Samples the GPUs at most every `every` (faster under pressure, or a recording's
    /// interval); takes effect at the next snapshot.
    pub fn set_gpu_every(&mut self, every: std::time::Duration) {
        self.gpu.set_every(every);
    }

    /// The GPU sample joined into the last snapshot (before the first: a fresh one).
    pub fn gpu_sample(&mut self) -> &GpuSample {
        self.gpu.last_or_sample()
    }

    /// The GPU source, e.g. for its name and cost.
    pub fn gpu_source(&self) -> &dyn GpuSource {
        self.gpu.source()
    }

    /// [`Self::sample`] with a GPU sample taken now whatever the pace: a stage mark must see the
    /// GPUs at the mark.
    pub fn sample_fresh_gpu(&mut self) -> Result<Snapshot, SampleError> {
        let mut snapshot = self.sample_host()?;
        gpu::join(&mut snapshot, self.gpu.fresh());
        Ok(snapshot)
    }

    /// Reuse each process's /proc identity (comm, ppid, command line) for up to `age` instead
    /// of re-reading `/proc/PID/stat` every sample; exit events still evict it at once. Used by
    /// the guard's per-event mode (`--per-event`), whose idle
    /// rounds then touch no /proc file per process. Fault counts from /proc are as old as the
    /// identity. (The /proc source has its own cadence: see [`ProcSource`].)
    pub fn set_ident_max_age(&mut self, age: std::time::Duration) {
        if let Side::Ebpf(join) = &mut self.side {
            join.idents.max_age = Some(age);
        }
    }

    /// The tracer, e.g. for its program statistics; `None` without eBPF.
    pub fn tracer(&self) -> Option<&Tracer> {
        match &self.side {
            Side::Ebpf(join) => Some(&join.tracer),
            Side::Rare(join) => Some(&join.tracer),
            Side::Proc(_) => None,
        }
    }

    /// The /proc source, e.g. for what it has read; `None` with the per-event tracer.
    pub fn proc_source(&self) -> Option<&ProcSource> {
        match &self.side {
            Side::Ebpf(_) => None,
            Side::Proc(source) => Some(source),
            Side::Rare(join) => Some(&join.procs),
        }
    }

    /// Which source feeds this sampler.
    pub fn kind(&self) -> SourceKind {
        match &self.side {
            Side::Ebpf(_) | Side::Rare(_) => SourceKind::Ebpf,
            Side::Proc(_) => SourceKind::Proc,
        }
    }

    /// Takes one snapshot: every process of the source (sorted by growth, then size) plus the
    /// ones that exited since the previous snapshot, with the paced GPU sample joined.
    pub fn sample(&mut self) -> Result<Snapshot, SampleError> {
        let mut snapshot = self.sample_host()?;
        gpu::join(&mut snapshot, self.gpu.sample());
        Ok(snapshot)
    }

    /// The snapshot without its GPU part.
    fn sample_host(&mut self) -> Result<Snapshot, SampleError> {
        let now = clock::boottime_s();
        let since = self.last_sample_s;
        let (mut procs, oom_kills, health) = match &mut self.side {
            Side::Ebpf(join) => join.collect(&mut self.rates, now, since)?,
            Side::Proc(source) => {
                let reading = source.read()?;
                let mut procs: Vec<ProcSample> = source.live().cloned().collect();
                for sample in &mut procs {
                    self.rates.apply(sample, now, since);
                }
                procs.extend(reading.exited);
                (procs, reading.oom_kills, TracerHealth::default())
            }
            Side::Rare(join) => join.collect(&mut self.rates, now, since)?,
        };
        // Every live process, and only those, had its rates applied.
        self.rates.end_round();
        // Fastest growing first, then largest, pid breaking ties. The keys are sorted and the
        // samples moved once: moving whole samples at every comparison cost more than the rest
        // of a sample of idle processes.
        procs.sort_by_cached_key(|p| {
            (
                Reverse(total_order_key(p.growth_bytes_per_s)),
                Reverse(p.rss_bytes),
                p.pid,
            )
        });
        let window_s = (now - since).max(0.0);
        self.last_sample_s = now;
        Ok(Snapshot {
            time_unix_ms: clock::unix_ms(),
            window_s,
            system: self.system.sample()?,
            procs,
            oom_kills,
            health,
            gpus: Vec::new(),
        })
    }
}

/// An integer that orders as [`f64::total_cmp`] orders `value`.
fn total_order_key(value: f64) -> i64 {
    let bits = value.to_bits() as i64;
    // Negative numbers: flip every bit but the sign, so larger magnitudes sort lower.
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

#[cfg(test)]
mod tests {
    //! The order of a snapshot's processes; the GPU joined into every snapshot.
    use super::*;
    use crate::collect::{
        gpu::{FakeGpuSource, GpuProcess},
        model::GpuDevice,
        proc_source::{Members, OomSource},
    };

    fn on_gpu(pid: u32, used_bytes: u64) -> GpuSample {
        GpuSample {
            devices: vec![GpuDevice {
                index: 0,
                name: "fake".to_owned(),
                total_bytes: 80 << 30,
                used_bytes,
                utilization_percent: None,
            }],
            processes: vec![GpuProcess {
                pid,
                gpu_index: 0,
                used_bytes,
            }],
        }
    }

    /// Every snapshot carries the devices and each live process's GPU memory, paced; a fresh
    /// sample is taken whatever the pace.
    #[test]
    fn every_snapshot_carries_the_paced_gpu_sample() {
        let me = std::process::id();
        let proc_root = Path::new("/proc");
        let source = Source::Proc(ProcSource::new(
            proc_root,
            Members::Tree(me),
            OomSource::Machine,
        ));
        let gpu = FakeGpuSource::new(vec![on_gpu(me, 1 << 20), on_gpu(me, 2 << 20)]);
        let mut sampler = Sampler::new(source, Box::new(gpu), proc_root, 1.0).expect("sampler");
        sampler.set_gpu_every(std::time::Duration::from_secs(3600));
        let mine = |snapshot: &Snapshot| {
            snapshot
                .procs
                .iter()
                .find(|p| p.pid == me)
                .and_then(|p| p.gpu_bytes)
        };
        let first = sampler.sample().expect("snapshot");
        assert_eq!(first.gpus.len(), 1);
        assert_eq!(mine(&first), Some(1 << 20));
        let paced = sampler.sample().expect("snapshot");
        assert_eq!(
            mine(&paced),
            Some(1 << 20),
            "within the pace: the same sample"
        );
        assert_eq!(sampler.gpu_sample(), &on_gpu(me, 1 << 20));
        let fresh = sampler.sample_fresh_gpu().expect("snapshot");
        assert_eq!(
            mine(&fresh),
            Some(2 << 20),
            "a fresh sample whatever the pace"
        );
        assert_eq!(sampler.gpu_source().name(), "fake");
    }

    #[test]
    fn the_sort_key_orders_as_total_cmp() {
        let values = [
            f64::NEG_INFINITY,
            -1e9,
            -1.5,
            -0.0,
            0.0,
            1e-300,
            2.0,
            3e12,
            f64::INFINITY,
            f64::NAN,
        ];
        for a in values {
            for b in values {
                assert_eq!(
                    total_order_key(a).cmp(&total_order_key(b)),
                    a.total_cmp(&b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
