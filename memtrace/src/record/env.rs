//! What `run_memory_safe.sh` scripts do before starting a pipeline, done by `memtrace run`: warn
//! when swap is missing or below the recommendation for this RAM, and give the child a
//! memory-friendly environment without ever overriding a variable the user already set.
//!
//! Inside a container (memtrace runs in a cgroup whose limit is below the machine's RAM) `run`
//! first says that the kernel OOM-kills at the container's limit, not at the host's RAM that
//! /proc/meminfo shows, and the swap warning is about the swap the container may use.
//!
//! Defaults (each replaceable or switched off with `""` in the `[run.env]` table of `--config`):
//! `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` (fewer fragmented CUDA blocks),
//! `MALLOC_ARENA_MAX=2` (glibc keeps fewer per-thread arenas of freed memory),
//! `OMP_NUM_THREADS=min(4, CPUs)` (fewer per-thread OpenMP buffers).
use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context as _;
use serde::Deserialize;

use crate::{
    collect::scope::{Scope, Selected, Usage},
    host::{
        cgroup, input,
        procfs::MemInfo,
        swap::plan::{self, SwapVerdict},
        units::{human_bytes, parse_duration},
    },
};

/// The `[run]` table of a config file (other tables, e.g. the guard's, are ignored here).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Sampling interval (`200ms`, `1s`).
    pub interval: Option<String>,
    /// Environment for the child: a value replaces the default, `""` drops the variable.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    #[serde(default)]
    run: RunSection,
}

/// Reads the `[run]` table of `path`.
pub fn load(path: &Path) -> anyhow::Result<RunSection> {
    let text = input::read_to_string(path, input::CONFIG_MAX_BYTES, "a config file")
        .with_context(|| format!("reading {}", path.display()))?;
    let file: FileConfig =
        toml::from_str(&text).with_context(|| format!("{}: invalid config", path.display()))?;
    if let Some(interval) = &file.run.interval {
        parse_duration(interval).with_context(|| format!("{}: [run] interval", path.display()))?;
    }
    Ok(file.run)
}

/// The sampling interval a section asks for, or `default`.
pub fn interval(section: &RunSection, default: Duration) -> Duration {
    section
        .interval
        .as_deref()
        .and_then(|t| parse_duration(t).ok())
        .unwrap_or(default)
}

/// The defaults, before the config's changes.
pub fn defaults(cpus: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "PYTORCH_CUDA_ALLOC_CONF".to_owned(),
            "expandable_segments:True".to_owned(),
        ),
        ("MALLOC_ARENA_MAX".to_owned(), "2".to_owned()),
        ("OMP_NUM_THREADS".to_owned(), cpus.clamp(1, 4).to_string()),
    ])
}

/// The variables to set for the child: defaults merged with the config, minus any the user
/// already has (`present` says whether a name is set). Returns (to set, kept from the user).
pub fn plan(
    section: &RunSection,
    cpus: usize,
    present: impl Fn(&str) -> bool,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut wanted = defaults(cpus);
    for (key, value) in &section.env {
        if value.is_empty() {
            wanted.remove(key);
        } else {
            wanted.insert(key.clone(), value.clone());
        }
    }
    let kept: Vec<String> = wanted.keys().filter(|k| present(k)).cloned().collect();
    wanted.retain(|k, _| !present(k));
    (wanted, kept)
}

/// What `run` says about memory before the pipeline starts, for `scope`: on the machine, a
/// warning when swap is missing or short; in a cgroup (a container), the limit that counts and
/// a warning when the swap the cgroup may use is missing or short for that limit.
pub fn memory_lines(scope: &Selected, info: &MemInfo, proc_root: &Path) -> Vec<String> {
    let Scope::Cgroup { path, version } = &scope.scope else {
        return swap_warning(info.total, info.swap_total)
            .into_iter()
            .collect();
    };
    let usage = match scope.scope.usage(proc_root) {
        Ok(usage) => usage,
        Err(err) => return vec![format!("[memtrace] warning: {err}")],
    };
    let allowance = cgroup::swap_allowance(path, *version, usage.limit_bytes);
    let mut lines = vec![limit_line(scope, &usage, info.total)];
    lines.extend(cgroup_swap_warning(
        usage.limit_bytes,
        info.swap_total,
        allowance,
        scope.in_container(),
    ));
    lines
}

/// `[memtrace] memory: container limit X (cgroup …), Y used: …` — the limit that counts.
pub fn limit_line(scope: &Selected, usage: &Usage, host_bytes: u64) -> String {
    format!(
        "[memtrace] memory: {}, {} used: the kernel OOM-kills the pipeline at this limit, not at \
         the host's {} that /proc/meminfo shows",
        scope.describe(Some(usage)),
        human_bytes(usage.used_bytes),
        human_bytes(host_bytes)
    )
}

