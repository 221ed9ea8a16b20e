//! Which memory stalls a guard counts as pressure on its scope. The kernel counts every stalled
//! task in the scope's PSI (`/proc/pressure/memory`, or a container's `memory.pressure`), those
//! a cgroup's own `memory.high` / `memory.max` stalls included: a pipeline throttled at the
//! `--memory-high` it was given, a container started with `-m` or a unit with `MemoryHigh=`
//! sitting at its limit would otherwise read as a machine under pressure, and the guard would
//! hold them (or the next grower) while the machine has memory to spare. So would, for the ten
//! seconds its `avg10` takes to decay, the stalls of such a cgroup after it is gone.
//!
//! So each round compares the stall time (the `some` totals) the scope and the cgroups at
//! their own limits gained over the last second ([`counts`]): while a cgroup below the scope
//! sits at its limit (near it at some reading of that second, or it hit it meanwhile), or did
//! in the last [`AFTERWARDS`], the PSI averages are passed on only while the scope is stalling
//! now and those cgroups' stalls do not account for the scope's (all but a tenth: the files are
//! read a moment apart). The limited cgroups are found below the scope
//! ([`crate::host::limited_cgroups`]) when it stalls; `memtrace run` pins its pipeline's cgroup
//! ([`StallMeter::pin`]), so those rules hold for a run with a limit from its start. While no
//! cgroup is at its limit, the scope's PSI is passed on as the kernel gives it. cgroup v1 has
//! no per-cgroup pressure file: there only a pinned run applies the rules, with the pipeline's
//! own stalls unknown. A pipeline below its limit stalled by a full machine is the machine's
//! pressure; used memory counts in every case.
use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    collect::scope::Scope,
    host::{
        cgroup::{self, Version},
        limited_cgroups::{self, Limited, Standing},
        procfs::Psi,
    },
};

/// The share of a round with stall time (or stall time outside the limited cgroups) that
/// counts.
const STALL_SHARE: f64 = 0.01;
/// How close to its limit (a fraction) a cgroup must be for its stalls to be its own.
const AT_LIMIT: f64 = 0.9;
/// The share of the scope's stall time that may lie outside the limited cgroups' and still be
/// theirs: the files are read a moment apart, and an emulated or busy machine makes that moment
/// vary by milliseconds.
const OUTSIDE_SHARE: f64 = 0.1;
/// How far back the stall time is compared: long enough that reading the files a moment apart
/// (milliseconds, more on a busy or emulated machine) is a small share of it.
const WINDOW: Duration = Duration::from_secs(1);
/// The shortest span compared: until then nothing counts (a verdict waits for a second reading
/// this long after the first).
pub const MIN_SPAN: Duration = Duration::from_millis(500);
/// The longest span compared: an older reading says nothing of the stalls now.
const MAX_SPAN: Duration = Duration::from_secs(5);
/// How long the rules hold after a cgroup was last seen at its limit: its stalls leave the
/// scope's `avg10` within about this long (e^-3 of them are left).
pub const AFTERWARDS: Duration = Duration::from_secs(30);
/// How often the scope is searched for limited cgroups while it stalls.
const SEARCH_EVERY: Duration = Duration::from_secs(1);

/// One round's stall time and the standing of the cgroups at their limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Round {
    /// Length of the round.
    pub elapsed_us: u64,
    /// Stall time the scope gained.
    pub machine_us: u64,
    /// Stall time the cgroups at their limits gained (the outermost of nested ones).
    pub own_us: u64,
    /// Some cgroup is at (or near) its own limit, or hit it during the round.
    pub at_limit: bool,
}

/// Whether the round's stalls are pressure on the scope (see the module doc).
pub fn counts(r: Round) -> bool {
    let share = |us: u64| us as f64 / r.elapsed_us.max(1) as f64;
    if share(r.machine_us) < STALL_SHARE {
        return false;
    }
    let outside = r.machine_us.saturating_sub(r.own_us);
    let its_own =
        share(outside) < STALL_SHARE || (outside as f64) < OUTSIDE_SHARE * r.machine_us as f64;
    !(r.at_limit && its_own)
}

