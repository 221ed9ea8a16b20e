//! The text form of a [`Report`]: verdicts first (the answer), then the stage × clip table, guard
//! actions, OOM kills, reclaim stalls and the largest processes.
use super::Report;
use crate::host::{units, units::human_bytes};

/// `2025-01-02 03:04:05 UTC` for ms since the Unix epoch.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// MiB with one decimal (signed quantities keep their minus sign).
pub fn mib(bytes: i64) -> String {
    units::mib_f64(bytes as f64)
}

fn signed(bytes: i64) -> String {
    units::signed_mib(bytes as f64)
}

/// Renders the report of the trace at `name`.
pub fn render(report: &Report, name: &str) -> String {
    let h = &report.header;
    let mut out = format!(
        "memtrace report: {name} ({}, {} samples over {:.1} s{})\n",
        human_bytes(report.bytes),
        report.samples,
        report.duration_s,
        if report.complete {
            ""
        } else {
            ", not closed by the recorder"
        }
    );
    let swap = if h.swap_bytes == 0 {
        "no swap".to_owned()
    } else {
        format!("{} swap", human_bytes(h.swap_bytes))
    };
    let gpus = if h.gpus.is_empty() {
        "no GPU source".to_owned()
    } else {
        h.gpus
            .iter()
            .map(|g| format!("{} ({})", g.name, human_bytes(g.total_bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!(
        "Host: {} (Linux {}), {} RAM, {swap}, {} CPUs, {gpus}; started {}\n",
        h.host,
        h.kernel,
        human_bytes(h.ram_bytes),
        h.cpus,
        utc(h.start_unix_ms)
    ));
    out.push_str(&format!("Traced: {}", h.scope));
    if !h.command.is_empty() {
        out.push_str(&format!(": {}", h.command.join(" ")));
    }
    out.push_str(&format!(", every {} ms", h.interval_ms));
    if let Some(exit) = &report.exit {
        out.push_str(&format!("; {exit}"));
    }
    out.push('\n');
    out.push_str(&format!(
        "Host memory = {}.\nPeak host memory: {}",
        report.host_measure.words(),
        human_bytes(report.peak_footprint)
    ));
    if let Some(gpu) = report.peak_gpu {
        out.push_str(&format!(", peak GPU memory: {}", human_bytes(gpu)));
    }
    if let Some(marks) = report.marks.words() {
        out.push('\n');
        out.push_str(&marks);
    }
    out.push_str("\n\n");
    if report.verdicts.is_empty() {
        out.push_str(
            "No stage marks in this trace: mark stages with `memtrace mark STAGE --clip ID`, the \
             socket in $MEMTRACE_MARK_SOCKET, or `memtrace run --stage-regex`.\n",
        );
    } else {
        out.push_str(
            "Verdicts (memory each stage keeps per clip: mean ± 95 % interval over the judged \
             clips):\n",
        );
        if let Some(tree) = &report.tree {
            out.push_str(&format!("  {}\n", tree.text));
        }
        for v in &report.verdicts {
            out.push_str(&format!("  {}\n", v.text));
        }
        out.push_str(&stage_table(report));
    }
    out.push_str(&events(report));
    out
}

fn stage_table(report: &Report) -> String {
    let gpu = report.stages.iter().any(|r| r.gpu.is_some());
    let mut out = format!(
        "\nStages × clips (host memory, MiB; retained = end − start):\n\
         {:<14} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "STAGE", "CLIP", "SECONDS", "START", "END", "PEAK", "RETAINED"
    );
    if gpu {
        out.push_str(&format!(
            " {:>9} {:>9} {:>9}",
            "GPU END", "GPU PEAK", "GPU RET"
        ));
    }
    out.push_str("  SUB-STAGES\n");
    for r in &report.stages {
        out.push_str(&format!(
            "{:<14} {:>6} {:>8.2} {:>9} {:>9} {:>9} {:>9}",
            r.stage.chars().take(14).collect::<String>(),
            r.clip.as_deref().unwrap_or("-"),
            r.end_s - r.begin_s,
            units::mib(r.host_start),
            units::mib(r.host_end),
            units::mib(r.host_peak),
            signed(r.host_retained)
        ));
        if let Some(g) = r.gpu {
            out.push_str(&format!(
                " {:>9} {:>9} {:>9}",
                mib(g[1]),
                mib(g[2]),
                signed(g[3])
            ));
        } else if gpu {
            out.push_str(&format!(" {:>9} {:>9} {:>9}", "-", "-", "-"));
        }
        let children: Vec<String> = r
            .children
            .iter()
            .map(|(comm, peak)| format!("{comm} (peak {})", human_bytes(*peak)))
            .collect();
        out.push_str(&format!("  {}\n", children.join(", ")));
    }
    out
}

fn events(report: &Report) -> String {
    let mut out = String::from("\n");
    if report.guard.is_empty() {
        out.push_str("Guard actions: none\n");
    } else {
        out.push_str("Guard actions:\n");
        for m in &report.guard {
            out.push_str(&format!("  {:>8.1} s  {}\n", m.t_s, m.text));
        }
    }
    if report.oom_kills.is_empty() {
        out.push_str("OOM kills: none\n");
    } else {
        out.push_str("OOM kills:\n");
        for m in &report.oom_kills {
            out.push_str(&format!("  {:>8.1} s  {}\n", m.t_s, m.text));
        }
    }
    if report.reclaim.is_empty() {
        out.push_str("Reclaim stalls: none\n");
    } else {
        out.push_str("Reclaim stalls:\n");
        for p in &report.reclaim {
            out.push_str(&format!(
                "  {:>7} {:<16} {:>9.1} ms in {} stalls\n",
                p.pid,
                p.comm,
                p.reclaim_stall_ns as f64 / 1e6,
                p.reclaim_count
            ));
        }
    }
    out.push_str(&format!(
        "Top processes by peak host memory:\n  {:>7} {:<16} {:>10} {:>10}\n",
        "PID", "COMMAND", "PEAK MiB", "PEAK RSS"
    ));
    for p in &report.top {
        out.push_str(&format!(
            "  {:>7} {:<16} {:>10} {:>10}\n",
            p.pid,
            p.comm.chars().take(16).collect::<String>(),
            units::mib(p.peak_footprint),
            units::mib(p.peak_rss)
        ));
    }
    if let Some(damage) = &report.damage {
        out.push_str(&format!("\nDAMAGED TRACE: {damage}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    //! Calendar arithmetic.
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03 UTC");
    }
}
