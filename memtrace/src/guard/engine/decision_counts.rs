//! How many decisions the engine took, by action and outcome: every [`Decision`] a round or a
//! request by hand returns is counted once, as it is handed to the loop that logs it. The
//! metrics' `memtrace_guard_decisions_total{action,outcome}` is this table.
use serde::Serialize;

use super::{Act, Decision, Outcome};

/// Decisions by action and outcome, since the engine started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecisionCounts {
    /// One row per [`Act::ALL`], one column per [`Outcome::ALL`].
    table: [[u64; Outcome::ALL.len()]; Act::ALL.len()],
}

/// Where `act` and `outcome` sit in the table (both enums are fieldless, declared in their
/// `ALL` order).
fn cell(act: Act, outcome: Outcome) -> (usize, usize) {
    (act as usize, outcome as usize)
}

impl DecisionCounts {
    /// Counts one decision.
    pub fn count(&mut self, decision: &Decision) {
        let (row, column) = cell(decision.action, decision.outcome);
        if let Some(n) = self
            .table
            .get_mut(row)
            .and_then(|columns| columns.get_mut(column))
        {
            *n = n.saturating_add(1);
        }
    }

    /// Counts each of `decisions`.
    pub fn count_all(&mut self, decisions: &[Decision]) {
        for decision in decisions {
            self.count(decision);
        }
    }

    /// How many decisions did `act` with `outcome`.
    pub fn get(&self, act: Act, outcome: Outcome) -> u64 {
        let (row, column) = cell(act, outcome);
        self.table
            .get(row)
            .and_then(|columns| columns.get(column))
            .copied()
            .unwrap_or(0)
    }

    /// Every (action, outcome, count), zeros included, actions and outcomes in their `ALL`
    /// order.
    pub fn iter(&self) -> impl Iterator<Item = (Act, Outcome, u64)> + '_ {
        Act::ALL.into_iter().flat_map(move |act| {
            Outcome::ALL
                .into_iter()
                .map(move |outcome| (act, outcome, self.get(act, outcome)))
        })
    }
}

#[cfg(test)]
mod tests {
    //! Each decision lands in its own cell; the order of the cells is the enums'.
    use super::*;

    use crate::guard::engine::test_decision as decision;

    #[test]
    fn counts_each_action_and_outcome_apart() {
        for (i, act) in Act::ALL.into_iter().enumerate() {
            assert_eq!(cell(act, Outcome::Reported).0, i, "{act} is row {i}");
        }
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(cell(Act::Level, outcome).1, i, "{outcome} is column {i}");
        }
        let mut counts = DecisionCounts::default();
        counts.count_all(&[
            decision(Act::Suspend, Outcome::Done),
            decision(Act::Suspend, Outcome::Done),
            decision(Act::Suspend, Outcome::Failed),
            decision(Act::Kill, Outcome::DryRun),
        ]);
        assert_eq!(counts.get(Act::Suspend, Outcome::Done), 2);
        assert_eq!(counts.get(Act::Suspend, Outcome::Failed), 1);
        assert_eq!(counts.get(Act::Kill, Outcome::DryRun), 1);
        assert_eq!(counts.get(Act::Kill, Outcome::Done), 0);
        let all: Vec<(Act, Outcome, u64)> = counts.iter().collect();
        assert_eq!(all.len(), Act::ALL.len() * Outcome::ALL.len());
        assert_eq!(all.iter().map(|(_, _, n)| n).sum::<u64>(), 4);
        assert_eq!(all[0], (Act::Level, Outcome::Reported, 0));
    }
}
