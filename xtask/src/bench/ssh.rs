//! `cargo xtask bench ssh`: does sshd stay usable under a runaway pipeline? In a Debian
//! bookworm guest (1 GiB, no swap, 2 vCPUs, emulated: see `cargo xtask vm`), a hog started as
//! its own unit grows next to an idle bystander service and an idle login shell, while the host
//! times `ssh true` every 2 s. Contenders: the kernel alone, earlyoom with its defaults, and
//! `memtrace guard` with its defaults; scenarios: a 100 MiB/s runaway, a 20 MiB/s leak, a
//! fork-heavy hog, a negative control that must not be acted on, and the runaway hog inside a
//! 640 MiB container with its own sshd, where memtrace runs with Docker's capabilities (see
//! [`super::ssh_site`]). Each run boots a fresh guest; the table pools the runs of each
//! scenario × contender and judges memtrace on every run.
use std::{collections::BTreeMap, io::Write as _};

use anyhow::bail;

use crate::{
    bench::{
        ssh_events::{self, Action, Actor},
        ssh_guest::{Contender, Scenario},
        ssh_run::{self, PROBE_CAP, RunRecord},
        ssh_site::{CONTAINER_CGROUP, CONTAINER_MIB, ContainerGuard, Site},
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
    /// How memtrace runs in the container scenario (`stand-in`: with every capability and
    /// `--cgroup`, not a Docker setup; labelled so in the table).
    #[arg(long, value_enum, default_value_t = ContainerGuard::Docker)]
    pub container_guard: ContainerGuard,
}

/// Every run's loaded p99 must be at most this many times its idle median.
const P99_OVER_IDLE: f64 = 1.5;
/// memtrace's notice must reach the ssh user's terminal within this many seconds of the action.
const NOTICE_WITHIN_S: f64 = 1.0;

/// One table row: the runs of one scenario × contender.
pub(super) struct Row {
    pub scenario: Scenario,
    pub contender: Contender,
    pub site: Site,
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
    for a in actions.iter().filter(|a| a.acts()) {
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

/// The contender's table label (the container's stand-in memtrace is marked).
fn contender_label(contender: Contender, site: Site) -> &'static str {
    match (contender, site) {
        (Contender::Memtrace, Site::Container(ContainerGuard::StandIn)) => "mt stand-in",
        _ => contender.label(),
    }
}

/// The line of the table for `row`, and whether it met memtrace's targets.
pub(super) fn line(row: &Row) -> (String, bool) {
    let mut idle = Vec::new();
    let mut loaded = Vec::new();
    let (mut timeouts, mut failed_probes, mut oom, mut restarts, mut drops) = (0, 0, 0, 0, 0);
    let mut bystanders = 0;
    let mut all_actions = Vec::new();
    let mut first = Vec::new();
    let mut resumed = 0;
    let mut hog_hit = 0;
    let mut runs_over = 0;
    // Per run with a suspension by memtrace: seconds to its notice on the login shell's
    // terminal (`None`: no notice).
    let mut notices: Vec<Option<f64>> = Vec::new();
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
        if !run.p99_over_idle().is_some_and(|r| r <= P99_OVER_IDLE) {
            runs_over += 1;
        }
        let actions = ssh_events::actions(&run.journal);
        oom += run.oom_kills(&actions);
        restarts += usize::from(run.sshd_restarted);
        drops += usize::from(run.shell_dropped);
        bystanders += usize::from(run.bystander == "active");
        let hits: Vec<&Action> = actions.iter().filter(|a| a.acts()).collect();
        if let Some(a) = hits.first() {
            first.push(a.at - run.hog_start);
        }
        if hits.iter().any(|a| a.comm == "hog") {
            hog_hit += 1;
        }
        if run.released_after_free(&actions) {
            resumed += 1;
        }
        if actions
            .iter()
            .any(|a| a.actor == Actor::Memtrace && a.what == "suspend")
        {
            notices.push(run.notice_delay(&actions));
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
        .any(|a| a.acts() && a.comm != "hog" && a.comm != "load");
    let met = row.failed == 0
        && restarts == 0
        && drops == 0
        && bystanders == n
        && if row.scenario == Scenario::Negative {
            acted == "nothing"
        } else {
            timeouts == 0
                && failed_probes == 0
                && oom == 0
                && hog_hit == n
                && !others_hit
                && runs_over == 0
                && notices
                    .iter()
                    .all(|d| d.is_some_and(|d| d <= NOTICE_WITHIN_S))
        };
    let notice_text = if notices.is_empty() {
        "-".to_owned()
    } else if notices.iter().any(Option::is_none) {
        format!(
            "none {}/{}",
            notices.iter().filter(|d| d.is_none()).count(),
            notices.len()
        )
    } else {
        // The journal stamps the decision when its log line arrives, which can be a few ms
        // after the notice went out: a delay below zero is shown as zero.
        let worst = notices.iter().flatten().copied().fold(0.0, f64::max);
        format!("≤{worst:.2}")
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
        "{:<19} {:<14} {:>4} {:>6} {:>6} {:>6} {:>6} {:>5} {:>4} {:>5} {:>4} {:>7} {:<16} {:>8} {:>7}  {}",
        row.scenario.label(),
        contender_label(row.contender, row.site),
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
        format!("{bystanders}/{n}"),
        resumed_text,
        first_text,
        notice_text,
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
        "{:<19} {:<14} {:>4} {:>6} {:>6} {:>6} {:>6} {:>5} {:>4} {:>5} {:>4} {:>7} {:<16} {:>8} {:>7}  {}",
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
        "bys",
        "resumed",
        "1st action s",
        "notice s",
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
            let site = scenario.site(options.container_guard);
            let mut row = Row {
                scenario,
                contender,
                site,
                runs: Vec::new(),
                failed: 0,
            };
            for i in 0..options.runs {
                eprintln!(
                    "xtask: bench ssh: {} / {} run {}",
                    scenario.label(),
                    contender_label(contender, site),
                    i + 1
                );
                match ssh_run::run(&image, contender, scenario, site) {
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
                        if let Some(members) = &record.members {
                            eprintln!(
                                "xtask:   in the container before the hog (checked: no CAP_SYS_ADMIN/BPF/PERFMON/SYS_RESOURCE, cgroupfs read-only): {members}"
                            );
                        }
                        if let Some(events) = &record.cgroup_events {
                            eprintln!(
                                "xtask:   container memory.events: {}",
                                events.split_whitespace().collect::<Vec<_>>().join(" ")
                            );
                        }
                        for line in &record.contender_log {
                            eprintln!("xtask:   memtrace: {line}");
                        }
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
    if options.scenarios.contains(&Scenario::Container) {
        println!(
            "container: one cgroup ({CONTAINER_CGROUP}, MemoryMax {CONTAINER_MIB} MiB, MemorySwapMax 0) holding its own sshd on port 2222 (the probes and the login shell go to it), the bystander, a 120 MiB tmpfs ballast, the 100 MiB/s hog and the contender, all without CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE; memtrace: {}",
            match options.container_guard {
                ContainerGuard::Docker =>
                    "`memtrace guard` with the same capabilities dropped and no --cgroup",
                ContainerGuard::StandIn =>
                    "STAND-IN (mt stand-in): `memtrace guard --cgroup <the container>` with every capability (eBPF), not a Docker setup",
            }
        );
    }
    println!("{}", header());
    let mut all_met = true;
    for row in &rows {
        let (text, met) = line(row);
        all_met &= met || row.contender != Contender::Memtrace;
        println!("{text}");
    }
    println!(
        "TO/F: probes timed out / failed; OOM: kernel OOM kills (kernel log; in the container also its memory.events oom_kill, whichever is higher); sshd/: sshd restarted / login sessions dropped (runs); bys: runs that ended with the bystander running; resumed: runs where memtrace, after the test freed its ballast, resumed the hog or logged why it keeps it held (wait/keep: it would not hold); 1st action: s from the hog's start, median (min–max); notice: s from memtrace's suspension (its journal line's time stamp) to its notice on the idle ssh login shell's terminal (the guest's clock read through that shell), the worst run (none: runs with no notice); targets (memtrace): in every run no timeout or failure, that run's p99 ≤ 1.5× its idle p50, no OOM kill, only the hog acted on, the notice on the ssh terminal within 1 s, sshd, the login shell and the bystander intact; negative control: nothing acted on, the same intact"
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
            notice_at: Some(1_700_000_004.4),
            bystander: "active".to_owned(),
            hog_state: "running".to_owned(),
            journal: vec![
                "1700000004.0 vm memtrace[250]: ERROR suspend [suspend] used 91 %; victim 612 (hog) 1 proc(s)".to_owned(),
            ],
            cgroup_events: None,
            contender_log: Vec::new(),
            members: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn one_run_over_one_and_a_half_times_its_idle_misses_even_if_the_pool_does_not() {
        let calm = [1.0; 30];
        let mut spiky = [1.0; 30];
        spiky[23] = 3.0;
        let row = |runs| Row {
            scenario: Scenario::Fork,
            contender: Contender::Memtrace,
            site: Site::Machine,
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

    #[test]
    fn a_notice_late_or_missing_on_the_ssh_terminal_misses() {
        let row = |runs| Row {
            scenario: Scenario::Runaway,
            contender: Contender::Memtrace,
            site: Site::Machine,
            runs,
            failed: 0,
        };
        let (text, met) = line(&row(vec![run(1.0, &[1.0; 30])]));
        assert!(met && text.contains("≤0.40"), "{text}");
        let mut late = run(1.0, &[1.0; 30]);
        late.notice_at = Some(1_700_000_005.5);
        let (text, met) = line(&row(vec![run(1.0, &[1.0; 30]), late]));
        assert!(!met && text.contains("≤1.50"), "{text}");
        let mut silent = run(1.0, &[1.0; 30]);
        silent.notice_at = None;
        let (text, met) = line(&row(vec![run(1.0, &[1.0; 30]), silent]));
        assert!(!met && text.contains("none 1/2"), "{text}");
    }

    fn container_row(runs: Vec<RunRecord>, guard: ContainerGuard) -> Row {
        Row {
            scenario: Scenario::Container,
            contender: Contender::Memtrace,
            site: Scenario::Container.site(guard),
            runs,
            failed: 0,
        }
    }

    #[test]
    fn a_clean_container_run_meets_the_targets() {
        let mut clean = run(1.0, &[1.0; 30]);
        clean.cgroup_events = Some("low 0\nhigh 0\nmax 40\noom 0\noom_kill 0\n".to_owned());
        let (text, met) = line(&container_row(vec![clean], ContainerGuard::Docker));
        assert!(met, "{text}");
        assert!(
            text.starts_with("container 640 MiB   memtrace guard"),
            "{text}"
        );
    }

    #[test]
    fn an_oom_kill_only_the_container_cgroup_counted_misses() {
        // The kernel log lost it (nothing in the journal), memory.events did not.
        let mut oom = run(1.0, &[1.0; 30]);
        oom.cgroup_events = Some("low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\n".to_owned());
        let (text, met) = line(&container_row(vec![oom], ContainerGuard::Docker));
        assert!(!met, "{text}");
        assert!(text.contains("MISSED"), "{text}");
        assert_eq!(
            text.split_whitespace().nth(11),
            Some("1"),
            "the OOM column: {text}"
        );
    }

    #[test]
    fn a_stopped_bystander_a_dropped_shell_or_a_new_sshd_misses() {
        let breakers: [fn(&mut RunRecord); 3] = [
            |r| r.bystander = "stopped".to_owned(),
            |r| r.shell_dropped = true,
            |r| r.sshd_restarted = true,
        ];
        for breaker in breakers {
            let mut broken = run(1.0, &[1.0; 30]);
            breaker(&mut broken);
            let (text, met) = line(&container_row(
                vec![run(1.0, &[1.0; 30]), broken],
                ContainerGuard::Docker,
            ));
            assert!(!met, "{text}");
        }
    }

    #[test]
    fn the_stand_in_is_labelled() {
        let (text, _) = line(&container_row(
            vec![run(1.0, &[1.0; 30])],
            ContainerGuard::StandIn,
        ));
        assert!(
            text.starts_with("container 640 MiB   mt stand-in "),
            "{text}"
        );
    }
}
