//! The tables `cargo xtask bench overhead` prints (wall and CPU time overhead, kernel program
//! cost, the own cost of `memtrace top` and the guard) and the project's targets judged
//! against them: the default `top`'s and the guard's; the `--per-event` modes of `top` are
//! opt-in with a known per-fault cost, their overhead shown with the verdict "opt-in".
use memtrace_host::units::to_mib;

use super::{
    overhead::Options,
    overhead_measure::{KINDS, ProgramCosts, Samples, TOP_WARMUP, TopCost},
    overhead_tracers::{TopMode, VARIANTS, Variant},
    stats,
    workload::{Kind, Report},
};

/// Width of the variant column: the longest label ("top --per-event, fault hook").
const VARIANT_WIDTH: usize = 27;
/// Width of the targets table's first column.
const TARGET_WIDTH: usize = 52;

/// What is compared between runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Wall time of the workload.
    Wall,
    /// CPU time (user + system) of the workload process: includes the kernel programs that
    /// run in its context, not the time it waited for a CPU.
    Cpu,
}

impl Metric {
    fn of(self, report: &Report) -> f64 {
        match self {
            Self::Wall => report.secs(),
            Self::Cpu => report.cpu_secs(),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Wall => "wall time",
            Self::Cpu => "CPU time (user + system) of the workload process",
        }
    }
}

/// Seconds of each report.
fn secs(reports: &[Report], metric: Metric) -> Vec<f64> {
    reports.iter().map(|r| metric.of(r)).collect()
}

/// Median faults per run.
fn faults(reports: &[Report]) -> u64 {
    let faults: Vec<f64> = reports.iter().map(|r| r.faults as f64).collect();
    stats::median(&faults).map_or(0, |f| f.round() as u64)
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn fmt_signed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:+.decimals$}"))
}

/// Paired overhead of `variant` on `kind`: (added ns per fault, percent).
fn overhead(
    samples: &Samples,
    kind: Kind,
    variant: Variant,
    metric: Metric,
) -> (Option<f64>, Option<f64>) {
    let (Some(base), Some(runs)) = (
        samples.get(&(kind, Variant::None)),
        samples.get(&(kind, variant)),
    ) else {
        return (None, None);
    };
    let (base_s, runs_s) = (secs(base, metric), secs(runs, metric));
    let base_faults = faults(base);
    (
        stats::paired_median(&base_s, &runs_s, |b, v| {
            stats::added_ns_per_event(b, v, base_faults)
        }),
        stats::paired_median(&base_s, &runs_s, stats::overhead_percent),
    )
}

/// The baseline's own spread (IQR in % of its median), to tell an overhead from noise.
fn noise(samples: &Samples, kind: Kind, metric: Metric) -> Option<f64> {
    let base = secs(samples.get(&(kind, Variant::None))?, metric);
    Some(stats::iqr(&base)? / stats::median(&base)? * 100.0)
}

pub fn overhead_table(samples: &Samples, metric: Metric) -> String {
    let mut out = format!("{}:\n", metric.title());
    out.push_str(&format!(
        "{:<9} {:<VARIANT_WIDTH$} {:>4} {:>9} {:>8} {:>11} {:>15} {:>11}\n",
        "workload",
        "variant",
        "runs",
        "median s",
        "±IQR s",
        "faults/run",
        "added ns/fault",
        "overhead %"
    ));
    for kind in KINDS {
        for variant in VARIANTS {
            let Some(reports) = samples.get(&(kind, variant)) else {
                continue;
            };
            let s = secs(reports, metric);
            let (added, percent) = if variant == Variant::None {
                (None, None)
            } else {
                overhead(samples, kind, variant, metric)
            };
            out.push_str(&format!(
                "{:<9} {:<VARIANT_WIDTH$} {:>4} {:>9} {:>8} {:>11} {:>15} {:>11}\n",
                kind.name(),
                variant.label(),
                reports.len(),
                fmt(stats::median(&s), 3),
                fmt(stats::iqr(&s), 3),
                faults(reports),
                fmt_signed(added, 1),
                fmt_signed(percent, 2),
            ));
        }
    }
    out
}

