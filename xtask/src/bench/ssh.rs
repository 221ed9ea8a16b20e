//! `cargo xtask bench ssh`: does sshd stay usable under a runaway pipeline? In a Debian
//! bookworm guest (1 GiB, no swap, 2 vCPUs, emulated: see `cargo xtask vm`), a hog started as
//! its own unit grows next to an idle bystander service and an idle login shell, while the host
//! times `ssh true` every 2 s. Contenders: the kernel alone, earlyoom with its defaults, and
//! `memtrace guard` with its defaults; scenarios: a 100 MiB/s runaway, a 20 MiB/s leak, a
//! fork-heavy hog, and a negative control that must not be acted on. Each run boots a fresh
//! guest; the table pools the runs of each scenario × contender.
use std::{collections::BTreeMap, io::Write as _};

use anyhow::bail;

use crate::{
    bench::{
        ssh_events::{self, Action, Actor},
        ssh_guest::{Contender, Scenario},
        ssh_run::{self, PROBE_CAP, RunRecord},
        stats::{median, quantile},
    },
    root,
    vm::{guest::Probe, image},
};

/// Options of `bench ssh`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The guest kernel.
    #[arg(long, value_enum, default_value_t = image::Kernel::Stable)]
    pub kernel: image::Kernel,
    /// Runs per scenario and contender (each boots a fresh guest, ~2.5 min).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Scenarios to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Scenario::Runaway, Scenario::SlowLeak, Scenario::Fork, Scenario::Negative])]
    pub scenarios: Vec<Scenario>,
    /// Contenders to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Contender::Kernel, Contender::Earlyoom, Contender::Memtrace])]
    pub contenders: Vec<Contender>,
}

/// One table row: the runs of one scenario × contender.
pub(super) struct Row {
    pub scenario: Scenario,
    pub contender: Contender,
    pub runs: Vec<RunRecord>,
    pub failed: usize,
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v >= PROBE_CAP.as_secs_f64() => format!("≥{}", PROBE_CAP.as_secs()),
        Some(v) => format!("{v:.1}"),
    }
}