/// What the scope's stalls are.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Pressure on the scope: pass its PSI on.
    Pressure,
    /// No cgroup is at its own limit: the kernel's PSI as it is.
    Unattributed,
    /// Not pressure: the stalls of the cgroups at their own limits (`dirs`), or stalls that have
    /// stopped (`dirs` empty when none was at its limit in the window).
    Own {
        /// The cgroups whose stalls they were.
        dirs: Vec<PathBuf>,
    },
    /// Too soon to tell: a second reading [`MIN_SPAN`] after the first decides.
    Undecided,
}

impl Verdict {
    /// Whether the scope's PSI is passed on.
    pub fn counts(&self) -> bool {
        matches!(self, Self::Pressure | Self::Unattributed)
    }
}

/// What `memtrace guard` said of the scope's stalls, and a PSI trigger waiting for a verdict.
#[derive(Debug, Default)]
pub struct StallNote {
    /// The cgroups whose stalls at their own limits were last said not to count.
    said: Vec<PathBuf>,
    /// The PSI trigger fired on a round too early to tell whose stalls they were.
    pending: bool,
}

impl StallNote {
    /// Whether the trigger (`fired` now, or pending) counts after `verdict`; says once which
    /// cgroups' stalls do not.
    pub fn triggered(&mut self, verdict: &Verdict, fired: bool) -> bool {
        let fired = fired || self.pending;
        self.pending = fired && *verdict == Verdict::Undecided;
        match verdict {
            Verdict::Own { dirs } if !dirs.is_empty() && *dirs != self.said => {
                let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                log::info!(
                    "memory stalls of {} at its own memory limit: not pressure on the scope",
                    names.join(", ")
                );
                self.said.clone_from(dirs);
            }
            Verdict::Pressure | Verdict::Unattributed => self.said.clear(),
            _ => {}
        }
        fired && verdict.counts()
    }
}

/// One reading.
#[derive(Clone, Debug)]
struct Reading {
    at: Instant,
    /// The scope's `some` total, µs.
    machine_us: u64,
    /// Each tracked cgroup that was there, and whether it was near its limit.
    cgroups: HashMap<PathBuf, (Standing, bool)>,
}

/// The readings over the last [`WINDOW`], and the cgroups they track.
#[derive(Debug)]
pub struct StallMeter {
    /// Where limited cgroups are searched for (`None`: nowhere, e.g. a v1 scope).
    root: Option<PathBuf>,
    /// `memtrace run`'s pipeline: tracked from the start, the rules always hold.
    pinned: Option<Limited>,
    /// What the latest search found (the pinned cgroup left out).
    found: Vec<Limited>,
    searched: Option<Instant>,
    /// When a tracked cgroup was last seen at its limit.
    at_limit_seen: Option<Instant>,
    readings: VecDeque<Reading>,
    /// The last verdict was [`Verdict::Undecided`].
    undecided: bool,
}

