//! `cargo xtask bench proc-source`: what memtrace costs without eBPF. N idle processes (`sleep`
//! children of the bench) are sampled through the real sampler and the /proc source every
//! interval for S seconds; its CPU time (this thread's: the sampling runs here) is compared with
//! the same loop sampling nothing, in one invocation, over R interleaved rounds. The first
//! reading (opening every process's files) is timed apart: it happens once per command.
//!
//! Usage: `bench_proc_source [PROCESSES] [INTERVAL_MS] [SECONDS] [ROUNDS]` (default 200 100 10
//! 3). Prints one table and the target line; no assertions.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use memtrace::collect::{
    proc_source::{Members, OomSource, ProcSource, ReadCounts},
    sampler::Sampler,
    source::Source,
};
use memtrace_testkit::child::KillOnDrop;
use rustix::time::{ClockId, clock_gettime};

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let ts = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// What one variant samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// The loop alone: sleeps to each tick, samples nothing.
    Nothing,
    /// The tree of the bench (its idle children), exits by pidfd.
    Tree,
    /// The same source read directly: no rates, no memory line, no snapshot.
    TreeSourceOnly,
    /// The same, probing with `statm` (sizes only) as the guard does.
    TreeSourceSizes,
    /// The same tree, every process read every sample (no pidfds).
    TreeWithoutPidfds,
    /// Every process of the host.
    All,
}

impl Variant {
    const ALL: [Self; 6] = [
        Self::Nothing,
        Self::Tree,
        Self::TreeSourceOnly,
        Self::TreeSourceSizes,
        Self::TreeWithoutPidfds,
        Self::All,
    ];

    fn name(self, processes: usize) -> String {
        match self {
            Self::Nothing => "nothing (baseline)".to_owned(),
            Self::Tree => format!("/proc source, tree of {processes} idle"),
            Self::TreeSourceOnly => "  same, the source alone".to_owned(),
            Self::TreeSourceSizes => "  same, alone, statm probe (guard)".to_owned(),
            Self::TreeWithoutPidfds => "  same, without pidfds".to_owned(),
            Self::All => "/proc source, every process".to_owned(),
        }
    }

    fn sampling(self) -> Sampling {
        let proc_root = Path::new("/proc");
        let me = std::process::id();
        let source = match self {
            Self::Nothing => return Sampling::Nothing,
            Self::Tree | Self::TreeSourceOnly => {
                ProcSource::new(proc_root, Members::Tree(me), OomSource::Machine)
            }
            Self::TreeSourceSizes => {
                ProcSource::new(proc_root, Members::Tree(me), OomSource::Machine).sizes_only()
            }
            Self::TreeWithoutPidfds => {
                ProcSource::new(proc_root, Members::Tree(me), OomSource::Machine).without_pidfds()
            }
            Self::All => ProcSource::new(proc_root, Members::All, OomSource::Machine),
        };
        if matches!(self, Self::TreeSourceOnly | Self::TreeSourceSizes) {
            return Sampling::Source(Box::new(source));
        }
        Sampling::Sampler(Box::new(
            Sampler::new(
                Source::Proc(source),
                Box::new(memtrace::collect::gpu::NoGpu::new("not measured")),
                proc_root,
                1.0,
            )
            .expect("a sampler"),
        ))
    }
}

/// What a run samples through.
enum Sampling {
    Nothing,
    Sampler(Box<Sampler>),
    Source(Box<ProcSource>),
}

impl Sampling {
    fn sample(&mut self) {
        match self {
            Self::Nothing => {}
            Self::Sampler(sampler) => {
                std::hint::black_box(sampler.sample().expect("sample"));
            }
            Self::Source(source) => {
                std::hint::black_box(source.read().expect("read"));
            }
        }
    }

    fn source(&self) -> Option<&ProcSource> {
        match self {
            Self::Nothing => None,
            Self::Sampler(sampler) => sampler.proc_source(),
            Self::Source(source) => Some(&**source),
        }
    }
}

/// One variant's run.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    first_ms: f64,
    cpu_s: f64,
    wall_s: f64,
    samples: u64,
    followed: usize,
    counts: ReadCounts,
}