/// A warning line when the swap a cgroup may use (the host's `host_swap`, capped by the
/// cgroup's `allowance`) is missing or short for its `limit`.
pub fn cgroup_swap_warning(
    limit: u64,
    host_swap: u64,
    allowance: Option<u64>,
    in_container: bool,
) -> Option<String> {
    let usable = allowance.map_or(host_swap, |max| max.min(host_swap));
    let verdict = plan::recommend(limit).verdict(usable);
    if verdict == SwapVerdict::Ok {
        return None;
    }
    Some(format!(
        "[memtrace] warning: this {} may use {} of swap: a spike past its {} limit goes \
         straight to the OOM killer; {}",
        if in_container { "container" } else { "cgroup" },
        human_bytes(usable),
        human_bytes(limit),
        plan::cgroup_advice(verdict, host_swap, allowance, in_container)
    ))
}

/// A warning line when swap is missing or short, for this much RAM and swap.
pub fn swap_warning(ram_bytes: u64, swap_bytes: u64) -> Option<String> {
    let rec = plan::recommend(ram_bytes);
    let size = human_bytes(rec.recommended_low_bytes);
    let fix = format!(
        "`memtrace swap setup {}G`",
        rec.recommended_low_bytes.div_ceil(1 << 30)
    );
    match rec.verdict(swap_bytes) {
        SwapVerdict::Ok => None,
        SwapVerdict::None => Some(format!(
            "[memtrace] warning: no swap: a memory spike goes straight to the OOM killer; \
             {size} is recommended for {} RAM ({fix})",
            human_bytes(ram_bytes)
        )),
        SwapVerdict::BelowMinimum | SwapVerdict::BelowRecommended => Some(format!(
            "[memtrace] warning: swap is {}, below the {size} recommended for {} RAM ({fix})",
            human_bytes(swap_bytes),
            human_bytes(ram_bytes)
        )),
    }
}

#[cfg(test)]
mod tests {
    //! Merging defaults, config and the user's own variables; the swap warning.
    use super::*;

    #[test]
    fn never_overrides_the_user() {
        let section: RunSection = toml::from_str(
            "interval = \"200ms\"\nenv = { OMP_NUM_THREADS = \"\", MY_VAR = \"1\" }",
        )
        .expect("valid");
        let (set, kept) = plan(&section, 16, |k| k == "MALLOC_ARENA_MAX");
        assert_eq!(set.get("MY_VAR").map(String::as_str), Some("1"));
        assert!(!set.contains_key("OMP_NUM_THREADS"), "\"\" drops a default");
        assert!(
            !set.contains_key("MALLOC_ARENA_MAX"),
            "the user's value wins"
        );
        assert_eq!(kept, vec!["MALLOC_ARENA_MAX".to_owned()]);
        assert_eq!(
            interval(&section, Duration::from_secs(1)),
            Duration::from_millis(200)
        );
        assert_eq!(
            defaults(2).get("OMP_NUM_THREADS").map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn container_swap_warnings_name_the_limit_and_the_provider() {
        let mib = 1u64 << 20;
        let gib = 1u64 << 30;
        // Host swap exists, but memory.swap.max keeps the container from it.
        let line = cgroup_swap_warning(640 * mib, 4 * gib, Some(0), true).expect("warned");
        assert!(
            line.contains("this container may use 0 B of swap")
                && line.contains("640.0 MiB limit")
                && line.contains("raise it")
                && line.contains("ask the provider"),
            "{line}"
        );
        assert!(
            !line.contains("memtrace swap setup 1G`"),
            "no host command: {line}"
        );
        let none = cgroup_swap_warning(640 * mib, 0, None, true).expect("warned");
        assert!(none.contains("the host has no swap"), "{none}");
        assert_eq!(cgroup_swap_warning(640 * mib, 4 * gib, None, true), None);
        let usage = Usage {
            used_bytes: 100 * mib,
            limit_bytes: 640 * mib,
        };
        let container = Selected {
            scope: Scope::Cgroup {
                path: "/sys/fs/cgroup".into(),
                version: cgroup::Version::V2,
            },
            origin: crate::collect::scope::Origin::Container,
        };
        let line = limit_line(&container, &usage, 24 * gib);
        assert!(
            line.starts_with(
                "[memtrace] memory: container limit 640.0 MiB (cgroup /sys/fs/cgroup, v2"
            ) && line.contains("100.0 MiB used")
                && line.ends_with("not at the host's 24.0 GiB that /proc/meminfo shows"),
            "{line}"
        );
    }

    #[test]
    fn swap_warnings() {
        let gib = 1u64 << 30;
        assert!(swap_warning(24 * gib, 0).is_some_and(|w| w.contains("no swap")));
        assert!(swap_warning(24 * gib, gib).is_some_and(|w| w.contains("below")));
        assert_eq!(swap_warning(24 * gib, 16 * gib), None);
    }
}
