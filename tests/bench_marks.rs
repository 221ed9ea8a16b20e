//! `cargo xtask bench marks`: what exact stdout marks cost. This process writes 32-byte lines
//! to a pipe in batches that fit in it (drained between batches, outside the timed calls, so no
//! write blocks or wakes a reader) and calls getppid(2), timed per call, under four set-ups in
//! interleaved rounds, in one invocation:
//!
//! * no tracer at all;
//! * the tracer as `run`/`record` load it without `--stage-regex`;
//! * with the pipe-write programs too (as with `--stage-regex`), the pipe watched, but this
//!   process not in the traced tree: the cost to every other process's writes;
//! * the same with this process in the traced tree: every write is reported with its counters.
//!
//! Usage: `bench_marks [WRITES] [ROUNDS]` (default 200000 5). Prints one table (median ns per
//! call over the rounds, and the paired median difference against the tracer without the
//! programs) and the target line; no assertions. Needs root.
use std::{
    io::{Read as _, Write as _},
    time::Instant,
};

use memtrace::collect::tracer::{Tracer, TracerOptions};

/// Writes per batch: 32 KiB, half of a pipe's default capacity; the pipe and the ring of
/// reports (16 384 records) are drained between batches, outside the timed calls.
const BATCH: usize = 1024;
/// Bytes per write.
const LINE: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    NoTracer,
    Tracer,
    ProgramsUntraced,
    ProgramsTraced,
}

impl Setup {
    const ALL: [Self; 4] = [
        Self::NoTracer,
        Self::Tracer,
        Self::ProgramsUntraced,
        Self::ProgramsTraced,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::NoTracer => "no tracer",
            Self::Tracer => "tracer (run without --stage-regex)",
            Self::ProgramsUntraced => "+ pipe-write programs, writer not traced",
            Self::ProgramsTraced => "+ pipe-write programs, writer traced",
        }
    }
}

/// ns per write and per getppid of one set-up in one round; writes reported.
fn measure(setup: Setup, writes: usize) -> (f64, f64, usize) {
    let (mut reader, mut writer) = std::io::pipe().expect("a pipe");
    let mut drained = vec![0u8; BATCH * LINE];
    let mut tracer = match setup {
        Setup::NoTracer => None,
        _ => Some(
            Tracer::start(TracerOptions {
                pipe_writes: matches!(setup, Setup::ProgramsUntraced | Setup::ProgramsTraced),
                ..TracerOptions::default()
            })
            .expect("the tracer starts (run as root)"),
        ),
    };
    let mut pipe_writes = tracer.as_mut().and_then(Tracer::take_pipe_writes);
    if let Some(watch) = &mut pipe_writes {
        use std::os::fd::AsFd as _;
        watch.watch(0, writer.as_fd()).expect("watch the pipe");
        if setup == Setup::ProgramsTraced {
            watch.add_writer(std::process::id()).expect("traced");
        }
    }
    let line = [b'x'; LINE];
    let mut reported = Vec::new();
    let mut count = 0;
    let mut write_ns = 0u128;
    let mut done = 0;
    while done < writes {
        let n = BATCH.min(writes - done);
        let began = Instant::now();
        for _ in 0..n {
            writer.write_all(&line).expect("write");
        }
        write_ns += began.elapsed().as_nanos();
        done += n;
        reader
            .read_exact(&mut drained[..n * LINE])
            .expect("drain the pipe");
        if let Some(watch) = &mut pipe_writes {
            watch.drain(&mut reported);
            count += reported.len();
            reported.clear();
        }
    }
    let began = Instant::now();
    for _ in 0..writes {
        std::hint::black_box(rustix::process::getppid());
    }
    let getppid_ns = began.elapsed().as_nanos();
    drop(pipe_writes);
    drop(tracer);
    drop(writer);
    (
        write_ns as f64 / writes as f64,
        getppid_ns as f64 / writes as f64,
        count,
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (writes, rounds) = (arg(0, 200_000), arg(1, 5));
    // [setup][round] = (write ns, getppid ns)
    let mut results = vec![Vec::new(); Setup::ALL.len()];
    let mut reported = vec![0usize; Setup::ALL.len()];
    for round in 0..rounds {
        for (i, setup) in Setup::ALL.into_iter().enumerate() {
            let (w, g, n) = measure(setup, writes);
            results[i].push((w, g));
            reported[i] += n;
            eprintln!(
                "round {round}: {:<44} write {w:7.1} ns, getppid {g:6.1} ns",
                setup.name()
            );
        }
    }
    let base = Setup::ALL
        .iter()
        .position(|s| *s == Setup::Tracer)
        .unwrap_or(1);
    println!(
        "\n{writes} writes of 32 bytes to a pipe and {writes} getppid(2) per set-up, {rounds} \
         interleaved rounds; medians over rounds, differences paired per round against the \
         tracer without the pipe-write programs:\n"
    );
    println!(
        "{:<44} {:>10} {:>10} {:>12} {:>12} {:>10}",
        "set-up", "write ns", "+write ns", "getppid ns", "+getppid ns", "reported"
    );
    let mut traced_cost = f64::NAN;
    for (i, setup) in Setup::ALL.into_iter().enumerate() {
        let mut w: Vec<f64> = results[i].iter().map(|r| r.0).collect();
        let mut g: Vec<f64> = results[i].iter().map(|r| r.1).collect();
        let mut dw: Vec<f64> = results[i]
            .iter()
            .zip(&results[base])
            .map(|(a, b)| a.0 - b.0)
            .collect();
        let mut dg: Vec<f64> = results[i]
            .iter()
            .zip(&results[base])
            .map(|(a, b)| a.1 - b.1)
            .collect();
        let (dw, dg) = (median(&mut dw), median(&mut dg));
        if setup == Setup::ProgramsTraced {
            traced_cost = dw;
        }
        println!(
            "{:<44} {:>10.1} {:>+10.1} {:>12.1} {:>+12.1} {:>10}",
            setup.name(),
            median(&mut w),
            dw,
            median(&mut g),
            dg,
            reported[i] / rounds.max(1)
        );
    }
    println!(
        "\ntarget: ≤ 1000 ns added per write of the traced tree: {traced_cost:.0} ns ({})",
        if traced_cost <= 1000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
