//! The interactive view's state, pure and unit-tested: the latest snapshot, the sort column and
//! order, the `/` regex filter, the tree view (a process under its parent, each row's memory
//! columns summed over its subtree), the per-process RSS history behind each row's sparkline and
//! the PSI history behind the header's. [`App::apply`] takes the [`Action`]s the keys map to.
use std::{
    cmp::Ordering,
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use regex::Regex;

use super::input::Action;
use crate::{
    cmd::top::held::GuardView,
    collect::{
        model::{ProcSample, Snapshot},
        source::SourceKind,
    },
};

/// Samples of history kept per process and for PSI.
pub const HISTORY: usize = 24;

/// A column of the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// Process id.
    Pid,
    /// Command name.
    Command,
    /// Resident set.
    Rss,
    /// Anonymous resident memory.
    Anon,
    /// File-backed resident memory.
    File,
    /// Shared memory.
    Shmem,
    /// Swapped out.
    Swap,
    /// RSS growth rate.
    Growth,
    /// Page faults per second.
    Faults,
    /// Time stalled in reclaim.
    Stall,
    /// Highest RSS seen.
    Peak,
    /// GPU memory.
    Gpu,
}

impl Column {
    /// Every column, in the table's order.
    pub const ALL: [Column; 12] = [
        Column::Pid,
        Column::Command,
        Column::Rss,
        Column::Anon,
        Column::File,
        Column::Shmem,
        Column::Swap,
        Column::Growth,
        Column::Faults,
        Column::Stall,
        Column::Peak,
        Column::Gpu,
    ];

    /// The header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::Pid => "PID",
            Column::Command => "COMMAND",
            Column::Rss => "RSS MiB",
            Column::Anon => "ANON",
            Column::File => "FILE",
            Column::Shmem => "SHMEM",
            Column::Swap => "SWAP",
            Column::Growth => "GROW MiB/s",
            Column::Faults => "FAULTS/s",
            Column::Stall => "STALL ms",
            Column::Peak => "PEAK MiB",
            Column::Gpu => "GPU MiB",
        }
    }

    /// Pid and command sort ascending first; amounts largest first.
    fn descending_first(self) -> bool {
        !matches!(self, Column::Pid | Column::Command)
    }

    fn index(self) -> usize {
        Column::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    /// The column `step` places to the right (wrapping), skipping GPU when there is none.
    fn step(self, step: isize, gpu: bool) -> Column {
        let shown = if gpu {
            Column::ALL.len()
        } else {
            Column::ALL.len() - 1
        };
        let count = shown as isize;
        let next = (self.index() as isize + step).rem_euclid(count);
        Column::ALL
            .get(next as usize)
            .copied()
            .unwrap_or(Column::Growth)
    }
}

/// One row of the table: a process, or in the tree view a process with its subtree's sums.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Process id.
    pub pid: u32,
    /// Depth in the tree (0 in the flat view).
    pub depth: usize,
    /// Whether it is the last of its siblings (for the tree's `└─`).
    pub last: bool,
    /// Command name.
    pub comm: Arc<str>,
    /// Exited during the interval.
    pub exited: bool,
    /// Processes summed into this row (1 in the flat view).
    pub processes: usize,
    /// Resident set, bytes.
    pub rss: u64,
    /// Anonymous, bytes.
    pub anon: u64,
    /// File-backed, bytes.
    pub file: u64,
    /// Shared memory, bytes.
    pub shmem: u64,
    /// Swapped out, bytes.
    pub swap: u64,
    /// RSS growth, bytes/s.
    pub growth: f64,
    /// Faults per second.
    pub faults: f64,
    /// Reclaim stall since tracing began, ms.
    pub stall_ms: f64,
    /// Own peak RSS, bytes (not summed: peaks of different moments do not add up).
    pub peak: u64,
    /// GPU memory, bytes, where known.
    pub gpu: Option<u64>,
    /// The process's own RSS history, oldest first.
    pub history: Vec<u64>,
}

