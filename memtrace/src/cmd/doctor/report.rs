//! What `memtrace doctor` works with and prints: where checks read ([`SysRoots`]), their
//! results ([`Check`], [`Severity`]), the safe fixes ([`Action`], [`Applied`]) and the text form.
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where the checks read: the host's /proc, /sys and /etc, or a test tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysRoots {
    /// procfs.
    pub proc: PathBuf,
    /// sysfs.
    pub sys: PathBuf,
    /// Configuration (fstab).
    pub etc: PathBuf,
}

impl SysRoots {
    /// The running host.
    pub fn host() -> Self {
        Self::under(Path::new("/"))
    }

    /// `ROOT/proc`, `ROOT/sys`, `ROOT/etc`.
    pub fn under(root: &Path) -> Self {
        Self {
            proc: root.join("proc"),
            sys: root.join("sys"),
            etc: root.join("etc"),
        }
    }
}

/// How a check came out, least to most serious.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// As advised.
    Ok,
    /// Worth knowing, nothing to fix.
    Info,
    /// Works, but should be changed.
    Warn,
    /// Broken or missing.
    Fail,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Fail => "FAIL",
        }
    }
}

/// A safe, reversible fix: write `value` into `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Action {
    /// What is changed, for the output.
    pub label: String,
    /// The file written.
    pub path: PathBuf,
    /// The new value.
    pub value: String,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it came out.
    pub level: Severity,
    /// What was found.
    pub detail: String,
    /// How to fix it, if there is something to fix.
    pub fix: Option<String>,
    /// What `--apply` would do.
    pub actions: Vec<Action>,
}

impl Check {
    /// A check without fix.
    pub fn new(name: &'static str, level: Severity, detail: String) -> Self {
        Self {
            name,
            level,
            detail,
            fix: None,
            actions: Vec::new(),
        }
    }

    /// Adds the fix in words.
    pub fn with_fix(mut self, fix: String) -> Self {
        self.fix = Some(fix);
        self
    }

    /// Adds a fix `--apply` may perform.
    pub fn with_action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }
}

/// One fix applied (or attempted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// What was changed.
    pub label: String,
    /// The value before.
    pub old: String,
    /// The value written.
    pub new: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What `doctor --json` prints.
#[derive(Debug, Serialize)]
pub struct DoctorReport {
    /// Every check.
    pub checks: Vec<Check>,
    /// Fixes applied with `--apply`.
    pub applied: Vec<Applied>,
}

impl DoctorReport {
    /// Whether the exit status should be non-zero.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == Severity::Fail)
            || self.applied.iter().any(|a| a.error.is_some())
    }
}

/// The text form: one line per check, then the fixes applied and a summary.
pub fn render(report: &DoctorReport, applying: bool) -> String {
    let mut out = String::new();
    for check in &report.checks {
        out.push_str(&format!(
            "{:<4}  {:<22} {}",
            check.level.label(),
            check.name,
            check.detail
        ));
        if let Some(fix) = &check.fix {
            out.push_str(&format!(" -> fix: {fix}"));
        }
        out.push('\n');
    }
    for applied in &report.applied {
        match &applied.error {
            None => out.push_str(&format!(
                "applied {}: {} → {}\n",
                applied.label, applied.old, applied.new
            )),
            Some(err) => out.push_str(&format!("could not apply {}: {err}\n", applied.label)),
        }
    }
    let count = |level| report.checks.iter().filter(|c| c.level == level).count();
    out.push_str(&format!(
        "{} checks: {} OK, {} INFO, {} WARN, {} FAIL",
        report.checks.len(),
        count(Severity::Ok),
        count(Severity::Info),
        count(Severity::Warn),
        count(Severity::Fail)
    ));
    let fixable = report
        .checks
        .iter()
        .any(|c| c.level != Severity::Ok && !c.actions.is_empty());
    if fixable && !applying {
        out.push_str(" (`sudo memtrace doctor --apply` applies the safe fixes)");
    }
    out.push('\n');
    out
}
