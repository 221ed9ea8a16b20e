//! `memtrace swap status`: the active swap areas, their use, and how they compare with the
//! recommendation for this much RAM (with the rule spelled out and one line of advice).
use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use serde::Serialize;

use crate::host::{
    procfs,
    swap::{
        active::{self as proc_swaps, SwapDevice},
        plan::{self as swap_plan, Recommendation, SwapVerdict},
    },
    units::human_bytes,
};

/// What `swap status --json` prints.
#[derive(Debug, Serialize)]
pub struct SwapStatus {
    /// MemTotal.
    pub ram_bytes: u64,
    /// Active swap areas.
    pub devices: Vec<SwapDevice>,
    /// Their total size.
    pub total_bytes: u64,
    /// Their total use.
    pub used_bytes: u64,
    /// What this RAM should have.
    pub recommendation: Recommendation,
    /// The rule behind the recommendation, in words.
    pub rule: &'static str,
    /// How the present swap compares.
    pub verdict: SwapVerdict,
    /// What to do about it, one line.
    pub advice: String,
}

/// Gathers the swap status from `proc_root`.
pub fn collect(proc_root: &Path) -> anyhow::Result<SwapStatus> {
    let info = procfs::read_meminfo(proc_root).context("reading memory state")?;
    let devices = proc_swaps::read_swaps(proc_root)?;
    let total_bytes = devices.iter().map(|d| d.size_bytes).sum();
    let used_bytes = devices.iter().map(|d| d.used_bytes).sum();
    let recommendation = swap_plan::recommend(info.total);
    let verdict = recommendation.verdict(total_bytes);
    Ok(SwapStatus {
        ram_bytes: info.total,
        devices,
        total_bytes,
        used_bytes,
        recommendation,
        rule: swap_plan::RULE,
        verdict,
        advice: advice(&recommendation, verdict, total_bytes),
    })
}

/// One line of advice for a verdict.
pub fn advice(rec: &Recommendation, verdict: SwapVerdict, total_bytes: u64) -> String {
    let size = rec.setup_size_bytes();
    let add = size.saturating_sub(total_bytes).div_ceil(1 << 30).max(1);
    match verdict {
        SwapVerdict::Ok => "swap meets the recommendation".to_owned(),
        SwapVerdict::None => format!(
            "no swap: run `sudo memtrace swap setup {}G --persist`",
            size >> 30
        ),
        SwapVerdict::BelowRecommended | SwapVerdict::BelowMinimum => format!(
            "{} of swap is below the {}: add about {add}G, e.g. `sudo memtrace swap setup {add}G \
             --path /swapfile2 --persist`",
            human_bytes(total_bytes),
            if verdict == SwapVerdict::BelowMinimum {
                "minimum"
            } else {
                "recommendation"
            },
        ),
    }
}

/// Prints the status of the host, as text or JSON.
pub fn print(json: bool) -> anyhow::Result<ExitCode> {
    let report = collect(Path::new("/proc"))?;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::out!("{}", render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form of `swap status`.
pub fn render(s: &SwapStatus) -> String {
    let rec = &s.recommendation;
    let mut out = format!("RAM:         {} (MemTotal)\n", human_bytes(s.ram_bytes));
    if s.devices.is_empty() {
        out.push_str("Swap:        none active\n");
    } else {
        out.push_str(&format!(
            "Swap:        {} total, {} used\n",
            human_bytes(s.total_bytes),
            human_bytes(s.used_bytes)
        ));
        out.push_str(&format!(
            "  {:<32} {:<9} {:>10} {:>10} {:>5}\n",
            "FILE", "TYPE", "SIZE", "USED", "PRIO"
        ));
        for d in &s.devices {
            out.push_str(&format!(
                "  {:<32} {:<9} {:>10} {:>10} {:>5}\n",
                d.path,
                d.kind,
                human_bytes(d.size_bytes),
                human_bytes(d.used_bytes),
                d.priority
            ));
        }
    }
    let range = if rec.recommended_high_bytes > rec.recommended_low_bytes {
        format!(
            "{} to {}",
            human_bytes(rec.recommended_low_bytes),
            human_bytes(rec.recommended_high_bytes)
        )
    } else {
        human_bytes(rec.recommended_low_bytes)
    };
    out.push_str(&format!(
        "Recommended: {range} (minimum {}) for this RAM\n",
        human_bytes(rec.minimum_bytes)
    ));
    out.push_str(&format!("Rule:        {}\n", s.rule));
    let verdict = match s.verdict {
        SwapVerdict::Ok => "OK",
        SwapVerdict::BelowRecommended => "WARN",
        SwapVerdict::BelowMinimum | SwapVerdict::None => "FAIL",
    };
    out.push_str(&format!("SwapVerdict:     {verdict}: {}\n", s.advice));
    out
}

#[cfg(test)]
mod tests {
    //! The status text.
    use super::*;

    #[test]
    fn status_text_names_rule_and_advice() {
        let rec = swap_plan::recommend(24 << 30);
        let status = SwapStatus {
            ram_bytes: 24 << 30,
            devices: vec![],
            total_bytes: 0,
            used_bytes: 0,
            recommendation: rec,
            rule: swap_plan::RULE,
            verdict: rec.verdict(0),
            advice: advice(&rec, rec.verdict(0), 0),
        };
        let text = render(&status);
        assert!(text.contains("Swap:        none active"));
        assert!(text.contains("Recommended: 12.0 GiB (minimum 6.0 GiB)"));
        assert!(text.contains("Rule:        table:"));
        assert!(text.contains("FAIL: no swap: run `sudo memtrace swap setup 12G --persist`"));
    }
}