impl Row {
    fn of(p: &ProcSample, history: Vec<u64>) -> Self {
        Self {
            pid: p.pid,
            depth: 0,
            last: false,
            comm: Arc::clone(&p.comm),
            exited: p.exited,
            processes: 1,
            rss: p.rss_bytes,
            anon: p.anon_bytes,
            file: p.file_bytes,
            shmem: p.shmem_bytes,
            swap: p.swap_bytes,
            growth: p.growth_bytes_per_s,
            faults: p.faults_per_s,
            stall_ms: p.reclaim_stall_ns as f64 / 1e6,
            peak: p.peak_rss_bytes,
            gpu: p.gpu_bytes,
            history,
        }
    }

    /// Adds a descendant's amounts.
    fn add(&mut self, other: &Row) {
        self.processes += other.processes;
        self.rss = self.rss.saturating_add(other.rss);
        self.anon = self.anon.saturating_add(other.anon);
        self.file = self.file.saturating_add(other.file);
        self.shmem = self.shmem.saturating_add(other.shmem);
        self.swap = self.swap.saturating_add(other.swap);
        self.growth += other.growth;
        self.faults += other.faults;
        self.stall_ms += other.stall_ms;
        self.gpu = match (self.gpu, other.gpu) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
    }

    /// The order by `column` (descending reverses it), ties by pid ascending.
    fn compare(&self, other: &Row, column: Column, descending: bool) -> Ordering {
        let by = match column {
            Column::Pid => self.pid.cmp(&other.pid),
            Column::Command => self.comm.cmp(&other.comm),
            Column::Rss => self.rss.cmp(&other.rss),
            Column::Anon => self.anon.cmp(&other.anon),
            Column::File => self.file.cmp(&other.file),
            Column::Shmem => self.shmem.cmp(&other.shmem),
            Column::Swap => self.swap.cmp(&other.swap),
            Column::Growth => self.growth.total_cmp(&other.growth),
            Column::Faults => self.faults.total_cmp(&other.faults),
            Column::Stall => self.stall_ms.total_cmp(&other.stall_ms),
            Column::Peak => self.peak.cmp(&other.peak),
            Column::Gpu => self.gpu.cmp(&other.gpu),
        };
        let by = if descending { by.reverse() } else { by };
        by.then(self.pid.cmp(&other.pid))
    }
}

/// The `/` filter: a regex matched against each process's command name and command line.
#[derive(Debug, Clone)]
pub struct Filter {
    /// What was typed.
    pub text: String,
    regex: Regex,
}

impl Filter {
    /// Compiles `text`; the error is one line.
    pub fn new(text: &str) -> Result<Self, String> {
        let regex = regex::RegexBuilder::new(text)
            .size_limit(1 << 20)
            .build()
            .map_err(|err| {
                err.to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })?;
        Ok(Self {
            text: text.to_owned(),
            regex,
        })
    }

    fn matches(&self, p: &ProcSample) -> bool {
        self.regex.is_match(&p.comm) || self.regex.is_match(&p.cmdline)
    }
}

/// Everything the view shows.
#[derive(Debug)]
pub struct App {
    /// Where the per-process values come from.
    pub source: SourceKind,
    /// The latest snapshot (`None` until the first interval ends).
    pub snapshot: Option<Snapshot>,
    /// What the guards hold.
    pub guard: GuardView,
    /// The container's (or cgroup's) limit line, where memtrace runs below a memory limit.
    pub limit: Option<String>,
    /// The sort column.
    pub sort: Column,
    /// Largest (or last) first.
    pub descending: bool,
    /// Processes under their parents, with summed columns.
    pub tree: bool,
    /// The filter in force.
    pub filter: Option<Filter>,
    /// The filter being typed, while `/` is open.
    pub editing: Option<String>,
    /// Why the last filter typed was refused.
    pub filter_error: Option<String>,
    /// The selected row.
    pub selected: usize,
    /// Set by [`Action::Quit`].
    pub quit: bool,
    /// PSI some avg10 history, percent, oldest first.
    pub psi: VecDeque<f64>,
    /// The rows, as sorted, filtered and grouped now.
    pub rows: Vec<Row>,
    history: HashMap<(u32, u64), VecDeque<u64>>,
}