/// The floor of the run-time statistics: ns per event of the empty probe.
fn floor_ns(costs: &[ProgramCosts]) -> Option<f64> {
    let floor = costs.iter().find(|c| c.variant == Variant::BpftraceEmpty)?;
    let (_, time, count) = floor.programs.first()?;
    stats::ns_per_event(*time, *count)
}

pub fn program_table(costs: &[ProgramCosts]) -> String {
    let floor = floor_ns(costs);
    let mut out = format!(
        "{:<VARIANT_WIDTH$} {:<9} {:<16} {:>9} {:>9} {:>11} {:>12}\n",
        "variant", "workload", "program", "events", "ns/event", "above floor", "ns/wl fault"
    );
    for cost in costs {
        let mut total_ns = 0;
        for (name, time, count) in &cost.programs {
            total_ns += time;
            if *count == 0 {
                continue;
            }
            let per_event = stats::ns_per_event(*time, *count);
            let above = match (per_event, floor) {
                (Some(ns), Some(floor)) if cost.variant != Variant::BpftraceEmpty => {
                    Some(ns - floor)
                }
                _ => None,
            };
            out.push_str(&format!(
                "{:<VARIANT_WIDTH$} {:<9} {:<16} {:>9} {:>9} {:>11} {:>12}\n",
                cost.variant.label(),
                cost.kind.name(),
                name,
                count,
                fmt(per_event, 1),
                fmt(above, 1),
                "",
            ));
        }
        if cost.variant != Variant::BpftraceEmpty {
            out.push_str(&format!(
                "{:<VARIANT_WIDTH$} {:<9} {:<16} {:>9} {:>9} {:>11} {:>12}\n",
                cost.variant.label(),
                cost.kind.name(),
                "(all programs)",
                cost.programs.iter().map(|p| p.2).sum::<u64>(),
                "",
                "",
                fmt(stats::ns_per_event(total_ns, cost.report.faults), 1),
            ));
        }
    }
    out.push_str(
        "(kernel.bpf_stats_enabled: run_time_ns / run_cnt over one run of the workload, every \
         process's events included. Each measured run includes the statistics' own clock reads: \
         the empty probe's ns/event is that floor, \"above floor\" subtracts it. ns/wl fault: all \
         of the tracer's program time per minor fault of the workload)\n",
    );
    out
}

pub fn top_table(top: &[TopCost], options: &Options) -> String {
    let mut out = format!(
        "{:<34} {:>9} {:>10} {:>11} {:>8} {:>9} {:>9} {:>9}\n",
        "memtrace top --json --interval 1 / guard",
        "processes",
        "CPU % core",
        "start-up s",
        "RSS MiB",
        "anon MiB",
        "file MiB",
        "peak MiB"
    );
    for cost in top {
        let m = &cost.memory;
        out.push_str(&format!(
            "{:<34} {:>9} {:>10.2} {:>11.2} {:>8.1} {:>9.1} {:>9.1} {:>9.1}\n",
            match cost.variant.top_mode() {
                Some(mode) => format!("  {}", mode.flags()),
                None => "  guard --machine --dry-run, idle".to_owned(),
            },
            cost.processes,
            cost.cpu_percent,
            cost.startup_cpu_s,
            to_mib(m.rss()),
            to_mib(m.anon),
            to_mib(m.file),
            to_mib(m.hwm),
        ));
    }
    out.push_str(&format!(
        "(CPU: utime+stime over {} s (the guard: {} s) after {} s of start-up, whose CPU time is \
         start-up s; {} idle processes of ours among the processes; RSS = VmRSS (anon = RssAnon, \
         file = RssFile), peak = VmHWM, at the end)\n",
        options.top_secs,
        options.guard_secs,
        TOP_WARMUP.as_secs(),
        options.top_procs
    ));
    out
}

/// What a target's row says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Met,
    Missed,
    /// Nothing measured.
    Unknown,
    /// An opt-in mode with a known cost: measured, not held to the target.
    OptIn,
}

