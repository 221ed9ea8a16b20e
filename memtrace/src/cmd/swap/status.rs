//! `memtrace swap status`: the active swap areas, their use, and how they compare with the
//! recommendation for this much RAM (with the rule spelled out and one line of advice).
//!
//! Inside a container the swap areas are the host's, and the container may use them only up to
//! its cgroup's allowance (`memory.swap.max`, v1 `memory.memsw.limit_in_bytes`): the
//! recommendation is then for the container's limit, measured against what the container may
//! use, and the advice is for the provider (swap cannot be set up from inside).
use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    collect::scope::{Scope, ScopeReport, Selected},
    host::{
        procfs,
        swap::{
            active::{self as proc_swaps, SwapDevice},
            plan::{self as swap_plan, Recommendation, SwapVerdict},
        },
        units::human_bytes,
    },
};

/// What `swap status --json` prints.
#[derive(Debug, Serialize)]
pub struct SwapStatus {
    /// MemTotal (the host's, inside a container).
    pub ram_bytes: u64,
    /// Whose memory counts: the machine, or the container (cgroup) and its limit.
    pub scope: ScopeReport,
    /// What the recommendation is for: MemTotal, or the cgroup's limit.
    pub limit_bytes: u64,
    /// Active swap areas (the host's).
    pub devices: Vec<SwapDevice>,
    /// Their total size.
    pub total_bytes: u64,
    /// Their total use.
    pub used_bytes: u64,
    /// Swap the scope may use: all of it for the machine, the smaller of that and the
    /// cgroup's allowance for a cgroup.
    pub available_bytes: u64,
    /// What the limit should have.
    pub recommendation: Recommendation,
    /// The rule behind the recommendation, in words.
    pub rule: &'static str,
    /// How the present swap compares.
    pub verdict: SwapVerdict,
    /// What to do about it, one line.
    pub advice: String,
}

/// Gathers the swap status of `selected` from `proc_root`.
pub fn collect(proc_root: &Path, selected: &Selected) -> anyhow::Result<SwapStatus> {
    let info = procfs::read_meminfo(proc_root).context("reading memory state")?;
    let devices = proc_swaps::read_swaps(proc_root)?;
    let total_bytes = devices.iter().map(|d| d.size_bytes).sum();
    let used_bytes = devices.iter().map(|d| d.used_bytes).sum();
    let usage = selected
        .scope
        .usage(proc_root)
        .with_context(|| format!("reading the usage of {}", selected.scope.describe()))?;
    let scope = selected.report(Some(&usage));
    let (limit_bytes, available_bytes) = match selected.scope {
        Scope::Machine => (info.total, total_bytes),
        Scope::Cgroup { .. } => (
            usage.limit_bytes,
            scope
                .swap_max_bytes
                .map_or(total_bytes, |max| max.min(total_bytes)),
        ),
    };
    let recommendation = swap_plan::recommend(limit_bytes);
    let verdict = recommendation.verdict(available_bytes);
    let advice = match selected.scope {
        Scope::Machine => advice(&recommendation, verdict, total_bytes),
        Scope::Cgroup { .. } => swap_plan::cgroup_advice(
            verdict,
            total_bytes,
            scope.swap_max_bytes,
            selected.in_container(),
        ),
    };
    Ok(SwapStatus {
        ram_bytes: info.total,
        scope,
        limit_bytes,
        devices,
        total_bytes,
        used_bytes,
        available_bytes,
        recommendation,
        rule: swap_plan::RULE,
        verdict,
        advice,
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

/// Prints the swap status of `selected`, as text or JSON.
pub fn print(json: bool, selected: &Selected) -> anyhow::Result<ExitCode> {
    let report = collect(Path::new("/proc"), selected)?;
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
    let mut out = String::new();
    let cgroup = s.scope.path.as_deref();
    if let Some(path) = cgroup {
        out.push_str(&format!(
            "Limit:       {} {} (cgroup {path})\n",
            human_bytes(s.limit_bytes),
            if s.scope.kind == "container" {
                "container limit"
            } else {
                "cgroup limit"
            },
        ));
        out.push_str(&format!(
            "RAM:         {} (MemTotal: the host's)\n",
            human_bytes(s.ram_bytes)
        ));
    } else {
        out.push_str(&format!(
            "RAM:         {} (MemTotal)\n",
            human_bytes(s.ram_bytes)
        ));
    }
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
    if cgroup.is_some() {
        out.push_str(&format!(
            "Available:   {} of it to this cgroup (memory.swap.max: {})\n",
            human_bytes(s.available_bytes),
            s.scope
                .swap_max_bytes
                .map_or_else(|| "no limit".to_owned(), human_bytes)
        ));
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
        "Recommended: {range} (minimum {}) for this {}\n",
        human_bytes(rec.minimum_bytes),
        if cgroup.is_some() { "limit" } else { "RAM" }
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

    fn machine() -> ScopeReport {
        Selected {
            scope: Scope::Machine,
            origin: crate::collect::scope::Origin::MachineFlag,
        }
        .report(None)
    }

    #[test]
    fn status_text_names_rule_and_advice() {
        let rec = swap_plan::recommend(24 << 30);
        let status = SwapStatus {
            ram_bytes: 24 << 30,
            scope: machine(),
            limit_bytes: 24 << 30,
            devices: vec![],
            total_bytes: 0,
            used_bytes: 0,
            available_bytes: 0,
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

    #[test]
    fn in_a_container_the_limit_and_the_allowance_count_and_the_provider_is_asked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cg = tmp.path();
        for (file, text) in [
            ("memory.current", "104857600\n"),
            ("memory.max", "671088640\n"),
            ("memory.stat", "inactive_file 0\n"),
            ("memory.swap.max", "0\n"),
        ] {
            std::fs::write(cg.join(file), text).expect("write");
        }
        let container = Selected {
            scope: Scope::cgroup(cg).expect("v2 cgroup"),
            origin: crate::collect::scope::Origin::Container,
        };
        let status = collect(Path::new("/proc"), &container).expect("collects");
        assert_eq!(status.limit_bytes, 640 << 20);
        assert_eq!(
            status.available_bytes, 0,
            "memory.swap.max 0: none of the host's"
        );
        assert_eq!(status.recommendation.ram_bytes, 640 << 20);
        assert_eq!(status.verdict, SwapVerdict::None);
        assert!(
            status
                .advice
                .contains("cannot be set up from inside a container")
                && status.advice.contains("ask the provider")
                && status.advice.contains("memory.swap.max"),
            "{}",
            status.advice
        );
        let text = render(&status);
        assert!(
            text.starts_with(&format!(
                "Limit:       640.0 MiB container limit (cgroup {})\n",
                cg.display()
            )),
            "{text}"
        );
        assert!(text.contains("(MemTotal: the host's)"), "{text}");
        assert!(text.contains("Available:   0 B of it to this cgroup (memory.swap.max: 0 B)"));
        assert!(text.contains("for this limit"), "{text}");
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["scope"]["kind"], "container");
        assert_eq!(json["scope"]["swap_max_bytes"].as_u64(), Some(0));
        // The advice for each case.
        let gib = 1 << 30;
        let advice = swap_plan::cgroup_advice;
        assert!(advice(SwapVerdict::None, 4 * gib, Some(0), true).contains("raise it"));
        assert!(advice(SwapVerdict::None, 0, None, true).contains("the host has no swap"));
        assert!(!advice(SwapVerdict::None, 0, None, false).contains("provider"));
        assert!(advice(SwapVerdict::Ok, gib, None, true).contains("meets"));
    }
}
