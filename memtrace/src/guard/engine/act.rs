//! What a decision did, as a type: the log, the trace's guard events, the notices and the
//! metrics all name it through [`Act::as_str`], and nothing matches decisions as text.
use serde::Serialize;

/// What a decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
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

#[cfg(test)]
mod tests {
    //! Names are stable (they are in traces and hook environments).
    use super::*;

    #[test]
    fn names_are_stable_and_only_tree_actions_are_told() {
        let all = [
            Act::Level,
            Act::Warn,
            Act::Reclaim,
            Act::Suspend,
            Act::Resume,
            Act::Wait,
            Act::Keep,
            Act::Kill,
        ];
        let names: Vec<&str> = all.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "level", "warn", "reclaim", "suspend", "resume", "wait", "keep", "kill"
            ]
        );
        for act in all {
            assert_eq!(
                serde_json::to_string(&act).expect("json"),
                format!("\"{act}\"")
            );
        }
        let told: Vec<Act> = all.into_iter().filter(|a| a.tells()).collect();
        assert_eq!(told, [Act::Suspend, Act::Resume, Act::Keep, Act::Kill]);
        assert!(Act::Wait.reports() && !Act::Wait.tells());
    }
}