impl StallMeter {
    /// A meter searching for limited cgroups below `root` (`None`: it only tracks what is
    /// pinned).
    pub fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            pinned: None,
            found: Vec::new(),
            searched: None,
            at_limit_seen: None,
            readings: VecDeque::new(),
            undecided: false,
        }
    }

    /// A meter for `scope`: limited cgroups are searched for below its v2 cgroup, or below the
    /// v2 hierarchy's root for the machine (none on cgroup v1).
    pub fn for_scope(scope: &Scope, proc_root: &Path) -> Self {
        let root = match scope {
            Scope::Machine => cgroup::memory_hierarchy(proc_root)
                .filter(|(_, version)| *version == Version::V2)
                .map(|(mount, _)| mount),
            Scope::Cgroup {
                path,
                version: Version::V2,
            } => Some(path.clone()),
            Scope::Cgroup { .. } => None,
        };
        Self::new(root)
    }

    /// Tracks `dir`, limited to `limit` bytes, from now on: the rules hold while it is pinned.
    pub fn pin(&mut self, dir: &Path, limit: u64) {
        self.pinned = Some(Limited {
            dir: dir.to_owned(),
            limit,
        });
        self.found.retain(|l| l.dir != dir);
        self.readings.clear();
    }

    /// Whether the last verdict waits for a reading ([`Verdict::Undecided`]); the caller reads
    /// again [`MIN_SPAN`] after it.
    pub fn wants_reading(&self, now: Instant) -> bool {
        self.undecided
            && self
                .readings
                .back()
                .is_some_and(|last| now.duration_since(last.at) < MAX_SPAN)
    }

    /// Whether the rules hold now: a pinned pipeline, or a cgroup at its limit lately.
    fn tracking(&self, now: Instant) -> bool {
        self.pinned.is_some()
            || self
                .at_limit_seen
                .is_some_and(|seen| now.duration_since(seen) < AFTERWARDS)
    }

    /// `machine` (the scope's PSI, just read) if its stalls count, else `None`.
    pub fn filter(&mut self, machine: Psi, scope_limit: u64, now: Instant) -> Option<Psi> {
        self.judge(&machine, scope_limit, now)
            .counts()
            .then_some(machine)
    }

    /// What the scope's stalls are, from `machine` (its PSI, just read) and the cgroups below it
    /// with limits under `scope_limit` bytes.
    pub fn judge(&mut self, machine: &Psi, scope_limit: u64, now: Instant) -> Verdict {
        let verdict = self.decide(machine, scope_limit, now);
        self.undecided = verdict == Verdict::Undecided;
        verdict
    }

    fn decide(&mut self, machine: &Psi, scope_limit: u64, now: Instant) -> Verdict {
        // Stalling over 1 % since a recent reading; without one (a PSI trigger that just fired,
        // the first round near warn) the cgroups are looked at anyway.
        let stalled = match self.readings.back() {
            Some(last) if now.duration_since(last.at) <= MAX_SPAN => {
                let elapsed = now.duration_since(last.at).as_micros() as f64;
                machine.some.total_us.saturating_sub(last.machine_us) as f64
                    >= STALL_SHARE * elapsed
            }
            _ => true,
        };
        if stalled
            && self
                .searched
                .is_none_or(|at| now.duration_since(at) >= SEARCH_EVERY)
        {
            self.searched = Some(now);
            if let Some(root) = &self.root {
                let pinned = self.pinned.as_ref().map(|p| p.dir.as_path());
                self.found = limited_cgroups::find(root, scope_limit);
                self.found.retain(|l| Some(l.dir.as_path()) != pinned);
            }
        }
        let reading = self.read(machine.some.total_us, now);
        if reading.cgroups.values().any(|&(_, near)| near)
            || self
                .readings
                .back()
                .is_some_and(|last| hit_since(last, &reading))
        {
            self.at_limit_seen = Some(now);
        }
        self.readings.push_back(reading);
        self.trim(now);
        if !self.tracking(now) {
            return Verdict::Unattributed;
        }
        let (Some(first), Some(last)) = (self.readings.front(), self.readings.back()) else {
            return Verdict::Undecided;
        };
        let span = last.at.duration_since(first.at);
        if span < MIN_SPAN {
            return Verdict::Undecided;
        }
        let window = Window {
            readings: &self.readings,
            first,
            last,
        };
        let at_limit = window.at_limit();
        if at_limit.iter().any(|dir| !first.cgroups.contains_key(*dir)) {
            // A cgroup at its limit was found (or came back) since the first reading: its stalls
            // have nothing to be compared with yet. Start again from this reading.
            self.keep_last();
            return Verdict::Undecided;
        }
        if at_limit.iter().any(|dir| !last.cgroups.contains_key(*dir)) {
            // A cgroup at its limit went away meanwhile, and its last stalls with it: nothing
            // to compare them with. Start again from this reading.
            let dirs = at_limit.iter().map(|d| (*d).to_owned()).collect();
            self.keep_last();
            return Verdict::Own { dirs };
        }
        let outermost = outermost(&at_limit);
        let round = Round {
            elapsed_us: u64::try_from(span.as_micros()).unwrap_or(u64::MAX),
            machine_us: last.machine_us.saturating_sub(first.machine_us),
            own_us: outermost.iter().map(|dir| window.gained(dir)).sum(),
            at_limit: !at_limit.is_empty(),
        };
        let counted = counts(round);
        log::debug!("limit stalls: {round:?}: counted {counted}");
        if counted {
            Verdict::Pressure
        } else {
            Verdict::Own {
                dirs: outermost.into_iter().map(Path::to_owned).collect(),
            }
        }
    }

    /// A reading of the scope's total and every tracked cgroup that is still there.
    fn read(&self, machine_us: u64, now: Instant) -> Reading {
        let cgroups = self
            .pinned
            .iter()
            .chain(&self.found)
            .filter_map(|l| {
                let standing = limited_cgroups::standing(&l.dir)?;
                let near = standing.current as f64 >= AT_LIMIT * l.limit as f64;
                Some((l.dir.clone(), (standing, near)))
            })
            .collect();
        Reading {
            at: now,
            machine_us,
            cgroups,
        }
    }

    /// Drops every reading but the last.
    fn keep_last(&mut self) {
        let last = self.readings.pop_back();
        self.readings.clear();
        self.readings.extend(last);
    }

    /// Keeps the readings of the last [`WINDOW`] (at least two), none older than
    /// [`MAX_SPAN`].
    fn trim(&mut self, now: Instant) {
        while self.readings.len() > 2
            && self
                .readings
                .get(1)
                .is_some_and(|r| now.duration_since(r.at) >= WINDOW)
        {
            self.readings.pop_front();
        }
        while self.readings.len() > 1
            && self
                .readings
                .front()
                .is_some_and(|r| now.duration_since(r.at) > MAX_SPAN)
        {
            self.readings.pop_front();
        }
    }
}

