//! `memtrace clean [--drop-caches] [--temp DIR… --older-than D] [--dry-run]`: frees what can be
//! freed and says how much per step — old temp files (see [`crate::host::reclaim::temp_walk`]
//! for the rules that keep it inside the roots) and the page cache — with MemAvailable before
//! and after.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;

use crate::host::{
    privilege::is_root,
    reclaim::{TempCleanup, check_temp_root, clean_temp, drop_caches},
    units::parse_duration,
};

/// Raw arguments of `memtrace clean`.
#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// sync, then drop the page cache (writes 1 to /proc/sys/vm/drop_caches; root).
    #[arg(long)]
    pub drop_caches: bool,
    /// Delete files older than --older-than below DIR (several allowed). Never follows
    /// symlinks, never leaves DIR or its filesystem, keeps files any process has open.
    #[arg(long, value_name = "DIR", num_args = 1..)]
    pub temp: Vec<PathBuf>,
    /// Minimum age of what --temp deletes: 30m, 1h, 12h (at most a day).
    #[arg(long, value_name = "D")]
    pub older_than: Option<String>,
    /// Say what would be freed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `clean`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanConfig {
    /// Drop the page cache.
    pub drop_caches: bool,
    /// The temp step (no roots: none) and whether anything is changed at all.
    pub temp: TempCleanup,
}

impl TryFrom<CleanArgs> for CleanConfig {
    type Error = anyhow::Error;

    fn try_from(args: CleanArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(
            args.drop_caches || !args.temp.is_empty(),
            "nothing to do: pass --drop-caches and/or --temp DIR --older-than D"
        );
        let older_than = match (&args.older_than, args.temp.is_empty()) {
            (Some(text), false) => parse_duration(text)?,
            (None, false) => anyhow::bail!("--temp needs --older-than D (e.g. --older-than 1h)"),
            (Some(_), true) => anyhow::bail!("--older-than only applies to --temp DIR"),
            (None, true) => Duration::ZERO,
        };
        let roots = args
            .temp
            .iter()
            .map(|root| check_temp_root(root).context("--temp"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            drop_caches: args.drop_caches,
            temp: TempCleanup {
                roots,
                older_than,
                dry_run: args.dry_run,
            },
        })
    }
}

/// Runs `memtrace clean`.
pub fn run(args: CleanArgs) -> anyhow::Result<ExitCode> {
    let config = CleanConfig::try_from(args)?;
    let dry_run = config.temp.dry_run;
    if config.drop_caches && !dry_run && !is_root() {
        anyhow::bail!("clean --drop-caches must be run as root");
    }
    let proc_root = Path::new("/proc");
    let mut failed = false;
    if !config.temp.roots.is_empty() {
        let (text, had_errors) = clean_temp(proc_root, &config.temp)?;
        crate::out!("{text}")?;
        failed |= had_errors;
    }
    if config.drop_caches {
        crate::out!("{}", drop_caches(proc_root, dry_run)?)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    //! Refusals of bad arguments (and of roots that must never be cleaned), before anything is
    //! touched.
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn config_refusals() {
        let tree = tempfile::tempdir().expect("temp dir");
        let dir = tree.path().to_path_buf();
        let args = |temp: Vec<PathBuf>, older: Option<&str>, drop_caches| CleanArgs {
            drop_caches,
            temp,
            older_than: older.map(str::to_owned),
            dry_run: true,
        };
        let err = |a: CleanArgs| {
            CleanConfig::try_from(a)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(err(args(vec![], None, false)).starts_with("nothing to do"));
        assert!(err(args(vec![dir.clone()], None, false)).contains("--older-than"));
        assert!(err(args(vec![], Some("1h"), true)).contains("only applies"));
        assert!(err(args(vec![dir.clone()], Some("soon"), false)).contains("invalid duration"));
        assert!(err(args(vec![PathBuf::from("/")], Some("1h"), false)).contains("refusing"));
        let link = dir.join("link");
        symlink(&dir, &link).expect("symlink");
        assert!(err(args(vec![link.clone()], Some("1h"), false)).contains("is a symlink"));
        let mut slashed = link.into_os_string();
        slashed.push("/");
        let refusal = err(args(vec![slashed.into()], Some("1h"), false));
        assert!(
            refusal.starts_with("--temp: ") && refusal.contains("is a symlink"),
            "{refusal}"
        );
        for system in ["/tmp/..", "/etc", "/etc/", "/usr/lib"] {
            let refusal = err(args(vec![PathBuf::from(system)], Some("1h"), false));
            assert!(refusal.contains(system), "{refusal}");
        }
        let ok =
            CleanConfig::try_from(args(vec![dir.join(".")], Some("30m"), false)).expect("valid");
        assert_eq!(ok.temp.older_than, Duration::from_secs(1800));
        let canonical = std::fs::canonicalize(&dir).expect("canonical");
        assert_eq!(ok.temp.roots, vec![canonical], "kept as its canonical path");
    }
}