impl App {
    /// Sorted by growth, largest first, flat, unfiltered: as the plain table.
    pub fn new(source: SourceKind) -> Self {
        Self {
            source,
            snapshot: None,
            guard: GuardView::default(),
            limit: None,
            sort: Column::Growth,
            descending: true,
            tree: false,
            filter: None,
            editing: None,
            filter_error: None,
            selected: 0,
            quit: false,
            psi: VecDeque::with_capacity(HISTORY),
            rows: Vec::new(),
            history: HashMap::new(),
        }
    }

    /// Takes a new snapshot and guard view: histories grow (those of gone processes are
    /// dropped) and the rows are rebuilt.
    pub fn update(&mut self, snapshot: Snapshot, guard: GuardView) {
        let mut seen = HashSet::with_capacity(snapshot.procs.len());
        for p in &snapshot.procs {
            let key = (p.pid, p.start_ticks);
            seen.insert(key);
            let history = self.history.entry(key).or_default();
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(p.rss_bytes);
        }
        self.history.retain(|key, _| seen.contains(key));
        if let Some(some) = snapshot.system.psi_some_avg10 {
            if self.psi.len() == HISTORY {
                self.psi.pop_front();
            }
            self.psi.push_back(some);
        }
        self.snapshot = Some(snapshot);
        self.guard = guard;
        self.rebuild();
    }

    /// Whether any GPU is known.
    pub fn has_gpu(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| !s.gpus.is_empty())
    }

    /// Applies what a key asked for.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::SortBy(column) => {
                if self.sort == column {
                    self.descending = !self.descending;
                } else {
                    self.sort = column;
                    self.descending = column.descending_first();
                }
            }
            Action::SortNext | Action::SortPrev => {
                let step = if action == Action::SortNext { 1 } else { -1 };
                self.sort = self.sort.step(step, self.has_gpu());
                self.descending = self.sort.descending_first();
            }
            Action::Reverse => self.descending = !self.descending,
            Action::ToggleTree => self.tree = !self.tree,
            Action::StartFilter => {
                self.editing = Some(
                    self.filter
                        .as_ref()
                        .map_or_else(String::new, |f| f.text.clone()),
                );
            }
            Action::FilterChar(c) => {
                if let Some(text) = &mut self.editing {
                    text.push(c);
                }
            }
            Action::FilterBackspace => {
                if let Some(text) = &mut self.editing {
                    text.pop();
                }
            }
            Action::FilterApply => {
                if let Some(text) = self.editing.take() {
                    if text.is_empty() {
                        self.filter = None;
                        self.filter_error = None;
                    } else {
                        match Filter::new(&text) {
                            Ok(filter) => {
                                self.filter = Some(filter);
                                self.filter_error = None;
                            }
                            Err(err) => self.filter_error = Some(err),
                        }
                    }
                }
            }
            Action::FilterCancel => self.editing = None,
            Action::ClearFilter => {
                self.filter = None;
                self.filter_error = None;
            }
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = self.selected.saturating_add(1),
            Action::PageUp => self.selected = self.selected.saturating_sub(20),
            Action::PageDown => self.selected = self.selected.saturating_add(20),
            Action::Home => self.selected = 0,
            Action::End => self.selected = usize::MAX,
        }
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let Some(snapshot) = &self.snapshot else {
            self.rows.clear();
            return;
        };
        let shown: Vec<&ProcSample> = snapshot
            .procs
            .iter()
            .filter(|p| self.filter.as_ref().is_none_or(|f| f.matches(p)))
            .collect();
        let row = |p: &ProcSample| {
            let history = self
                .history
                .get(&(p.pid, p.start_ticks))
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default();
            Row::of(p, history)
        };
        self.rows = if self.tree {
            tree_rows(&shown, row, self.sort, self.descending)
        } else {
            let mut rows: Vec<Row> = shown.into_iter().map(row).collect();
            sort(&mut rows, self.sort, self.descending);
            rows
        };
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
    }
}

fn sort(rows: &mut [Row], column: Column, descending: bool) {
    rows.sort_by(|a, b| a.compare(b, column, descending));
}