fn run(variant: Variant, interval: Duration, length: Duration) -> Run {
    let mut sampling = variant.sampling();
    let mut result = Run::default();
    let began = thread_cpu();
    sampling.sample();
    result.first_ms = (thread_cpu() - began).as_secs_f64() * 1e3;
    let before = sampling
        .source()
        .map(ProcSource::counts)
        .unwrap_or_default();
    let started = Instant::now();
    let cpu_before = thread_cpu();
    let mut next = started + interval;
    while next <= started + length {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sampling.sample();
        result.samples += 1;
        next += interval;
    }
    result.cpu_s = (thread_cpu() - cpu_before).as_secs_f64();
    result.wall_s = started.elapsed().as_secs_f64();
    if let Some(source) = sampling.source() {
        result.followed = source.followed();
        let after = source.counts();
        result.counts = ReadCounts {
            readings: after.readings - before.readings,
            listings: after.listings - before.listings,
            unchanged: after.unchanged - before.unchanged,
            full: after.full - before.full,
        };
    }
    result
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let processes = usize::try_from(arg(1, 200)).unwrap_or(200);
    let interval = Duration::from_millis(arg(2, 100));
    let length = Duration::from_secs(arg(3, 10));
    let rounds = usize::try_from(arg(4, 3)).unwrap_or(3).max(1);
    let children: Vec<KillOnDrop> = (0..processes)
        .map(|_| {
            KillOnDrop::spawn(
                Command::new("sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null()),
                "sleep",
            )
            .expect("an idle child")
        })
        .collect();
    let host = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            })
            .count()
        })
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "bench proc-source: {processes} idle children, sampled every {} ms for {} s, {rounds} \
         interleaved rounds; {host} processes on the host; load {}",
        interval.as_millis(),
        length.as_secs(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); Variant::ALL.len()];
    for _ in 0..rounds {
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            runs[i].push(run(variant, interval, length));
        }
    }
    drop(children);
    let percent = |r: &Run| r.cpu_s / r.wall_s * 100.0;
    let baseline = median(runs[0].iter().map(percent).collect());
    println!();
    println!(
        "{:<38} {:>8} {:>8} {:>11} {:>10} {:>10} {:>9} {:>9} {:>11} {:>9}",
        "variant",
        "followed",
        "samples",
        "first ms",
        "µs/sample",
        "% core",
        "+% core",
        "lists/s",
        "unchanged/s",
        "full/s"
    );
    let (mut tree_above, mut source_above) = (f64::NAN, f64::NAN);
    for (variant, results) in Variant::ALL.into_iter().zip(&runs) {
        let pick = |f: &dyn Fn(&Run) -> f64| median(results.iter().map(f).collect());
        let core = pick(&percent);
        let above = core - baseline;
        match variant {
            Variant::Tree => tree_above = above,
            Variant::TreeSourceOnly => source_above = above,
            _ => {}
        }
        let per_s =
            |count: &dyn Fn(&ReadCounts) -> u64| pick(&|r| count(&r.counts) as f64 / r.wall_s);
        println!(
            "{:<38} {:>8} {:>8} {:>11.1} {:>10.1} {:>10.3} {:>9} {:>9.1} {:>11.1} {:>9.1}",
            variant.name(processes),
            results.last().map_or(0, |r| r.followed),
            results.last().map_or(0, |r| r.samples),
            pick(&|r| r.first_ms),
            pick(&|r| r.cpu_s * 1e6 / r.samples.max(1) as f64),
            core,
            if variant == Variant::Nothing {
                "-".to_owned()
            } else {
                format!("{above:+.3}")
            },
            per_s(&|c| c.listings),
            per_s(&|c| c.unchanged),
            per_s(&|c| c.full),
        );
    }
    println!(
        "(medians over the rounds; CPU = this thread's CPU time over the run, the first reading \
         excluded and shown as first ms; +% core: above the loop sampling nothing; lists/s: \
         listings of the scope, unchanged/s: `stat` reads whose sizes and faults had not \
         changed, full/s: `stat` + `status` reads, per second; µs/sample includes the machine's memory line and the \
         snapshot the sampler builds)"
    );
    let verdict = |above: f64| if above <= 0.2 { "met" } else { "MISSED" };
    println!();
    println!(
        "target: the /proc source reading {processes} processes at {} ms ≤ 0.2 % of a core: \
         {source_above:+.3} % {}",
        interval.as_millis(),
        verdict(source_above)
    );
    println!(
        "        with the sampler's snapshot (rates, order, memory line; the same in eBPF mode): \
         {tree_above:+.3} % {}",
        verdict(tree_above)
    );
}