/// Whether a cgroup in both readings hit its limit between them.
fn hit_since(earlier: &Reading, later: &Reading) -> bool {
    later
        .cgroups
        .keys()
        .any(|dir| hit_between(earlier, later, dir))
}

/// Whether `dir`, in both readings, hit its limit between them.
fn hit_between(earlier: &Reading, later: &Reading, dir: &Path) -> bool {
    matches!(
        (earlier.cgroups.get(dir), later.cgroups.get(dir)),
        (Some((a, _)), Some((b, _))) if b.hits > a.hits
    )
}

/// The readings compared, first and last.
struct Window<'a> {
    readings: &'a VecDeque<Reading>,
    first: &'a Reading,
    last: &'a Reading,
}

impl<'a> Window<'a> {
    /// The cgroups at their limits: near it at some reading, or they hit it meanwhile (an OOM
    /// kill at `memory.max`, or the pipeline's end, frees the memory before a reading).
    fn at_limit(&self) -> Vec<&'a Path> {
        let mut dirs: Vec<&Path> = self
            .first
            .cgroups
            .keys()
            .chain(self.last.cgroups.keys())
            .map(PathBuf::as_path)
            .filter(|dir| {
                self.readings
                    .iter()
                    .any(|r| r.cgroups.get(*dir).is_some_and(|&(_, near)| near))
                    || hit_between(self.first, self.last, dir)
            })
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        dirs
    }

    /// Stall time `dir` gained (its cgroups at their limits are in both readings: see
    /// [`StallMeter::judge`]; 0 otherwise).
    fn gained(&self, dir: &Path) -> u64 {
        match (self.first.cgroups.get(dir), self.last.cgroups.get(dir)) {
            (Some((a, _)), Some((b, _))) => b.stall_us.saturating_sub(a.stall_us),
            _ => 0,
        }
    }
}

/// `dirs` without those below another of them (a cgroup's stall time includes its
/// children's).
fn outermost<'a>(dirs: &[&'a Path]) -> Vec<&'a Path> {
    dirs.iter()
        .filter(|dir| {
            !dirs
                .iter()
                .any(|other| other != *dir && dir.starts_with(other))
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