impl Verdict {
    /// Met or missed, as `met` says; unknown without a measurement.
    fn of(met: Option<bool>) -> Self {
        match met {
            Some(true) => Self::Met,
            Some(false) => Self::Missed,
            None => Self::Unknown,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "MISSED",
            Self::Unknown => "n/a",
            Self::OptIn => "opt-in",
        }
    }
}

/// The project's targets against what was measured.
pub fn targets(samples: &Samples, costs: &[ProgramCosts], top: &[TopCost]) -> String {
    let mut out = format!(
        "{:<TARGET_WIDTH$} {:>9} {:>10}  {:<7} note\n",
        "target", "limit", "measured", "verdict"
    );
    let mut line = |what: String, limit: &str, measured: String, verdict: Verdict, note: String| {
        out.push_str(&format!(
            "{what:<TARGET_WIDTH$} {limit:>9} {measured:>10}  {:<7} {note}\n",
            verdict.text()
        ));
    };
    for (kind, limit, text) in [
        (Kind::Storm, 2.0, "≤ 2 %"),
        (Kind::Pipeline, 0.1, "< 0.1 %"),
    ] {
        let spread = noise(samples, kind, Metric::Cpu);
        let resolution = if spread.is_some_and(|n| n > limit) {
            " (wider than the target)"
        } else {
            ""
        };
        for variant in [
            Variant::TopDefault,
            Variant::TopPerEvent,
            Variant::TopPerEventHook,
        ] {
            let (_, percent) = overhead(samples, kind, variant, Metric::Cpu);
            let (_, wall) = overhead(samples, kind, variant, Metric::Wall);
            // The targets are the default top's; the --per-event modes are opt-in.
            let held = !variant.top_mode().is_some_and(TopMode::opt_in);
            let verdict = if held {
                Verdict::of(percent.map(|p| {
                    if kind == Kind::Storm {
                        p <= limit
                    } else {
                        p < limit
                    }
                }))
            } else {
                Verdict::OptIn
            };
            line(
                format!("{} overhead (CPU), {}", kind.name(), variant.label()),
                if held { text } else { "-" },
                fmt_signed(percent, 2) + " %",
                verdict,
                format!(
                    "baseline CPU IQR {} %{}; wall time {} % (IQR {} %)",
                    fmt(spread, 2),
                    if held { resolution } else { "" },
                    fmt_signed(wall, 2),
                    fmt(noise(samples, kind, Metric::Wall), 2)
                ),
            );
        }
    }
    let spread = noise(samples, Kind::Storm, Metric::Cpu);
    let (_, guard_storm) = overhead(samples, Kind::Storm, Variant::Guard, Metric::Cpu);
    let (_, guard_wall) = overhead(samples, Kind::Storm, Variant::Guard, Metric::Wall);
    line(
        "storm overhead (CPU), idle guard".to_owned(),
        "in noise",
        fmt_signed(guard_storm, 2) + " %",
        Verdict::of(guard_storm.zip(spread).map(|(p, n)| p.abs() <= n)),
        format!(
            "baseline CPU IQR {} %; wall time {} % (IQR {} %)",
            fmt(spread, 2),
            fmt_signed(guard_wall, 2),
            fmt(noise(samples, Kind::Storm, Metric::Wall), 2)
        ),
    );
    for cost in costs.iter().filter(|c| {
        matches!(c.variant, Variant::Guard | Variant::TopDefault) && c.kind == Kind::Storm
    }) {
        let runs: u64 = cost.programs.iter().map(|p| p.2).sum();
        let per_100 =
            (cost.report.faults > 0).then(|| runs as f64 * 100.0 / cost.report.faults as f64);
        let who = if cost.variant == Variant::Guard {
            "guard"
        } else {
            cost.variant.label()
        };
        line(
            format!("{who}: runs per 100 faults (storm)"),
            "< 1",
            fmt(per_100, 3),
            Verdict::of(per_100.map(|r| r < 1.0)),
            format!(
                "{runs} runs of {} programs, {} faults of the storm",
                cost.programs.len(),
                cost.report.faults
            ),
        );
    }
    let floor = floor_ns(costs);
    for cost in costs
        .iter()
        .filter(|c| c.variant == Variant::TopPerEventHook && c.kind == Kind::Storm)
    {
        // The per-fault hooks; the rest fire per process exit or reclaim, not per fault.
        for (name, time, count) in cost
            .programs
            .iter()
            .filter(|p| p.0 == "rss_stat" || p.0 == "page_fault_user")
        {
            let per_event = stats::ns_per_event(*time, *count);
            line(
                format!("kernel run time per event, {name}"),
                "≤ 40 ns",
                fmt(per_event, 1) + " ns",
                Verdict::of(per_event.map(|ns| ns <= 40.0)),
                format!(
                    "{} ns above the {} ns floor of the statistics",
                    fmt(per_event.zip(floor).map(|(ns, f)| ns - f), 1),
                    fmt(floor, 1)
                ),
            );
        }
    }
    for cost in top.iter().filter(|c| c.variant == Variant::Guard) {
        line(
            "guard: idle CPU".to_owned(),
            "≤ 0.05 %",
            format!("{:.3} %", cost.cpu_percent),
            Verdict::of(Some(cost.cpu_percent <= 0.05)),
            format!("{} processes", cost.processes),
        );
        let peak = to_mib(cost.memory.hwm);
        line(
            "guard: peak RSS (VmHWM), eBPF load included".to_owned(),
            "≤ 16 MiB",
            format!("{peak:.1} MiB"),
            Verdict::of(Some(peak <= 16.0)),
            String::new(),
        );
        let rss = to_mib(cost.memory.rss());
        line(
            "guard: steady RSS (VmRSS)".to_owned(),
            "≤ 8 MiB",
            format!("{rss:.1} MiB"),
            Verdict::of(Some(rss <= 8.0)),
            format!("{:.1} MiB of it anonymous", to_mib(cost.memory.anon)),
        );
    }
    for cost in top.iter().filter(|c| c.variant.top_mode().is_some()) {
        let top = cost.variant.label();
        line(
            format!("{top}: CPU, 1 s interval"),
            "< 1 %",
            format!("{:.2} %", cost.cpu_percent),
            Verdict::of(Some(cost.cpu_percent < 1.0)),
            format!("{} processes", cost.processes),
        );
        let peak = to_mib(cost.memory.hwm);
        line(
            format!("{top}: RSS (peak, VmHWM)"),
            "< 20 MiB",
            format!("{peak:.1} MiB"),
            Verdict::of(Some(peak < 20.0)),
            format!(
                "VmRSS {:.1} MiB at the end, {:.1} MiB of it anonymous",
                to_mib(cost.memory.rss()),
                to_mib(cost.memory.anon)
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    //! The targets table from made-up measurements: which rows get a verdict, and the columns'
    //! alignment.
    use memtrace_host::procfs::PidMemory;

    use super::*;

    /// A report of `ms` milliseconds of wall and CPU time with `faults` faults.
    fn report(ms: u64, faults: u64) -> Report {
        Report {
            faults,
            work: 1,
            ns: ms * 1_000_000,
            cpu_ns: ms * 1_000_000,
            checksum: 0,
        }
    }

    /// Three rounds per variant; storm 1000 ms, pipeline 4000 ms at baseline, plus `added` per
    /// mille of the baseline under each variant.
    fn samples() -> Samples {
        let mut samples = Samples::new();
        for (variant, added) in [
            (Variant::None, 0),
            (Variant::Guard, 5),
            (Variant::TopDefault, 0),
            (Variant::TopPerEvent, 50),
            (Variant::TopPerEventHook, 110),
            (Variant::Bpftrace, 370),
        ] {
            for (kind, base) in [(Kind::Storm, 1000), (Kind::Pipeline, 4000)] {
                let runs = [0, 10, 20]
                    .into_iter()
                    .map(|jitter| report(base + jitter + base * added / 1000, 800_000))
                    .collect();
                samples.insert((kind, variant), runs);
            }
        }
        samples
    }

    fn costs() -> Vec<ProgramCosts> {
        let cost = |variant, programs: &[(&str, u64, u64)]| ProgramCosts {
            variant,
            kind: Kind::Storm,
            report: report(1000, 800_000),
            programs: programs
                .iter()
                .map(|&(name, ns, runs)| (name.to_owned(), ns, runs))
                .collect(),
        };
        vec![
            cost(
                Variant::TopPerEventHook,
                &[
                    ("rss_stat", 54_000_000, 800_000),
                    ("page_fault_user", 53_000_000, 800_000),
                ],
            ),
            cost(Variant::Guard, &[("sched_process_exit", 1_300, 2)]),
            cost(Variant::TopDefault, &[("sched_process_exit", 2_300, 2)]),
            cost(
                Variant::BpftraceEmpty,
                &[("page_fault_user", 46_000_000, 800_000)],
            ),
        ]
    }

    fn top() -> Vec<TopCost> {
        [
            (Variant::TopDefault, 0.15),
            (Variant::TopPerEvent, 0.35),
            (Variant::TopPerEventHook, 0.36),
            (Variant::Guard, 0.02),
        ]
        .into_iter()
        .map(|(variant, cpu_percent)| TopCost {
            variant,
            processes: 575,
            cpu_percent,
            startup_cpu_s: 0.08,
            memory: PidMemory {
                anon: 2 << 20,
                file: 7 << 20,
                hwm: 12 << 20,
                ..PidMemory::default()
            },
        })
        .collect()
    }

    /// The row whose target is `what`.
    fn row<'a>(table: &'a str, what: &str) -> &'a str {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{what:<TARGET_WIDTH$} ")))
            .unwrap_or_else(|| panic!("no row {what:?} in\n{table}"))
    }

    /// The verdict column of a row (counted in characters: the limits hold "≤").
    fn verdict(row: &str) -> String {
        row.chars()
            .skip(TARGET_WIDTH + 1 + 9 + 1 + 10 + 2)
            .take(7)
            .collect::<String>()
            .trim_end()
            .to_owned()
    }

    #[test]
    fn targets_judge_the_default_top() {
        let table = targets(&samples(), &costs(), &top());
        for kind in ["storm", "pipeline"] {
            let default = row(&table, &format!("{kind} overhead (CPU), top (default)"));
            assert_eq!(verdict(default), "met", "{default}");
            for opt_in in ["top --per-event", "top --per-event, fault hook"] {
                let line = row(&table, &format!("{kind} overhead (CPU), {opt_in}"));
                assert_eq!(verdict(line), "opt-in", "{line}");
                assert!(!line.contains('<') && !line.contains('≤'), "{line}");
            }
        }
        for who in ["guard", "top (default)"] {
            let line = row(&table, &format!("{who}: runs per 100 faults (storm)"));
            assert_eq!(verdict(line), "met", "{line}");
        }
        assert!(!table.contains("top --per-event: runs per 100"), "{table}");
        for program in ["rss_stat", "page_fault_user"] {
            let line = row(&table, &format!("kernel run time per event, {program}"));
            assert_eq!(verdict(line), "MISSED", "{line}");
        }
        for top in VARIANTS.into_iter().filter(|v| v.top_mode().is_some()) {
            for what in ["CPU, 1 s interval", "RSS (peak, VmHWM)"] {
                let line = row(&table, &format!("{}: {what}", top.label()));
                assert_eq!(verdict(line), "met", "{line}");
            }
        }
        // Aligned: every target fits its column, every verdict is in its own.
        let verdicts = ["met", "MISSED", "n/a", "opt-in", "verdict"];
        for line in table.lines() {
            assert_eq!(line.chars().nth(TARGET_WIDTH), Some(' '), "{line:?}");
            assert!(verdicts.contains(&verdict(line).as_str()), "{line:?}");
        }
        for variant in VARIANTS.into_iter().chain([Variant::BpftraceEmpty]) {
            assert!(variant.label().len() <= VARIANT_WIDTH, "{variant:?}");
        }
    }
}
