//! `memtrace clean [--drop-caches] [--temp DIR… --older-than D] [--dry-run]`: frees what can be
//! freed and says how much per step — old temp files (see [`super::clean_walk`] for the rules
//! that keep it inside the roots) and the page cache — with MemAvailable before and after.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

use super::{
    clean_walk::{self, RootReport, WalkOptions},
    swap::is_root,
    sysctl,
};
use crate::{duration::parse_duration, procfs, units::human_bytes};

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
    /// Temp roots.
    pub temp: Vec<PathBuf>,
    /// Minimum age for deletion (set when `temp` is not empty).
    pub older_than: Duration,
    /// Change nothing.
    pub dry_run: bool,
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
        for root in &args.temp {
            check_root(root)?;
        }
        Ok(Self {
            drop_caches: args.drop_caches,
            temp: args.temp,
            older_than,
            dry_run: args.dry_run,
        })
    }
}

/// Refuses roots that are not real directories, and `/`.
fn check_root(root: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(root).with_context(|| format!("--temp {}", root.display()))?;
    anyhow::ensure!(
        !meta.file_type().is_symlink(),
        "--temp {} is a symlink; pass the directory it points to",
        root.display()
    );
    anyhow::ensure!(
        meta.is_dir(),
        "--temp {} is not a directory",
        root.display()
    );
    let canonical =
        std::fs::canonicalize(root).with_context(|| format!("--temp {}", root.display()))?;
    anyhow::ensure!(
        canonical != Path::new("/"),
        "--temp / would clean the whole system; refusing"
    );
    Ok(())
}

