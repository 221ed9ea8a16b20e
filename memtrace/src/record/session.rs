//! One recording session: takes samples (the GPU source joined into each: per-process GPU
//! memory and the devices), keeps the traced process tree (the root and every
//! descendant, found through ppid, exited ones included), writes samples and events to the
//! trace, runs the hooks (the guard), and keeps the open stage for the `[Memory]` lines. For a
//! process tree each sample also records the tree's proportional memory ([`tree_pss`]), which
//! counts the copy-on-write pages of forked workers once; the `[Memory]` lines use it. A mark
//! matched to the write that carried it ([`Boundary::Written`]) puts the writer's counters at
//! that write into its boundary sample ([`at_write`]).
use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use memtrace_common::{PipeWrite, ProcStats};

use super::{Mark, RunHook, exact_marks::Boundary};
use crate::{
    collect::{
        model::Snapshot,
        sampler::{Sampler, sample_from_stats},
        tracer::RssMembers,
    },
    host::units::human_bytes,
    record::trace::{Act, Event, TraceWriter},
};

/// What is traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceScope {
    /// Every process on the host.
    All,
    /// The process tree rooted at this pid.
    Tree(u32),
}

/// The stage now running.
#[derive(Debug, Clone)]
struct OpenStage {
    stage: String,
    clip: Option<String>,
    host_start: u64,
    gpu_start: Option<u64>,
    host_peak: u64,
}

/// Sampling, filtering and writing for `run` and `record`.
pub struct Session {
    sampler: Sampler,
    /// The GPU source, paced at the sampling interval; joined into every sample.
    writer: TraceWriter,
    scope: TraceScope,
    tree: HashSet<u32>,
    comms: HashMap<u32, String>,
    hooks: Vec<Box<dyn RunHook>>,
    open: Option<OpenStage>,
    memory_lines: bool,
    guard_actions: Vec<Event>,
    last_tree_alive: bool,
    last_totals: (u64, Option<u64>),
    last_time: u64,
}

/// What a finished session reports.
#[derive(Debug)]
pub struct Finished {
    /// Trace size.
    pub bytes: u64,
    /// Samples written.
    pub samples: u64,
    /// Guard decisions that suspended or killed something, picked by their typed action.
    pub guard_actions: Vec<Event>,
}

/// Whether `event` is a guard decision that suspended or killed something (or tried to, or
/// would have in a dry run: its outcome says which), for `run`'s closing lines.
fn holds_or_kills(event: &Event) -> bool {
    matches!(
        event,
        Event::GuardDecision {
            action: Act::Suspend | Act::Kill,
            ..
        }
    )
}

/// Σ anon + shmem + swap and Σ GPU of the live processes of a (filtered) snapshot.
pub fn totals(snapshot: &Snapshot) -> (u64, Option<u64>) {
    let mut gpu = None::<u64>;
    let mut host = 0;
    for p in snapshot.procs.iter().filter(|p| !p.exited) {
        host += p.footprint_bytes();
        if let Some(g) = p.gpu_bytes {
            gpu = Some(gpu.unwrap_or(0) + g);
        }
    }
    (host, gpu)
}

/// Σ proportional anon + shmem + swap of the live processes of a tree's snapshot (copy-on-write
/// pages shared by forked processes count once); a process whose rollup cannot be read counts
/// with its anon + shmem + swap. Read parents before children (by pid) and given up when a
/// process is gone by the time it is read: the rollups are not one atomic view, and a parent
/// read as sole owner after its workers were read as sharers (workers exiting) would count the
/// shared pages again. `None` then, or when no rollup could be read at all.
///
/// `writer` is the process whose entry holds its counters at the write of a mark line
/// ([`at_write`]): its share is taken with that anonymous memory, not the rollup's (later) one.
pub fn tree_pss(snapshot: &Snapshot, writer: Option<u32>) -> Option<u64> {
    use crate::host::smaps::{Pss, read_rollup};
    let proc_root = std::path::Path::new("/proc");
    let mut live: Vec<_> = snapshot.procs.iter().filter(|p| !p.exited).collect();
    live.sort_by_key(|p| p.pid);
    let (mut sum, mut read) = (0u64, false);
    for p in live {
        match read_rollup(proc_root, p.pid) {
            Ok(rollup) => {
                let bytes = if writer == Some(p.pid) {
                    rollup.footprint_with_anon(p.anon_bytes)
                } else {
                    rollup.footprint()
                };
                sum = sum.saturating_add(bytes);
                read = true;
            }
            Err(Pss::Gone) => return None,
            Err(_) => sum = sum.saturating_add(p.footprint_bytes()),
        }
    }
    read.then_some(sum)
}

