//! The synthetic clip pipeline `memtrace demo` runs (hidden subcommand `demo-pipeline`): per clip
//! decode → matte → render → composite → encode, where `composite` keeps 24 MiB per clip (the
//! leak), `matte` peaks at 160 MiB and frees it (not a leak), and `render` starts a worker
//! process (a sub-stage). It marks its stages through the socket protocol, with nothing but the
//! standard library, exactly as a pipeline in any language would.
use std::{os::unix::net::UnixDatagram, process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::record::marks::SOCKET_ENV;

/// The stages, in order.
pub const STAGES: [&str; 5] = ["decode", "matte", "render", "composite", "encode"];
/// What `composite` keeps per clip.
pub const LEAK_MIB: usize = 24;

/// Raw arguments of `memtrace demo-pipeline`.
#[derive(Debug, clap::Args)]
pub struct DemoPipelineArgs {
    /// Clips to process.
    #[arg(long, default_value_t = 6)]
    pub clips: u32,
    /// Act as the render worker: hold this many MiB briefly, then exit.
    #[arg(long)]
    pub worker_mib: Option<usize>,
}

/// Allocates and touches `mib` MiB (every page written, so it is resident).
fn touched(mib: usize) -> Vec<u8> {
    std::hint::black_box(vec![1u8; mib << 20])
}

fn hold(mib: usize, time: Duration) {
    let buffer = touched(mib);
    std::thread::sleep(time);
    drop(std::hint::black_box(buffer));
}

/// Runs the pipeline.
pub fn run(args: DemoPipelineArgs) -> anyhow::Result<ExitCode> {
    if let Some(mib) = args.worker_mib {
        // PR_SET_NAME names the calling thread, here the main one, whose name is the process's
        // comm. A failure only costs the name.
        let _ = rustix::thread::set_name(c"render-worker");
        hold(mib, Duration::from_millis(300));
        return Ok(ExitCode::SUCCESS);
    }
    let socket = UnixDatagram::unbound().context("creating a socket")?;
    let target = std::env::var_os(SOCKET_ENV);
    let mark = |line: &str| {
        if let Some(path) = &target {
            let _ = socket.send_to(line.as_bytes(), path);
        }
    };
    let exe = std::env::current_exe().context("finding the memtrace binary")?;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let pause = Duration::from_millis(250);
    for clip in 1..=args.clips {
        for stage in STAGES {
            crate::outln!("Processing clip {clip}/{}: {stage}", args.clips)?;
            mark(&format!("stage {stage} clip={clip}"));
            std::thread::sleep(Duration::from_millis(30));
            match stage {
                "decode" => hold(40, pause),
                "matte" => hold(160, pause),
                "render" => {
                    let status = std::process::Command::new(&exe)
                        .args(["demo-pipeline", "--worker-mib", "64"])
                        .status()
                        .context("starting the render worker")?;
                    if !status.success() {
                        anyhow::bail!("render worker failed: {status}");
                    }
                }
                "composite" => {
                    kept.push(touched(LEAK_MIB));
                    std::thread::sleep(pause);
                }
                _ => hold(48, pause),
            }
        }
    }
    mark("end");
    // Marks are asynchronous: give memtrace a moment to sample before `kept` is freed at exit.
    std::thread::sleep(Duration::from_millis(150));
    crate::outln!(
        "Done: {} clips, {} MiB still held by composite",
        args.clips,
        kept.iter().map(Vec::len).sum::<usize>() >> 20
    )?;
    Ok(ExitCode::SUCCESS)
}