/// Runs `memtrace clean`.
pub fn run(args: CleanArgs) -> anyhow::Result<ExitCode> {
    let config = CleanConfig::try_from(args)?;
    if config.drop_caches && !config.dry_run && !is_root() {
        anyhow::bail!("clean --drop-caches must be run as root");
    }
    let proc_root = Path::new("/proc");
    let mut failed = false;
    if !config.temp.is_empty() {
        let (text, had_errors) = clean_temp(proc_root, &config)?;
        print!("{text}");
        failed |= had_errors;
    }
    if config.drop_caches {
        print!("{}", drop_caches(proc_root, config.dry_run)?);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The temp step: every root, then MemAvailable before → after. Returns the text and whether
/// any entry could not be handled.
pub fn clean_temp(proc_root: &Path, config: &CleanConfig) -> anyhow::Result<(String, bool)> {
    let before = procfs::read_meminfo(proc_root)?.available;
    let in_use = clean_walk::files_in_use(proc_root);
    let mut out = String::new();
    if !in_use.complete {
        out.push_str("note: not root, so files held open by other users' processes are not seen\n");
    }
    let cutoff = SystemTime::now()
        .checked_sub(config.older_than)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let options = WalkOptions {
        cutoff_secs: cutoff,
        in_use: &in_use,
        dry_run: config.dry_run,
    };
    let mut had_errors = false;
    for root in &config.temp {
        let report = clean_walk::clean_root(root, &options)
            .with_context(|| format!("opening {}", root.display()))?;
        out.push_str(&render_root(root, &report, config.dry_run));
        had_errors |= report.errors > 0;
    }
    let after = procfs::read_meminfo(proc_root)?.available;
    out.push_str(&format!(
        "temp files: MemAvailable {}\n",
        before_after(before, after)
    ));
    Ok((out, had_errors))
}

/// One root's line (plus its first errors).
pub fn render_root(root: &Path, r: &RootReport, dry_run: bool) -> String {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut out = format!(
        "{}: {verb} {} file(s), {} symlink(s), {} empty dir(s), {} {}; kept {} recent, {} open, \
         {} special, {} other-fs, {} denied; {} error(s)\n",
        root.display(),
        r.files_deleted,
        r.symlinks_deleted,
        r.dirs_removed,
        human_bytes(r.bytes_freed),
        if dry_run { "to free" } else { "freed" },
        r.kept_recent,
        r.kept_open,
        r.skipped_special,
        r.skipped_other_fs,
        r.denied,
        r.errors,
    );
    for message in &r.error_messages {
        out.push_str(&format!("  error: {message}\n"));
    }
    out
}

/// `A → B (+Δ)`.
fn before_after(before: u64, after: u64) -> String {
    let delta = if after >= before {
        format!("+{}", human_bytes(after - before))
    } else {
        format!("-{}", human_bytes(before - after))
    };
    format!("{} → {} ({delta})", human_bytes(before), human_bytes(after))
}

/// The drop-caches step: sync, write 1 to drop_caches, report the page cache and MemAvailable.
/// Syncs, then drops the page cache; reports the change. `dry_run` only says what it would do.
pub fn drop_caches(proc_root: &Path, dry_run: bool) -> anyhow::Result<String> {
    let before = procfs::read_meminfo(proc_root)?;
    if dry_run {
        return Ok(format!(
            "dry run: would sync and drop the page cache ({} cached now)\n",
            human_bytes(before.cached)
        ));
    }
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    sysctl::write_value(&sysctl::path_of(proc_root, "vm.drop_caches"), "1")?;
    let after = procfs::read_meminfo(proc_root)?;
    Ok(format!(
        "drop caches: page cache {} → {}, MemAvailable {}\n",
        human_bytes(before.cached),
        human_bytes(after.cached),
        before_after(before.available, after.available)
    ))
}

#[cfg(test)]
mod tests {
    //! The temp walk on a real temporary tree: symlink traps, open files, recent files.
    use std::{
        fs,
        os::unix::fs::symlink,
        time::{Duration, SystemTime},
    };

    use super::*;

    struct TempTree(PathBuf);

    impl TempTree {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("memtrace-clean-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("mkdir");
            Self(dir)
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const TWO_HOURS: Duration = Duration::from_secs(7200);

    /// Sets both atime and mtime `age` in the past.
    fn age(path: &Path, age: Duration) {
        let when = SystemTime::now() - age;
        let times = fs::FileTimes::new().set_accessed(when).set_modified(when);
        fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| fs::File::open(path))
            .and_then(|f| f.set_times(times))
            .expect("set times");
    }

    fn old_file(path: &Path, bytes: usize) {
        fs::write(path, vec![7u8; bytes]).expect("write");
        age(path, TWO_HOURS);
    }

    fn config(root: &Path, dry_run: bool) -> CleanConfig {
        CleanConfig {
            drop_caches: false,
            temp: vec![root.to_path_buf()],
            older_than: Duration::from_secs(3600),
            dry_run,
        }
    }

    #[test]
    fn temp_walk_keeps_inside_the_root() {
        let outside = TempTree::new("outside");
        let victim = outside.0.join("precious");
        old_file(&victim, 4096);
        fs::create_dir(outside.0.join("dir")).expect("mkdir");
        let deep_victim = outside.0.join("dir/also-precious");
        old_file(&deep_victim, 4096);

        let tree = TempTree::new("root");
        let root = &tree.0;
        old_file(&root.join("old"), 64 * 1024);
        fs::write(root.join("new"), b"fresh").expect("write");
        fs::create_dir(root.join("sub")).expect("mkdir");
        old_file(&root.join("sub/old-inner"), 8192);
        fs::create_dir(root.join("keepdir")).expect("mkdir");
        fs::write(root.join("keepdir/new-inner"), b"fresh").expect("write");
        // Trap 1: an old symlink to a file outside: the link goes, the target stays.
        symlink(&victim, root.join("link-out")).expect("symlink");
        // Trap 2: a symlinked directory: never descended.
        symlink(outside.0.join("dir"), root.join("dir-link")).expect("symlink");
        for link in ["link-out", "dir-link"] {
            let when = SystemTime::now() - TWO_HOURS;
            let c = std::ffi::CString::new(root.join(link).as_os_str().as_encoded_bytes())
                .expect("cstr");
            let secs = when
                .duration_since(UNIX_EPOCH)
                .expect("after epoch")
                .as_secs() as libc::time_t;
            let ts = [libc::timespec {
                tv_sec: secs,
                tv_nsec: 0,
            }; 2];
            // SAFETY: valid path and two timespecs; AT_SYMLINK_NOFOLLOW touches the link itself.
            let rc = unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            assert_eq!(rc, 0, "utimensat on the link");
        }
        // An old file this process holds open.
        let held_path = root.join("held");
        old_file(&held_path, 4096);
        let held = fs::File::open(&held_path).expect("open");
        age(&root.join("sub"), TWO_HOURS);

        // Dry run first: counts, changes nothing.
        let (text, errors) = clean_temp(Path::new("/proc"), &config(root, true)).expect("dry run");
        assert!(!errors, "{text}");
        assert!(
            text.contains("would delete 2 file(s), 2 symlink(s), 1 empty dir(s)"),
            "{text}"
        );
        assert!(root.join("old").exists() && root.join("sub/old-inner").exists());

        let (text, errors) = clean_temp(Path::new("/proc"), &config(root, false)).expect("cleans");
        assert!(!errors, "{text}");
        assert!(
            text.contains("deleted 2 file(s), 2 symlink(s), 1 empty dir(s)"),
            "{text}"
        );
        assert!(text.contains("kept 2 recent, 1 open"), "{text}");
        assert!(!root.join("old").exists());
        assert!(
            !root.join("sub").exists(),
            "old directory emptied and removed"
        );
        assert!(
            fs::symlink_metadata(root.join("link-out")).is_err(),
            "old link removed"
        );
        assert!(
            fs::symlink_metadata(root.join("dir-link")).is_err(),
            "old dir link removed"
        );
        assert!(victim.exists(), "symlink target outside the root survives");
        assert!(deep_victim.exists(), "symlinked directory not descended");
        assert!(root.join("new").exists() && root.join("keepdir/new-inner").exists());
        assert!(held_path.exists(), "open file kept");
        assert!(root.exists(), "the root itself stays");
        drop(held);
    }

    #[test]
    fn config_refusals() {
        let tree = TempTree::new("config");
        let args = |temp: Vec<PathBuf>, older: Option<&str>, drop_caches| CleanArgs {
            drop_caches,
            temp,
            older_than: older.map(str::to_owned),
            dry_run: true,
        };
        let err = |a: CleanArgs| {
            CleanConfig::try_from(a)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(args(vec![], None, false)).starts_with("nothing to do"));
        assert!(err(args(vec![tree.0.clone()], None, false)).contains("--older-than"));
        assert!(err(args(vec![], Some("1h"), true)).contains("only applies"));
        assert!(err(args(vec![tree.0.clone()], Some("soon"), false)).contains("invalid duration"));
        assert!(err(args(vec![PathBuf::from("/")], Some("1h"), false)).contains("refusing"));
        let link = tree.0.join("link");
        symlink(&tree.0, &link).expect("symlink");
        assert!(err(args(vec![link], Some("1h"), false)).contains("is a symlink"));
        let ok =
            CleanConfig::try_from(args(vec![tree.0.clone()], Some("30m"), false)).expect("valid");
        assert_eq!(ok.older_than, Duration::from_secs(1800));
    }
}
