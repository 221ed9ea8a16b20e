//! The reclaim rung: give back what the kernel can drop without harming anyone — the page
//! cache (machine scope and v1 cgroups, after sync), `memory.reclaim` on a v2 cgroup, and old
//! temp files in the configured directories (via the walk `memtrace clean` uses: no symlinks
//! followed, never outside the roots, open files skipped).
//!
//! A step that cannot work here — `vm.drop_caches` on a read-only /proc/sys or refused
//! (EROFS, EPERM, EACCES), `memory.reclaim` on a read-only cgroupfs or a kernel without it — is
//! logged once with the reason and skipped from then on ([`Reclaimer`] remembers it): a
//! container's guard never retries it every round.
use std::{collections::HashMap, fs, io, path::Path};

use crate::{
    collect::scope::{Scope, Usage},
    guard::config::Actions,
    host::{
        cgroup::Version,
        reclaim::{ReclaimError, TempCleanup, clean_temp, drop_caches},
    },
};

/// A reclaim step that may turn out impossible where the guard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `vm.drop_caches`.
    DropCaches,
    /// `memory.reclaim` of a v2 cgroup.
    CgroupReclaim,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Self::DropCaches => "drop caches",
            Self::CgroupReclaim => "memory.reclaim",
        }
    }

    /// Why the step can never work here, in words, for the one line that says so.
    fn why_not(self) -> &'static str {
        match self {
            Self::DropCaches => {
                "vm.drop_caches cannot be written here (a container's /proc/sys is read-only \
                 or refused; the host's own reclaim still runs)"
            }
            Self::CgroupReclaim => {
                "memory.reclaim cannot be written here (read-only cgroupfs, no permission, or \
                 a kernel before 5.19)"
            }
        }
    }
}

/// Whether a failed write means the step can never work here rather than "not this time".
pub fn permanent(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EROFS | libc::EPERM | libc::EACCES | libc::ENOENT)
    )
}

/// The reclaim rung, remembering which steps cannot work here.
#[derive(Debug, Default)]
pub struct Reclaimer {
    /// Steps found impossible, with the error that showed it.
    skipped: HashMap<Step, String>,
}

impl Reclaimer {
    /// Whether `step` was found impossible here.
    pub fn skips(&self, step: Step) -> bool {
        self.skipped.contains_key(&step)
    }

    /// Runs every enabled reclaim step once; returns one log line per step that ran or was
    /// found impossible just now (later rounds skip it silently).
    pub fn run(
        &mut self,
        scope: &Scope,
        usage: &Usage,
        actions: &Actions,
        proc_root: &Path,
        dry_run: bool,
    ) -> Vec<String> {
        let mut log = Vec::new();
        let step = match scope {
            Scope::Cgroup {
                version: Version::V2,
                ..
            } if actions.cgroup_reclaim => Some(Step::CgroupReclaim),
            _ if actions.drop_caches => Some(Step::DropCaches),
            _ => None,
        };
        if let Some(step) = step.filter(|step| !self.skips(*step)) {
            let line = match (step, scope) {
                (Step::CgroupReclaim, Scope::Cgroup { path, .. }) => {
                    self.cgroup_reclaim(path, usage, dry_run)
                }
                _ => self.drop_caches(proc_root, dry_run),
            };
            log.push(line);
        }
        if !actions.temp_dirs.is_empty() {
            let cleanup = TempCleanup {
                roots: actions.temp_dirs.clone(),
                older_than: actions.temp_older_than,
                dry_run,
            };
            match clean_temp(proc_root, &cleanup) {
                Ok((text, _)) => log.extend(text.lines().map(str::to_owned)),
                Err(err) => log.push(format!("temp cleanup: {err:#}")),
            }
        }
        log
    }

    /// Remembers that `step` cannot work; the line that says so, once.
    fn skip(&mut self, step: Step, err: &dyn std::fmt::Display) -> String {
        let line = format!(
            "{}: {err}; skipped from now on: {}",
            step.name(),
            step.why_not()
        );
        self.skipped.insert(step, err.to_string());
        line
    }

    fn drop_caches(&mut self, proc_root: &Path, dry_run: bool) -> String {
        let knob = crate::host::sysctl::path_of(proc_root, "vm.drop_caches");
        if dry_run && let Err(errno) = rustix::fs::access(&knob, rustix::fs::Access::WRITE_OK) {
            let err = io::Error::from(errno);
            if permanent(&err) {
                return self.skip(Step::DropCaches, &format!("{}: {err}", knob.display()));
            }
        }
        match drop_caches(proc_root, dry_run) {
            Ok(text) => text.trim_end().to_owned(),
            Err(ReclaimError::Sysctl(err)) if err.io_error().is_some_and(permanent) => {
                self.skip(Step::DropCaches, &err)
            }
            Err(err) => format!("drop caches: {err:#}"),
        }
    }