/// Puts `write`'s counters (the writer's at its write of a mark line) into the writer's entry
/// of `snapshot`; the writer, or `None` (nothing changed) when it is not in the snapshot.
pub fn at_write(snapshot: &mut Snapshot, write: &PipeWrite, members: RssMembers) -> Option<u32> {
    let p = snapshot
        .procs
        .iter_mut()
        .find(|p| p.pid == write.tgid && !p.exited)?;
    let stats = ProcStats {
        rss_bytes: write.rss_bytes,
        ..ProcStats::ZERO
    };
    let then = sample_from_stats(write.tgid, &stats, members);
    p.rss_bytes = then.rss_bytes;
    p.anon_bytes = then.anon_bytes;
    p.file_bytes = then.file_bytes;
    p.shmem_bytes = then.shmem_bytes;
    p.swap_bytes = then.swap_bytes;
    Some(write.tgid)
}

impl Session {
    /// A session writing to `writer`; `memory_lines` prints a `[Memory]` line per stage.
    pub fn new(
        sampler: Sampler,
        writer: TraceWriter,
        scope: TraceScope,
        hooks: Vec<Box<dyn RunHook>>,
        memory_lines: bool,
    ) -> Self {
        let tree = match scope {
            TraceScope::Tree(root) => HashSet::from([root]),
            TraceScope::All => HashSet::new(),
        };
        Self {
            sampler,
            writer,
            scope,
            tree,
            comms: HashMap::new(),
            hooks,
            open: None,
            memory_lines,
            guard_actions: Vec::new(),
            last_tree_alive: true,
            last_totals: (0, None),
            last_time: 0,
        }
    }

    /// Whether any process of the tree was alive at the last sample.
    pub fn tree_alive(&self) -> bool {
        self.last_tree_alive
    }

    /// Takes a sample now, writes it and what it implies; returns its time.
    pub fn tick(&mut self) -> anyhow::Result<u64> {
        self.take(false, None)
    }

    /// [`Self::tick`], with a fresh GPU sample when `fresh` (at a mark) instead of the paced one,
    /// and the writer's counters at `written`, the write of a mark line.
    fn take(&mut self, fresh: bool, written: Option<&PipeWrite>) -> anyhow::Result<u64> {
        let full = if fresh {
            self.sampler.sample_fresh_gpu()
        } else {
            self.sampler.sample()
        }
        .context("sampling")?;
        let time = full.time_unix_ms;
        self.last_time = time;
        let mut events = Vec::new();
        let mut mine = self.filter(&full, &mut events);
        let members = self.sampler.tracer().map(|t| t.members());
        let writer = match (written, members) {
            (Some(write), Some(members)) => at_write(&mut mine, write, members),
            _ => None,
        };
        self.writer.sample(&mine).context("writing the trace")?;
        let (mut host, gpu) = totals(&mine);
        if let TraceScope::Tree(_) = self.scope
            && let Some(pss_bytes) = tree_pss(&mine, writer)
        {
            host = pss_bytes;
            events.push(Event::TreeMemory { pss_bytes });
        }
        self.last_totals = (host, gpu);
        if let Some(open) = &mut self.open {
            open.host_peak = open.host_peak.max(host);
        }
        for kill in &full.oom_kills {
            events.push(Event::OomKill {
                pid: kill.pid,
                comm: kill.comm.clone(),
                rss_bytes: kill.rss_bytes,
            });
        }
        let tree: Vec<u32> = mine
            .procs
            .iter()
            .filter(|p| !p.exited)
            .map(|p| p.pid)
            .collect();
        self.last_tree_alive = self.scope == TraceScope::All || !tree.is_empty();
        for hook in &mut self.hooks {
            events.extend(hook.on_snapshot(&full, &tree));
        }
        self.write_events(time, events)?;
        Ok(time)
    }

    /// A terminating signal was forwarded to the pipeline: the hooks release what they hold.
    pub fn terminating(&mut self) -> anyhow::Result<()> {
        let mut events = Vec::new();
        for hook in &mut self.hooks {
            events.extend(hook.on_terminate());
        }
        let time = self.tick()?;
        self.write_events(time, events)
    }

    fn write_events(&mut self, time: u64, events: Vec<Event>) -> anyhow::Result<()> {
        for event in events {
            if holds_or_kills(&event) {
                self.guard_actions.push(event.clone());
            }
            self.writer
                .event(time, &event)
                .context("writing the trace")?;
        }
        Ok(())
    }

