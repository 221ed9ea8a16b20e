//! A guard decision as a type: what it did ([`Act`]) and how it went ([`Outcome`]). The guard's
//! log, its notices and hooks (`MEMTRACE_ACTION`), the trace's guard events and the metrics all
//! name a decision through these, and nothing matches decisions as text. They live with the
//! trace format because the trace stores them (as their lowercase names, which older traces
//! already wrote for the action) and the readers below the guard decode them.
use serde::{Deserialize, Serialize};

/// What a decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    /// The level changed.
    Level,
    /// Warn: the top growers, logged.
    Warn,
    /// A reclaim pass.
    Reclaim,
    /// A tree was held.
    Suspend,
    /// A held tree was let go.
    Resume,
    /// Calm, but a held tree would not hold if resumed: it waits.
    Wait,
    /// A held tree is kept held (after `max_cycles` resumes, or by hand).
    Keep,
    /// A tree was killed.
    Kill,
}

impl Act {
    /// Every action, in this order (the metrics' series follow it).
    pub const ALL: [Self; 8] = [
        Self::Level,
        Self::Warn,
        Self::Reclaim,
        Self::Suspend,
        Self::Resume,
        Self::Wait,
        Self::Keep,
        Self::Kill,
    ];

    /// Its name in the log, the trace and the hooks' `MEMTRACE_ACTION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Level => "level",
            Self::Warn => "warn",
            Self::Reclaim => "reclaim",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Wait => "wait",
            Self::Keep => "keep",
            Self::Kill => "kill",
        }
    }

    /// Whether it only reports (logged as a warning, not an action on anything).
    pub fn reports(self) -> bool {
        matches!(self, Self::Level | Self::Warn | Self::Wait)
    }

    /// Whether the people are told (terminals, hooks): what happened to a held tree.
    pub fn tells(self) -> bool {
        matches!(self, Self::Suspend | Self::Resume | Self::Keep | Self::Kill)
    }
}

impl std::fmt::Display for Act {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a decision went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Only reported (a level change, a warning, a tree that waits or is kept).
    Reported,
    /// Done.
    Done,
    /// A dry run: nothing sent.
    DryRun,
    /// Tried, and it failed (the detail says why).
    Failed,
}

impl Outcome {
    /// Every outcome, in this order (the metrics' series follow it).
    pub const ALL: [Self; 4] = [Self::Reported, Self::Done, Self::DryRun, Self::Failed];

    /// Its name in the trace and the metrics' `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Done => "done",
            Self::DryRun => "dry_run",
            Self::Failed => "failed",
        }
    }

    /// Its words next to the action in reports and exports; `None` for [`Outcome::Reported`],
    /// which adds nothing to an action that only reports.
    pub fn words(self) -> Option<&'static str> {
        match self {
            Self::Reported => None,
            Self::Done => Some("done"),
            Self::DryRun => Some("dry run"),
            Self::Failed => Some("failed"),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How reports and exports name a guard decision: `action (level)`, with the outcome's
/// [words](Outcome::words) after the level when it has some (`suspend (suspend, dry run)`).
/// A decision from a trace older than outcomes has none.
pub fn label(action: Act, level: &str, outcome: Option<Outcome>) -> String {
    match outcome.and_then(Outcome::words) {
        Some(words) => format!("{action} ({level}, {words})"),
        None => format!("{action} ({level})"),
    }
}

/// A guard event for tests: a suspend-level decision on pids 7 and 8.
#[cfg(test)]
pub(crate) fn test_event(action: Act, outcome: Option<Outcome>) -> super::Event {
    super::Event::GuardDecision {
        level: "suspend".to_owned(),
        action,
        reason: "used 95 %".to_owned(),
        pids: vec![7, 8],
        outcome,
    }
}

#[cfg(test)]
mod tests;
