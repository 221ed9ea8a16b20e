//! The workloads `bench overhead` times, run as `xtask bench workload KIND --size N` in a child
//! process (hidden subcommand), which prints one report line:
//! `faults=<minor faults> work=<units> ns=<elapsed> cpu_ns=<CPU time> checksum=<x>`.
//!
//! - `storm`: maps 64 MiB of anonymous memory (huge pages refused, so every 4 KiB page is its
//!   own fault), writes one byte per page, unmaps; `N` times. Nearly all of its time is page
//!   faults, the worst case for a per-fault hook.
//! - `pipeline`: a clip-processing pipeline, `N` clips of 12 1080p frames: decode (allocate a
//!   ~24 MiB buffer and fill it from a PRNG), model (ten 3×3 box blurs through two more such
//!   buffers), composite (blend with an overlay), encode (run-length and rolling checksum),
//!   free. Compute dominated, with the allocations (and so the faults: glibc serves buffers this
//!   large with fresh mappings) of a real pipeline.
//!
//! The timed span is measured inside the child around the work only (not exec or the
//! allocator's start-up): wall time, and the process's CPU time (user + system, which includes
//! the kernel programs that run in its context on each fault, but not the time it waited for a
//! CPU: the better measure on a busy or virtualised machine). The faults are `getrusage` minor
//! faults over the same span.
//! `bench overhead` runs these from a release build of xtask, so the compute runs at the speed
//! of optimised code, as in real pipelines (a debug build would be ~20× slower and make the
//! per-fault costs look smaller than they are).
use std::{hint::black_box, time::Instant};

use anyhow::{Context as _, bail};
use rustix::{
    param::page_size,
    time::{ClockId, clock_gettime},
};

/// Bytes mapped per storm iteration.
const STORM_BYTES: usize = 64 << 20;
/// Frame geometry of the pipeline (one 8-bit plane).
const WIDTH: usize = 1920;
const HEIGHT: usize = 1080;
/// Frames per clip: 12 × 1920 × 1080 ≈ 23.7 MiB per buffer.
const FRAMES: usize = 12;
/// Blur passes of the "model".
const MODEL_PASSES: usize = 10;

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Kind {
    /// mmap, touch every page, munmap, repeated.
    Storm,
    /// Clip pipeline: decode, model, composite, encode.
    Pipeline,
}

impl Kind {
    /// Name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Storm => "storm",
            Self::Pipeline => "pipeline",
        }
    }
}

/// Arguments of the hidden `bench workload` subcommand.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workload.
    #[arg(value_enum)]
    pub kind: Kind,
    /// Storm iterations or pipeline clips.
    #[arg(long, default_value_t = 1)]
    pub size: u32,
}

/// What one workload run did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Minor page faults during the work.
    pub faults: u64,
    /// Pages touched (storm) or clips processed (pipeline).
    pub work: u64,
    /// Wall time of the work.
    pub ns: u64,
    /// CPU time (user + system) of the work.
    pub cpu_ns: u64,
    /// Result of the work, so it cannot be optimised away.
    pub checksum: u64,
}

impl Report {
    /// The report line.
    pub fn line(&self) -> String {
        format!(
            "faults={} work={} ns={} cpu_ns={} checksum={}",
            self.faults, self.work, self.ns, self.cpu_ns, self.checksum
        )
    }

    /// Parses a report line.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = std::collections::HashMap::new();
        for pair in line.split_ascii_whitespace() {
            let (key, value) = pair.split_once('=')?;
            fields.insert(key, value.parse::<u64>().ok()?);
        }
        Some(Self {
            faults: *fields.get("faults")?,
            work: *fields.get("work")?,
            ns: *fields.get("ns")?,
            cpu_ns: *fields.get("cpu_ns")?,
            checksum: *fields.get("checksum")?,
        })
    }

    /// Seconds of work (wall time).
    pub fn secs(&self) -> f64 {
        self.ns as f64 / 1e9
    }

    /// CPU seconds of work.
    pub fn cpu_secs(&self) -> f64 {
        self.cpu_ns as f64 / 1e9
    }
}

