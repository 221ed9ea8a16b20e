//! Freeing host memory that nobody needs: the page cache (sync, then `vm.drop_caches`) and old
//! files in temp directories ([`temp_root`] says which directories may be roots and opens them
//! without following symlinks, [`temp_walk`] keeps the deletions inside them). `memtrace clean`
//! and the guard's reclaim rung both run these and print what each step freed; both check their
//! roots with [`check_temp_root`] when they are given, and [`clean_temp`] checks them again
//! before every walk.
pub mod temp_root;
pub mod temp_walk;

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use temp_walk::{RootReport, WalkOptions};

use crate::{
    procfs::{self, ProcError},
    sysctl::{self, SysctlError},
    units::human_bytes,
};

/// A reclaim step that could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    /// /proc/meminfo could not be read.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// `vm.drop_caches` could not be written.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// A temp root that must not be cleaned.
    #[error("{root}: {why}")]
    BadRoot {
        /// The root as given.
        root: String,
        /// Why it is refused.
        why: String,
    },
    /// A temp root could not be opened or examined.
    #[error("{}: {source}", root.display())]
    Root {
        /// The root.
        root: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

pub use temp_root::{check_temp_root, open_root};

/// What the temp step deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempCleanup {
    /// Temp roots, as [`check_temp_root`] returned them (canonical).
    pub roots: Vec<PathBuf>,
    /// Minimum age for deletion.
    pub older_than: Duration,
    /// Change nothing, say what would go.
    pub dry_run: bool,
}