    fn cgroup_reclaim(&mut self, cgroup: &Path, usage: &Usage, dry_run: bool) -> String {
        let file = cgroup.join("memory.reclaim");
        // Ask for a quarter of what is in use; the kernel reclaims what it can (EAGAIN when it
        // could not reach the target, which is fine).
        let amount = usage.used_bytes / 4;
        let opened = fs::OpenOptions::new().write(true).open(&file);
        let written = opened.and_then(|mut f| {
            if dry_run {
                Ok(())
            } else {
                io::Write::write_all(&mut f, amount.to_string().as_bytes())
            }
        });
        match written {
            Ok(()) if dry_run => format!("dry run: would write {amount} to {}", file.display()),
            Ok(()) => format!("memory.reclaim {amount} bytes on {}", cgroup.display()),
            Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => format!(
                "memory.reclaim on {}: reclaimed less than asked",
                cgroup.display()
            ),
            Err(err) if permanent(&err) => {
                self.skip(Step::CgroupReclaim, &format!("{}: {err}", file.display()))
            }
            Err(err) => format!("memory.reclaim on {}: {err}", cgroup.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! A step that cannot work is said once and then skipped; one that works keeps running.
    use std::time::Duration;

    use super::*;

    fn actions(drop_caches: bool) -> Actions {
        let mut actions = crate::guard::config::GuardConfig::default_config()
            .expect("default config")
            .actions;
        actions.drop_caches = drop_caches;
        actions.cgroup_reclaim = true;
        actions.temp_dirs = Vec::new();
        actions.temp_older_than = Duration::from_secs(3600);
        actions
    }

    fn usage() -> Usage {
        Usage {
            used_bytes: 400 << 20,
            limit_bytes: 512 << 20,
        }
    }

    #[test]
    fn drop_caches_that_cannot_work_is_said_once_then_skipped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // A /proc without vm.drop_caches (as if /proc/sys were not there to write).
        let proc_root = tmp.path();
        fs::write(
            proc_root.join("meminfo"),
            "MemTotal: 1000 kB\nMemFree: 1 kB\nMemAvailable: 500 kB\nCached: 100 kB\n",
        )
        .expect("meminfo");
        let mut reclaimer = Reclaimer::default();
        for dry_run in [false, true] {
            let mut reclaimer = Reclaimer::default();
            let first = reclaimer.run(
                &Scope::Machine,
                &usage(),
                &actions(true),
                proc_root,
                dry_run,
            );
            assert_eq!(first.len(), 1, "{first:?}");
            assert!(
                first[0].starts_with("drop caches: ")
                    && first[0].contains("No such file")
                    && first[0].contains("skipped from now on"),
                "{first:?}"
            );
            assert!(reclaimer.skips(Step::DropCaches));
            for _ in 0..3 {
                let again = reclaimer.run(
                    &Scope::Machine,
                    &usage(),
                    &actions(true),
                    proc_root,
                    dry_run,
                );
                assert!(again.is_empty(), "never retried: {again:?}");
            }
        }
        // A knob that takes the write keeps being used.
        fs::create_dir_all(proc_root.join("sys/vm")).expect("mkdir");
        fs::write(proc_root.join("sys/vm/drop_caches"), "0\n").expect("knob");
        for _ in 0..2 {
            let lines = reclaimer.run(&Scope::Machine, &usage(), &actions(true), proc_root, false);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].starts_with("drop caches: page cache"), "{lines:?}");
        }
        assert!(!reclaimer.skips(Step::DropCaches));
        assert!(
            reclaimer
                .run(&Scope::Machine, &usage(), &actions(false), proc_root, false)
                .is_empty(),
            "switched off: nothing"
        );
    }

    #[test]
    fn cgroup_reclaim_that_cannot_work_is_said_once_then_skipped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cgroup = tmp.path().join("cg");
        fs::create_dir_all(&cgroup).expect("mkdir");
        let scope = Scope::Cgroup {
            path: cgroup.clone(),
            version: Version::V2,
        };
        let mut reclaimer = Reclaimer::default();
        // No memory.reclaim (a kernel before 5.19, or nothing writable).
        let first = reclaimer.run(&scope, &usage(), &actions(false), tmp.path(), false);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].starts_with("memory.reclaim: ") && first[0].contains("skipped from now on"),
            "{first:?}"
        );
        assert!(!cgroup.join("memory.reclaim").exists(), "never created");
        assert!(
            reclaimer
                .run(&scope, &usage(), &actions(false), tmp.path(), false)
                .is_empty()
        );
        // Where it exists, it is written every round.
        let mut works = Reclaimer::default();
        fs::write(cgroup.join("memory.reclaim"), "").expect("file");
        for _ in 0..2 {
            let lines = works.run(&scope, &usage(), &actions(false), tmp.path(), false);
            assert_eq!(
                lines,
                vec![format!(
                    "memory.reclaim {} bytes on {}",
                    100 << 20,
                    cgroup.display()
                )]
            );
        }
    }
}