/// The tree view of `shown`: each process under its parent when the parent is shown too (else
/// it is a root), siblings sorted by `column`, each row's amounts summed over its subtree.
fn tree_rows(
    shown: &[&ProcSample],
    row: impl Fn(&ProcSample) -> Row,
    column: Column,
    descending: bool,
) -> Vec<Row> {
    let index: HashMap<u32, usize> = shown.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, p) in shown.iter().enumerate() {
        match index.get(&p.ppid) {
            Some(&parent) if parent != i && !p.exited => {
                children.entry(parent).or_default().push(i)
            }
            _ => roots.push(i),
        }
    }
    // Subtree sums, children before parents (iterative post-order; `done` also breaks cycles,
    // which reused pids could make).
    let mut sums: Vec<Option<Row>> = vec![None; shown.len()];
    let mut done = vec![false; shown.len()];
    let mut visiting = vec![false; shown.len()];
    let mut stack: Vec<(usize, bool)> = roots.iter().map(|&r| (r, false)).collect();
    // Processes on a cycle have no root: make each of them one.
    let mut pending: Vec<usize> = (0..shown.len()).rev().collect();
    loop {
        let Some((node, expanded)) = stack.pop() else {
            match pending.pop() {
                Some(node) if !done[node] && sums[node].is_none() => {
                    roots.push(node);
                    stack.push((node, false));
                    continue;
                }
                Some(_) => continue,
                None => break,
            }
        };
        if done[node] {
            continue;
        }
        if expanded {
            let mut total = row(shown[node]);
            for child in children.get(&node).into_iter().flatten() {
                if let Some(sum) = &sums[*child] {
                    total.add(sum);
                }
            }
            sums[node] = Some(total);
            done[node] = true;
        } else if !visiting[node] {
            visiting[node] = true;
            stack.push((node, true));
            for &child in children.get(&node).into_iter().flatten() {
                if !done[child] && !visiting[child] {
                    stack.push((child, false));
                }
            }
        }
    }
    let by = |a: &usize, b: &usize| match (&sums[*a], &sums[*b]) {
        (Some(a), Some(b)) => a.compare(b, column, descending),
        _ => Ordering::Equal,
    };
    roots.sort_by(by);
    for list in children.values_mut() {
        list.sort_by(by);
    }
    // Pre-order walk for the rows.
    let mut rows = Vec::with_capacity(shown.len());
    let mut emitted = vec![false; shown.len()];
    let mut stack: Vec<(usize, usize, bool)> = Vec::new();
    let last_root = roots.len().saturating_sub(1);
    for (n, &root) in roots.iter().enumerate().rev() {
        stack.push((root, 0, n == last_root));
    }
    while let Some((node, depth, last)) = stack.pop() {
        if emitted[node] {
            continue;
        }
        emitted[node] = true;
        if let Some(sum) = &sums[node] {
            let mut sum = sum.clone();
            sum.depth = depth;
            sum.last = last;
            rows.push(sum);
        }
        let kids = children.get(&node).map(Vec::as_slice).unwrap_or_default();
        for (n, &child) in kids.iter().enumerate().rev() {
            stack.push((child, depth + 1, n + 1 == kids.len()));
        }
    }
    rows
}

/// A sparkline of `values` in at most `width` block characters (the latest values), scaled from
/// 0 to the largest of them and `floor` (so small noise stays low); empty without values.
pub fn spark(values: &[f64], width: usize, floor: f64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = values.len().saturating_sub(width);
    let tail = values.get(start..).unwrap_or_default();
    let top = tail.iter().copied().fold(floor, f64::max);
    tail.iter()
        .map(|v| {
            let level = if top > 0.0 {
                ((v.max(0.0) / top) * 7.0).round() as usize
            } else {
                0
            };
            BARS.get(level).copied().unwrap_or('█')
        })
        .collect()
}

/// A row's RSS trend: scaled between the lowest and highest of its recent values, so a process
/// that grows shows a rising line whatever its size; flat when it does not change.
pub fn trend(history: &[u64], width: usize) -> String {
    let start = history.len().saturating_sub(width);
    let tail = history.get(start..).unwrap_or_default();
    let low = tail.iter().copied().min().unwrap_or(0);
    let values: Vec<f64> = tail.iter().map(|v| v.saturating_sub(low) as f64).collect();
    spark(&values, width, 0.0)
}

#[cfg(test)]
mod tests;
