//! Sub-stages: the processes a stage run started and the highest resident set each reached
//! while it ran. One index of every process's changes answers each run with binary searches,
//! so the report stays n log n however many runs, processes and exec events a trace holds.
use std::collections::{BTreeMap, HashMap};

use crate::record::trace::TraceData;

/// One write of a process in a sample: (sample index, max(peak RSS, RSS), exited).
type Change = (usize, u64, bool);

/// Every process's changes, by slot, and its slots, by pid.
#[derive(Debug, Default)]
pub struct SubStages {
    changes: HashMap<u32, Vec<Change>>,
    /// Per pid: (first sample that wrote it, slot), sorted.
    by_pid: HashMap<u32, Vec<(usize, u32)>>,
}

impl SubStages {
    /// Indexes `trace` (one pass over the samples' changes).
    pub fn new(trace: &TraceData) -> Self {
        let mut changes: HashMap<u32, Vec<Change>> = HashMap::new();
        for (index, sample) in trace.samples.iter().enumerate() {
            for (slot, v) in &sample.changed {
                changes
                    .entry(*slot)
                    .or_default()
                    .push((index, v.peak_rss.max(v.rss()), v.exited));
            }
        }
        let mut by_pid: HashMap<u32, Vec<(usize, u32)>> = HashMap::new();
        for (slot, list) in &changes {
            if let (Some(ident), Some((first, ..))) =
                (trace.idents.get(*slot as usize), list.first())
            {
                by_pid.entry(ident.pid).or_default().push((*first, *slot));
            }
        }
        for slots in by_pid.values_mut() {
            slots.sort_unstable();
        }
        Self { changes, by_pid }
    }

    /// The highest RSS of the process `pid` in samples `first..=last`: of the latest process
    /// with that pid sampled by `last`, from the value it carried into `first` (unless it had
    /// exited) to its last change by `last`. 0 when it was not sampled there.
    pub fn peak(&self, pid: u32, (first, last): (usize, usize)) -> u64 {
        let Some(slots) = self.by_pid.get(&pid) else {
            return 0;
        };
        let seen = slots.partition_point(|(at, _)| *at <= last);
        let Some(list) = seen
            .checked_sub(1)
            .and_then(|i| slots.get(i))
            .and_then(|(_, slot)| self.changes.get(slot))
        else {
            return 0;
        };
        let from = list.partition_point(|(at, ..)| *at <= first);
        let carried = from
            .checked_sub(1)
            .and_then(|i| list.get(i))
            .filter(|(at, _, exited)| !(*exited && *at < first))
            .map_or(0, |(_, rss, _)| *rss);
        let upto = list.partition_point(|(at, ..)| *at <= last);
        list.get(from..upto)
            .unwrap_or_default()
            .iter()
            .map(|(_, rss, _)| *rss)
            .fold(carried, u64::max)
    }

    /// The sub-stages of a run over samples `span` that started `execs` (pid, command): each
    /// command once, with the highest peak of its processes.
    pub fn children(&self, execs: &[(u32, String)], span: (usize, usize)) -> Vec<(String, u64)> {
        let mut peaks: HashMap<u32, u64> = HashMap::new();
        let mut found: BTreeMap<&str, u64> = BTreeMap::new();
        for (pid, comm) in execs {
            let peak = *peaks.entry(*pid).or_insert_with(|| self.peak(*pid, span));
            let entry = found.entry(comm).or_default();
            *entry = (*entry).max(peak);
        }
        found
            .into_iter()
            .map(|(comm, peak)| (comm.to_owned(), peak))
            .collect()
    }
}