/// Runs the workload and prints its report line.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let faults_before = minor_faults()?;
    let cpu_before = cpu_ns();
    let start = Instant::now();
    let (work, checksum) = match args.kind {
        Kind::Storm => storm(args.size)?,
        Kind::Pipeline => pipeline(args.size),
    };
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let cpu_ns = cpu_ns().saturating_sub(cpu_before);
    let faults = minor_faults()?.saturating_sub(faults_before);
    let report = Report {
        faults,
        work,
        ns,
        cpu_ns,
        checksum,
    };
    println!("{}", report.line());
    Ok(())
}

/// Minor faults of this process so far.
fn minor_faults() -> anyhow::Result<u64> {
    // rustix has no getrusage: the one libc call left here besides the storm's mappings.
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    Ok(u64::try_from(usage.ru_minflt).unwrap_or(0))
}

/// CPU time of this process so far (all threads, user + system), in nanoseconds.
fn cpu_ns() -> u64 {
    let ts = clock_gettime(ClockId::ProcessCPUTime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

/// The storm: returns (pages touched, checksum).
fn storm(iterations: u32) -> anyhow::Result<(u64, u64)> {
    let page = Some(page_size())
        .filter(|&p| p > 0)
        .context("the page size (AT_PAGESZ) is unknown")?;
    let mut pages = 0u64;
    let mut checksum = 0u64;
    for i in 0..iterations {
        // SAFETY: a fresh private anonymous mapping (no fd, no fixed address) has no
        // preconditions; the result is checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STORM_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of the storm buffer");
        }
        // One fault per 4 KiB page, not one per 2 MiB: refuse transparent huge pages. A
        // failure (a kernel without THP) changes nothing.
        // SAFETY: the range is exactly the mapping just created.
        let _ = unsafe { libc::madvise(ptr, STORM_BYTES, libc::MADV_NOHUGEPAGE) };
        let base = ptr.cast::<u8>();
        let byte = (i as u8) | 1;
        for offset in (0..STORM_BYTES).step_by(page) {
            // SAFETY: offset < STORM_BYTES, so the write is inside the fresh writable mapping,
            // which nothing else references.
            unsafe { base.add(offset).write_volatile(byte) };
            pages += 1;
        }
        // SAFETY: reads the last page written, inside the mapping.
        checksum = checksum.wrapping_add(u64::from(unsafe {
            base.add(STORM_BYTES - page).read_volatile()
        }));
        // SAFETY: unmaps exactly the mapping created above; no reference into it outlives this.
        if unsafe { libc::munmap(ptr, STORM_BYTES) } != 0 {
            return Err(std::io::Error::last_os_error()).context("munmap of the storm buffer");
        }
    }
    if pages == 0 && iterations > 0 {
        bail!("the storm touched no page");
    }
    Ok((pages, checksum))
}

/// The clip pipeline: returns (clips, checksum).
fn pipeline(clips: u32) -> (u64, u64) {
    let mut checksum = 0u64;
    for clip in 0..clips {
        let source = decode(u64::from(clip));
        let mut blurred = model(&source);
        composite(&mut blurred, &source, clip);
        checksum ^= encode(&blurred).rotate_left(clip % 64);
        drop(black_box(blurred));
        drop(black_box(source));
    }
    (u64::from(clips), checksum)
}

/// "Decodes" a clip: a fresh buffer filled with xorshift noise, smoothed a little per row so
/// the run-length encoder has runs to find.
fn decode(seed: u64) -> Vec<u8> {
    let mut frames = vec![0u8; FRAMES * WIDTH * HEIGHT];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in frames.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Keep the high bits only: quantised pixels, like decoded video.
        chunk.copy_from_slice(&(state & 0xF0F0_F0F0_F0F0_F0F0).to_le_bytes());
    }
    black_box(frames)
}

/// "Runs the model": [`MODEL_PASSES`] 3×3 box blurs of every frame, into a new buffer (with a
/// scratch buffer for the intermediate passes, like a model's activations).
fn model(source: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; source.len()];
    blur(source, &mut out);
    let mut scratch = vec![0u8; source.len()];
    for _ in 1..MODEL_PASSES {
        blur(&out, &mut scratch);
        std::mem::swap(&mut out, &mut scratch);
    }
    drop(black_box(scratch));
    black_box(out)
}