/// `actor:what:comm ×n` over all runs.
fn acted_on(actions: &[Action]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in actions.iter().filter(|a| a.what != "resume") {
        let actor = match a.actor {
            Actor::Kernel => "oom",
            Actor::Earlyoom => "eo",
            Actor::Memtrace => "mt",
        };
        *counts
            .entry(format!("{actor} {} {}", a.what, a.comm))
            .or_default() += 1;
    }
    if counts.is_empty() {
        return "nothing".to_owned();
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    parts.join(", ")
}

/// The line of the table for `row`, and whether it met memtrace's targets.
pub(super) fn line(row: &Row) -> (String, bool) {
    let mut idle = Vec::new();
    let mut loaded = Vec::new();
    let (mut timeouts, mut failed_probes, mut oom, mut restarts, mut drops) = (0, 0, 0, 0, 0);
    let mut all_actions = Vec::new();
    let mut first = Vec::new();
    let mut resumed = 0;
    let mut hog_hit = 0;
    let mut runs_over = 0;
    for run in &row.runs {
        idle.extend_from_slice(&run.idle);
        // A timeout is a latency of at least the cap: it counts in p50/p99/max.
        loaded.extend(run.loaded_latencies());
        for (_, probe) in &run.loaded {
            match probe {
                Probe::Ok(_) => {}
                Probe::Failed(_) => failed_probes += 1,
                Probe::TimedOut => timeouts += 1,
            }
        }
        if !run.p99_over_idle().is_some_and(|r| r <= 2.0) {
            runs_over += 1;
        }
        let actions = ssh_events::actions(&run.journal);
        oom += ssh_events::oom_kills(&actions);
        restarts += usize::from(run.sshd_restarted);
        drops += usize::from(run.shell_dropped);
        let hits: Vec<&Action> = actions.iter().filter(|a| a.what != "resume").collect();
        if let Some(a) = hits.first() {
            first.push(a.at - run.hog_start);
        }
        if hits.iter().any(|a| a.comm == "hog") {
            hog_hit += 1;
        }
        if run.resumed_after_free(&actions) {
            resumed += 1;
        }
        all_actions.extend(actions);
    }
    let idle_p50 = median(&idle);
    let p99 = quantile(&loaded, 0.99);
    let max = loaded
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let n = row.runs.len();
    let acted = acted_on(&all_actions);
    let others_hit = all_actions
        .iter()
        .any(|a| a.what != "resume" && a.comm != "hog" && a.comm != "load");
    let met = row.failed == 0
        && if row.scenario == Scenario::Negative {
            acted == "nothing"
        } else {
            timeouts == 0
                && failed_probes == 0
                && oom == 0
                && hog_hit == n
                && !others_hit
                && runs_over == 0
        };
    let first_text = if first.is_empty() {
        "-".to_owned()
    } else {
        let lo = first.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = first.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mid = median(&first).unwrap_or(lo);
        format!("{mid:.1} ({lo:.0}–{hi:.0})")
    };
    let resumed_text = if row.scenario.ballast() {
        format!("{resumed}/{n}")
    } else {
        "-".to_owned()
    };
    let text = format!(
        "{:<19} {:<14} {:>4} {:>6} {:>6} {:>6} {:>6} {:>5} {:>4} {:>5} {:>7} {:<16} {:>7}  {}",
        row.scenario.label(),
        row.contender.label(),
        if row.failed > 0 {
            format!("{n}+{}F", row.failed)
        } else {
            n.to_string()
        },
        fmt(idle_p50),
        fmt(median(&loaded)),
        fmt(p99),
        fmt(max),
        format!("{timeouts}/{failed_probes}"),
        oom,
        format!("{restarts}/{drops}"),
        resumed_text,
        first_text,
        if row.contender == Contender::Memtrace {
            if met { "met" } else { "MISSED" }
        } else {
            ""
        },
        acted,
    );
    (text, met)
}

pub(super) fn header() -> String {
    format!(
        "{:<19} {:<14} {:>4} {:>6} {:>6} {:>6} {:>6} {:>5} {:>4} {:>5} {:>7} {:<16} {:>7}  {}",
        "scenario",
        "contender",
        "runs",
        "idle",
        "p50 s",
        "p99 s",
        "max s",
        "TO/F",
        "OOM",
        "sshd/",
        "resumed",
        "1st action s",
        "targets",
        "acted on (actor action comm ×count)"
    )
}

/// Runs the benchmark and prints its table.
pub fn run(options: &Options) -> anyhow::Result<()> {
    root::require("cargo xtask bench ssh")?;
    let image = image::build(options.kernel)?;
    let mut rows = Vec::new();
    for &scenario in &options.scenarios {
        for &contender in &options.contenders {
            let mut row = Row {
                scenario,
                contender,
                runs: Vec::new(),
                failed: 0,
            };
            for i in 0..options.runs {
                eprintln!(
                    "xtask: bench ssh: {} / {} run {}",
                    scenario.label(),
                    contender.label(),
                    i + 1
                );
                match ssh_run::run(&image, contender, scenario) {
                    Ok(record) => {
                        eprintln!(
                            "xtask:   hog at end: {}; bystander {}; contender CPU {:?} s; notes: {:?}",
                            record.hog_state,
                            record.bystander,
                            record.contender_cpu_s,
                            record.notes
                        );
                        eprintln!(
                            "xtask:   ssh true (s after hog start:latency): {}; this run's p99/idle {:.2}",
                            record.probe_series(),
                            record.p99_over_idle().unwrap_or(f64::NAN)
                        );
                        for line in &record.journal {
                            eprintln!("xtask:   | {line}");
                        }
                        row.runs.push(record);
                    }
                    Err(err) => {
                        eprintln!("xtask: bench ssh: run failed: {err:#}");
                        row.failed += 1;
                    }
                }
            }
            eprintln!("{}", line(&row).0);
            rows.push(row);
        }
    }
    println!(
        "bench ssh: Debian bookworm guest, 1 GiB, no swap, 2 vCPUs, qemu TCG (emulated); `ssh true` from the host every 2 s, cap {} s; idle = before the hog; p50/p99/max = from the hog's start to its planned stop, a timeout counting as ≥ the cap",
        PROBE_CAP.as_secs()
    );
    println!("{}", header());
    let mut all_met = true;
    for row in &rows {
        let (text, met) = line(row);
        all_met &= met || row.contender != Contender::Memtrace;
        println!("{text}");
    }
    println!(
        "TO/F: probes timed out / failed; OOM: kernel OOM kills; sshd/: sshd restarted / login sessions dropped (runs); resumed: runs where memtrace resumed the hog after the test freed its ballast; 1st action: s from the hog's start, median (min–max); targets (memtrace): in every run no timeout or failure, that run's p99 ≤ 2× its idle p50, no OOM kill, only the hog acted on; negative control: nothing acted on"
    );
    std::io::stdout().flush().ok();
    if !all_met {
        bail!("memtrace missed a target or a run failed (see the table)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The table's verdict for memtrace.
    use super::*;

    fn run(idle: f64, loaded: &[f64]) -> RunRecord {
        RunRecord {
            idle: vec![idle; 7],
            loaded: loaded
                .iter()
                .enumerate()
                .map(|(i, s)| (2.0 * i as f64, Probe::Ok(*s)))
                .collect(),
            hog_start: 1_700_000_000.0,
            freed_at: Some(1_700_000_040.0),
            window_end: 1_700_000_060.0,
            contender_cpu_s: None,
            sshd_restarted: false,
            shell_dropped: false,
            bystander: "active".to_owned(),
            hog_state: "running".to_owned(),
            journal: vec![
                "1700000004.0 vm memtrace[250]: ERROR suspend [suspend] used 91 %; victim 612 (hog) 1 proc(s)".to_owned(),
            ],
            notes: Vec::new(),
        }
    }

    #[test]
    fn one_run_over_twice_its_idle_misses_even_if_the_pool_does_not() {
        let calm = [1.0; 30];
        let mut spiky = [1.0; 30];
        spiky[23] = 3.0;
        let row = |runs| Row {
            scenario: Scenario::Fork,
            contender: Contender::Memtrace,
            runs,
            failed: 0,
        };
        assert!(line(&row(vec![run(1.0, &calm), run(1.0, &calm)])).1);
        let (text, met) = line(&row(vec![
            run(1.0, &calm),
            run(1.0, &calm),
            run(1.0, &calm),
            run(1.0, &spiky),
        ]));
        assert!(!met, "{text}");
        assert!(text.contains("MISSED"), "{text}");
    }
}