    /// Keeps the tree's processes (all of them for [`TraceScope::All`]) and notes joins and exits.
    fn filter(&mut self, full: &Snapshot, events: &mut Vec<Event>) -> Snapshot {
        let TraceScope::Tree(_) = self.scope else {
            return full.clone();
        };
        loop {
            let before = self.tree.len();
            for p in &full.procs {
                if self.tree.contains(&p.ppid) && !p.exited {
                    self.tree.insert(p.pid);
                }
            }
            if self.tree.len() == before {
                break;
            }
        }
        let mut mine = Snapshot {
            procs: Vec::new(),
            oom_kills: Vec::new(),
            ..full.clone()
        };
        for p in full.procs.iter().filter(|p| self.tree.contains(&p.pid)) {
            if p.exited {
                events.push(Event::Exit {
                    pid: p.pid,
                    comm: p.comm.clone().to_string(),
                    oom_killed: p.oom_killed,
                });
                self.comms.remove(&p.pid);
            } else if self.comms.get(&p.pid).map(String::as_str) != Some(&*p.comm) {
                events.push(Event::Exec {
                    pid: p.pid,
                    ppid: p.ppid,
                    comm: p.comm.clone().to_string(),
                });
                self.comms.insert(p.pid, p.comm.clone().to_string());
            }
            mine.procs.push(p.clone());
        }
        for p in full.procs.iter().filter(|p| p.exited) {
            self.tree.remove(&p.pid);
        }
        mine
    }

    /// Applies a stage mark: a fresh sample first (GPU included), so the boundary is measured
    /// at the mark; at the write of the mark line for [`Boundary::Written`].
    pub fn mark(&mut self, mark: Mark, boundary: Boundary) -> anyhow::Result<()> {
        let written = match &boundary {
            Boundary::Written(write) => Some(write),
            _ => None,
        };
        let time = self.take(true, written)?;
        let (host, gpu) = self.current_totals();
        let mut events = Vec::new();
        if let Some(open) = self.open.take() {
            self.memory_line(&open, host, gpu);
            events.push(Event::StageEnd {
                stage: open.stage,
                clip: open.clip,
            });
        }
        if let Mark::Begin {
            stage,
            clip,
            source,
        } = mark
        {
            self.open = Some(OpenStage {
                stage: stage.clone(),
                clip: clip.clone(),
                host_start: host,
                gpu_start: gpu,
                host_peak: host,
            });
            events.push(Event::StageBegin {
                stage,
                clip,
                source: source.to_owned(),
                timing: boundary.timing(),
            });
        }
        self.write_events(time, events)
    }

    fn current_totals(&self) -> (u64, Option<u64>) {
        self.last_totals
    }

    fn memory_line(&self, open: &OpenStage, host: u64, gpu: Option<u64>) {
        if !self.memory_lines {
            return;
        }
        let clip = open
            .clip
            .as_ref()
            .map(|c| format!("clip {c} "))
            .unwrap_or_default();
        let delta = host as i64 - open.host_start as i64;
        let mut line = format!(
            "[Memory] {clip}{}: before {}, after {} ({}{}), peak {}",
            open.stage,
            human_bytes(open.host_start),
            human_bytes(host),
            if delta < 0 { "-" } else { "+" },
            human_bytes(delta.unsigned_abs()),
            human_bytes(open.host_peak.max(host)),
        );
        if let (Some(a), Some(b)) = (open.gpu_start, gpu) {
            line.push_str(&format!(
                "; GPU before {}, after {}",
                human_bytes(a),
                human_bytes(b)
            ));
        }
        eprintln!("{line}");
    }

    /// Ends the open stage, notes how the command ended, runs the hooks' last words and closes
    /// the trace.
    pub fn finish(mut self, end: Option<Event>) -> anyhow::Result<Finished> {
        // The open stage ends at the last sample that saw the tree, not after it exited.
        if let Some(open) = self.open.take() {
            let (host, gpu) = self.current_totals();
            self.memory_line(&open, host, gpu);
            let time = self.last_time;
            let event = Event::StageEnd {
                stage: open.stage,
                clip: open.clip,
            };
            self.write_events(time, vec![event])?;
        }
        let time = self.tick()?;
        let mut events = Vec::new();
        for hook in &mut self.hooks {
            events.extend(hook.finish());
        }
        events.extend(end);
        self.write_events(time, events)?;
        let samples = self.writer.samples();
        let summary = serde_json::json!({ "samples": samples });
        let bytes = self.writer.finish(&summary).context("closing the trace")?;
        Ok(Finished {
            bytes,
            samples,
            guard_actions: self.guard_actions,
        })
    }
}

#[cfg(test)]
mod tests {
    //! `run`'s closing lines keep the guard's holds and kills, picked by their typed action.
    use super::*;
    use crate::record::trace::Outcome;

    use crate::record::trace::decision::test_event as decision;

    #[test]
    fn holds_and_kills_are_picked_by_their_action() {
        let picked: Vec<Act> = Act::ALL
            .into_iter()
            .filter(|&act| holds_or_kills(&decision(act, Some(Outcome::Done))))
            .collect();
        assert_eq!(picked, [Act::Suspend, Act::Kill]);
        assert!(
            holds_or_kills(&decision(Act::Suspend, None)),
            "an older trace's"
        );
        assert!(holds_or_kills(&decision(Act::Kill, Some(Outcome::Failed))));
        assert!(!holds_or_kills(&Event::OomKill {
            pid: 7,
            comm: "suspend-kill".to_owned(),
            rss_bytes: 1,
        }));
    }
}