/// A 3×3 box blur of every frame of `source` into `out` (edges copied).
fn blur(source: &[u8], out: &mut [u8]) {
    let mut column = vec![0u16; WIDTH];
    for (src, dst) in source
        .chunks_exact(WIDTH * HEIGHT)
        .zip(out.chunks_exact_mut(WIDTH * HEIGHT))
    {
        dst[..WIDTH].copy_from_slice(&src[..WIDTH]);
        dst[(HEIGHT - 1) * WIDTH..].copy_from_slice(&src[(HEIGHT - 1) * WIDTH..]);
        // Vertical sums of three rows, then horizontal sums of three of those.
        for y in 1..HEIGHT - 1 {
            let (above, row, below) = (
                &src[(y - 1) * WIDTH..y * WIDTH],
                &src[y * WIDTH..(y + 1) * WIDTH],
                &src[(y + 1) * WIDTH..(y + 2) * WIDTH],
            );
            for (((c, &a), &r), &b) in column.iter_mut().zip(above).zip(row).zip(below) {
                *c = u16::from(a) + u16::from(r) + u16::from(b);
            }
            let out_row = &mut dst[y * WIDTH..(y + 1) * WIDTH];
            out_row[0] = row[0];
            out_row[WIDTH - 1] = row[WIDTH - 1];
            for (o, w) in out_row[1..WIDTH - 1].iter_mut().zip(column.windows(3)) {
                let sum = u32::from(w[0]) + u32::from(w[1]) + u32::from(w[2]);
                *o = div9(sum) as u8;
            }
        }
    }
}

/// `x / 9` as a multiply and shift, exact for every sum of nine bytes.
#[inline(always)]
fn div9(x: u32) -> u32 {
    (x * 7282) >> 16
}

/// Blends a moving gradient overlay (a "caption bar") and the source into `frames`.
fn composite(frames: &mut [u8], source: &[u8], clip: u32) {
    for (i, (out, &src)) in frames.iter_mut().zip(source).enumerate() {
        let overlay = ((i % WIDTH) as u32 + clip) as u8;
        *out = ((u32::from(*out) * 2 + u32::from(src) + u32::from(overlay)) >> 2) as u8;
    }
}

/// "Encodes": run lengths folded into a rolling checksum.
fn encode(frames: &[u8]) -> u64 {
    let mut hash = 0xCBF2_9CE4_8422_2325u64;
    let mut run = 0u64;
    let mut last = 0u8;
    for &byte in frames {
        if byte == last {
            run += 1;
        } else {
            hash = (hash ^ (run << 8 | u64::from(last))).wrapping_mul(0x0100_0000_01B3);
            last = byte;
            run = 1;
        }
    }
    hash ^ run
}

#[cfg(test)]
mod tests {
    //! Report lines and the workloads' outcomes at a tiny size.
    use super::*;

    #[test]
    fn report_round_trips() {
        let report = Report {
            faults: 16_400,
            work: 16_384,
            ns: 1_500_000_000,
            cpu_ns: 1_250_000_000,
            checksum: 7,
        };
        assert_eq!(Report::parse(&report.line()), Some(report));
        assert!((report.secs() - 1.5).abs() < 1e-12);
        assert!((report.cpu_secs() - 1.25).abs() < 1e-12);
        assert_eq!(Report::parse("faults=1 work=2 ns=3 checksum=4"), None);
        assert_eq!(
            Report::parse("faults=x work=2 ns=3 cpu_ns=3 checksum=4"),
            None
        );
    }

    #[test]
    fn storm_faults_every_page() {
        let before = minor_faults().expect("getrusage");
        let cpu_before = cpu_ns();
        let (pages, checksum) = storm(1).expect("storm");
        let faults = minor_faults().expect("getrusage") - before;
        assert!(cpu_ns() > cpu_before);
        assert_eq!(pages, (STORM_BYTES / 4096) as u64);
        assert_eq!(checksum, 1);
        assert!(faults >= pages, "{faults} faults for {pages} pages");
    }

    #[test]
    fn blur_keeps_flat_frames_flat() {
        let flat = vec![90u8; WIDTH * HEIGHT];
        let blurred = model(&flat);
        assert!(blurred.iter().all(|&p| p == 90));
        assert!((0..=9 * 255).all(|x| div9(x) == x / 9));
        // A flat buffer is one run (after the initial empty run of zeros).
        assert_eq!(
            encode(&[90; 10]),
            0xCBF2_9CE4_8422_2325u64.wrapping_mul(0x0100_0000_01B3) ^ 10
        );
    }
}
