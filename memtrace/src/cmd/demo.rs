//! `memtrace demo`: runs the bundled synthetic clip pipeline ([`super::demo_pipeline`], one
//! leaking stage) under `memtrace run`, then prints its report — the point of memtrace in well
//! under a minute. Needs root (eBPF), like `run`; needs nothing else (no Python).
use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;

use super::demo_pipeline::{LEAK_MIB, STAGES};
use crate::{
    analyze::report,
    record::{
        child, env,
        recorder::{self, Plan, TraceTarget},
        trace,
    },
};

/// Raw arguments of `memtrace demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Clips the synthetic pipeline processes.
    #[arg(long, default_value_t = 6)]
    pub clips: u32,
    /// Where the trace goes (default: memtrace-demo.mtrace in the temp directory).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the HTML report here.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
}

/// Runs `memtrace demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !(3..=40).contains(&args.clips) {
        anyhow::bail!("--clips {} is out of range (3 to 40)", args.clips);
    }
    let out = args
        .out
        .unwrap_or_else(|| std::env::temp_dir().join("memtrace-demo.mtrace"));
    let exe = std::env::current_exe().context("finding the memtrace binary")?;
    crate::outln!(
        "memtrace demo: a synthetic pipeline processes {} clips ({}); one stage keeps {LEAK_MIB} MiB per \
         clip, another peaks at 160 MiB and frees it. It runs under `memtrace run`, which samples \
         its process tree every 200 ms and at every stage mark.\n",
        args.clips,
        STAGES.join(" → ")
    )?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (set, _) = env::plan(&env::RunSection::default(), cpus, |k| {
        std::env::var_os(k).is_some()
    });
    let command = vec![
        exe.display().to_string(),
        "demo-pipeline".to_owned(),
        "--clips".to_owned(),
        args.clips.to_string(),
    ];
    let plan = Plan {
        out: out.clone(),
        interval: Duration::from_millis(200),
        target: TraceTarget::Spawn(command),
        regex: None,
        env: set,
        memory_lines: true,
        config: serde_json::json!({ "demo": true, "interval_ms": 200 }),
        require_ebpf: false,
        cgroup_procs: Vec::new(),
    };
    let outcome = recorder::execute(plan, Vec::new())?;
    let data = trace::read_file(&out)?;
    let analysis = report::analyze(&data);
    crate::outln!()?;
    crate::out!(
        "{}",
        report::text::render(&analysis, &out.display().to_string())
    )?;
    if let Some(html) = &args.html {
        let page = report::html::render(&analysis);
        crate::output::write_file(html, |w| w.write_all(page.as_bytes()))?;
        crate::outln!("HTML report: {}", html.display())?;
    }
    crate::outln!(
        "\nThe trace is {}. Next: `memtrace report {} --html report.html`, or run your own \
         pipeline: `memtrace run --out run.mtrace -- python3 pipeline.py`.",
        out.display(),
        out.display()
    )?;
    Ok(ExitCode::from(
        outcome.status.as_ref().map_or(1, child::exit_code),
    ))
}