/// The temp step: every root, then MemAvailable before → after. Returns the text and whether
/// any entry could not be handled. Each root is checked again first (it may have been replaced
/// by a symlink, or its path may resolve elsewhere, since it was given): a root that no longer
/// passes, or no longer resolves to itself, is refused with a line and skipped.
pub fn clean_temp(proc_root: &Path, cleanup: &TempCleanup) -> Result<(String, bool), ReclaimError> {
    let before = procfs::read_meminfo(proc_root)?.available;
    let in_use = temp_walk::files_in_use(proc_root);
    let mut out = String::new();
    if !in_use.complete {
        out.push_str("note: not root, so files held open by other users' processes are not seen\n");
    }
    let cutoff = SystemTime::now()
        .checked_sub(cleanup.older_than)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let options = WalkOptions {
        cutoff_secs: cutoff,
        in_use: &in_use,
        dry_run: cleanup.dry_run,
    };
    let mut had_errors = false;
    for root in &cleanup.roots {
        let checked = check_temp_root(root).and_then(|canonical| {
            if canonical == *root {
                Ok(canonical)
            } else {
                Err(ReclaimError::BadRoot {
                    root: root.display().to_string(),
                    why: format!("now resolves to {}; refusing", canonical.display()),
                })
            }
        });
        let walked = checked.and_then(|canonical| {
            temp_walk::clean_root(&canonical, &options).map_err(|source| ReclaimError::Root {
                root: canonical,
                source,
            })
        });
        match walked {
            Ok(report) => {
                out.push_str(&render_root(root, &report, cleanup.dry_run));
                had_errors |= report.errors > 0;
            }
            Err(err) => {
                out.push_str(&format!("temp root {err}; skipped\n"));
                had_errors = true;
            }
        }
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

/// The drop-caches step: opens `vm.drop_caches` for writing (a read-only /proc/sys, as in a
/// container, fails here, before anything else), syncs, writes 1, and reports the page cache
/// and MemAvailable before and after. `dry_run` only says what it would do.
pub fn drop_caches(proc_root: &Path, dry_run: bool) -> Result<String, ReclaimError> {
    let before = procfs::read_meminfo(proc_root)?;
    if dry_run {
        return Ok(format!(
            "dry run: would sync and drop the page cache ({} cached now)\n",
            human_bytes(before.cached)
        ));
    }
    let path = sysctl::path_of(proc_root, "vm.drop_caches");
    let knob = sysctl::open_for_write(&path, "1")?;
    rustix::fs::sync();
    sysctl::write_to(knob, &path, "1")?;
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
    //! The temp walk on a real temporary tree: symlink traps, open files, recent files, and a
    //! root swapped for a symlink after it was checked.
    use std::{fs, os::unix::fs::symlink};

    use super::*;

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

    fn cleanup(root: &Path, dry_run: bool) -> TempCleanup {
        TempCleanup {
            roots: vec![root.to_path_buf()],
            older_than: Duration::from_secs(3600),
            dry_run,
        }
    }

    #[test]
    fn temp_walk_keeps_inside_the_root() {
        let outside = tempfile::tempdir().expect("temp dir");
        let victim = outside.path().join("precious");
        old_file(&victim, 4096);
        fs::create_dir(outside.path().join("dir")).expect("mkdir");
        let deep_victim = outside.path().join("dir/also-precious");
        old_file(&deep_victim, 4096);

        let tree = tempfile::tempdir().expect("temp dir");
        let root = tree.path();
        old_file(&root.join("old"), 64 * 1024);
        fs::write(root.join("new"), b"fresh").expect("write");
        fs::create_dir(root.join("sub")).expect("mkdir");
        old_file(&root.join("sub/old-inner"), 8192);
        fs::create_dir(root.join("keepdir")).expect("mkdir");
        fs::write(root.join("keepdir/new-inner"), b"fresh").expect("write");
        // Trap 1: an old symlink to a file outside: the link goes, the target stays.
        symlink(&victim, root.join("link-out")).expect("symlink");
        // Trap 2: a symlinked directory: never descended.
        symlink(outside.path().join("dir"), root.join("dir-link")).expect("symlink");
        for link in ["link-out", "dir-link"] {
            let when = SystemTime::now() - TWO_HOURS;
            let secs = when
                .duration_since(UNIX_EPOCH)
                .expect("after epoch")
                .as_secs() as i64;
            let at = rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            };
            let times = rustix::fs::Timestamps {
                last_access: at,
                last_modification: at,
            };
            // AT_SYMLINK_NOFOLLOW touches the link itself.
            rustix::fs::utimensat(
                rustix::fs::CWD,
                root.join(link),
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .expect("utimensat on the link");
        }
        // An old file this process holds open.
        let held_path = root.join("held");
        old_file(&held_path, 4096);
        let held = fs::File::open(&held_path).expect("open");
        age(&root.join("sub"), TWO_HOURS);

        // Dry run first: counts, changes nothing.
        let (text, errors) = clean_temp(Path::new("/proc"), &cleanup(root, true)).expect("dry run");
        assert!(!errors, "{text}");
        assert!(
            text.contains("would delete 2 file(s), 2 symlink(s), 1 empty dir(s)"),
            "{text}"
        );
        assert!(root.join("old").exists() && root.join("sub/old-inner").exists());

        let (text, errors) = clean_temp(Path::new("/proc"), &cleanup(root, false)).expect("cleans");
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
    fn a_root_swapped_for_a_symlink_after_the_check_is_refused_not_followed() {
        let tree = tempfile::tempdir().expect("temp dir");
        let base = fs::canonicalize(tree.path()).expect("canonical");
        let victim_dir = base.join("victim");
        fs::create_dir(&victim_dir).expect("mkdir");
        let victim = victim_dir.join("precious");
        old_file(&victim, 4096);
        let root = base.join("root");
        fs::create_dir(&root).expect("mkdir");
        old_file(&root.join("old"), 4096);
        let checked = check_temp_root(&root).expect("a real directory");
        assert_eq!(checked, root);
        let config = cleanup(&checked, false);

        // Another user moves the root away and plants a symlink in its place.
        fs::rename(&root, base.join("moved")).expect("rename");
        symlink(&victim_dir, &root).expect("symlink");
        let (text, errors) = clean_temp(Path::new("/proc"), &config).expect("runs");
        assert!(errors, "a refused root is an error: {text}");
        assert!(
            text.contains(&format!("temp root {}: is a symlink", root.display())),
            "{text}"
        );
        assert!(victim.exists(), "the symlink's target is untouched");

        // A directory higher up swapped instead: the root's path now resolves elsewhere.
        fs::remove_file(&root).expect("unlink");
        fs::rename(base.join("moved"), &root).expect("rename back");
        let deep = base.join("a/root");
        fs::create_dir_all(&deep).expect("mkdir");
        old_file(&deep.join("old"), 4096);
        let config = cleanup(&check_temp_root(&deep).expect("valid"), false);
        fs::rename(base.join("a"), base.join("a-moved")).expect("rename");
        fs::create_dir_all(base.join("elsewhere/root")).expect("mkdir");
        old_file(&base.join("elsewhere/root/old"), 4096);
        symlink(base.join("elsewhere"), base.join("a")).expect("symlink");
        let (text, errors) = clean_temp(Path::new("/proc"), &config).expect("runs");
        assert!(errors, "{text}");
        assert!(
            text.contains("now resolves to") && text.contains("skipped"),
            "{text}"
        );
        assert!(
            base.join("elsewhere/root/old").exists(),
            "the swapped-in target is untouched"
        );
        assert!(base.join("a-moved/root/old").exists());
    }
}
