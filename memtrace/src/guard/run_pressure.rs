//! Which memory stalls the guard inside `memtrace run` counts as pressure on its scope. The
//! kernel counts every stalled task in the machine's PSI (`/proc/pressure/memory`), those a
//! cgroup's own `memory.high` / `memory.max` stalls included: a pipeline throttled at the
//! `--memory-high` it was given would otherwise read as a machine under pressure, and so would,
//! for the ten seconds its `avg10` takes to decay, the stalls of a run that has ended.
//!
//! So each round compares the stall time (the `some` totals) the machine and the pipeline's own
//! cgroup gained since the previous round ([`counts`]): the PSI averages are passed on only
//! while the machine is stalling now, and not when the pipeline sits at (or hit, during the
//! round) its own limit and its own stalls account for the machine's (all but a tenth: the files
//! are read a moment apart). cgroup v1 has no per-cgroup pressure file: there only the first
//! rule applies. A pipeline below its limit stalled by a full machine
//! is the machine's pressure; used memory counts in every case.
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use crate::host::{
    cgroup,
    procfs::{self, Psi},
};

/// The share of a round with stall time (or stall time outside the pipeline) that counts.
const STALL_SHARE: f64 = 0.01;
/// How close to its limit (a fraction) the pipeline must be for its stalls to be its own.
const AT_LIMIT: f64 = 0.9;
/// The share of the machine's stall time that may lie outside the pipeline's own and still be
/// its own: the two files are read a moment apart, and an emulated or busy machine makes that
/// moment vary by milliseconds.
const OUTSIDE_SHARE: f64 = 0.1;

/// One round's stall time and the pipeline's standing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Round {
    /// Length of the round.
    pub elapsed_us: u64,
    /// Stall time the machine (the scope) gained.
    pub machine_us: u64,
    /// Stall time the pipeline's cgroup gained.
    pub own_us: u64,
    /// The pipeline is at (or near) its own limit, or hit it during the round.
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

/// The previous round's reading.
#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    /// The machine's `some` total, µs.
    machine_us: u64,
    /// The pipeline's `some` total, µs.
    own_us: u64,
    /// How often the pipeline hit its limits so far (`memory.events` high + max + oom).
    hits: u64,
}

/// The stall totals of the previous round.
#[derive(Debug)]
pub struct StallMeter {
    /// The pipeline's cgroup and the lower of its limits.
    pipeline: PathBuf,
    limit: u64,
    last: Option<Reading>,
}

impl StallMeter {
    /// A meter for the pipeline in `pipeline`, limited to `limit` bytes.
    pub fn new(pipeline: &Path, limit: u64) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            limit,
            last: None,
        }
    }

    /// `machine` (the scope's PSI, just read) if this round's stalls count, else `None`; the
    /// first round has nothing to compare with and passes nothing.
    pub fn filter(&mut self, machine: Psi, now: Instant) -> Option<Psi> {
        let read = |file: &str| procfs::read(&self.pipeline.join(file)).ok();
        let own_us = read("memory.pressure")
            .and_then(|text| procfs::parse_psi(&text))
            .map_or(0, |psi| psi.some.total_us);
        let current: u64 = read("memory.current")
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let hits = read("memory.events").map_or(0, |text| {
            ["high", "max", "oom"]
                .iter()
                .filter_map(|key| cgroup::stat_value(&text, key))
                .sum()
        });
        let reading = Reading {
            at: now,
            machine_us: machine.some.total_us,
            own_us,
            hits,
        };
        let last = self.last.replace(reading)?;
        let round = Round {
            elapsed_us: u64::try_from(now.duration_since(last.at).as_micros()).unwrap_or(u64::MAX),
            machine_us: reading.machine_us.saturating_sub(last.machine_us),
            own_us: reading.own_us.saturating_sub(last.own_us),
            // At its limit now, or it hit one during the round (an OOM kill at memory.max
            // frees the memory before the next reading).
            at_limit: current as f64 >= AT_LIMIT * self.limit as f64 || hits > last.hits,
        };
        counts(round).then_some(machine)
    }
}

#[cfg(test)]
mod tests {
    //! Stalls count while the machine stalls now, except the pipeline's own at its limit.
    use super::*;

    const ROUND: u64 = 200_000;

    fn round(machine_us: u64, own_us: u64, at_limit: bool) -> Round {
        Round {
            elapsed_us: ROUND,
            machine_us,
            own_us,
            at_limit,
        }
    }

    #[test]
    fn the_pipelines_own_stalls_at_its_limit_are_not_pressure() {
        // Throttled at its memory.high: 30 % of the round stalled, all of it its own.
        assert!(!counts(round(60_000, 59_000, true)));
        // 40 % of a round, 5 % of it read a moment apart: still its own.
        assert!(!counts(round(80_000, 76_000, true)));
        // Others stall too (20 % of the round outside it): pressure.
        assert!(counts(round(60_000, 20_000, true)));
        // Below its limit, stalled by a full machine: pressure.
        assert!(counts(round(60_000, 60_000, false)));
    }

    #[test]
    fn stalls_that_have_stopped_are_not_pressure() {
        // An ended run's stalls still in avg10, none this round.
        assert!(!counts(round(0, 0, false)));
        assert!(!counts(round(ROUND / 200, 0, false)), "0.5 % of a round");
        assert!(counts(round(ROUND / 50, 0, false)), "2 % of a round");
    }

    #[test]
    fn the_first_round_passes_nothing_then_rounds_compare() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("memory.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n",
        )
        .expect("pressure");
        std::fs::write(dir.path().join("memory.current"), "1000\n").expect("current");
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        )
        .expect("events");
        let mut meter = StallMeter::new(dir.path(), 1 << 20);
        let machine = |total_us: u64| {
            let mut psi = Psi::default();
            psi.some.avg10 = 12.0;
            psi.some.total_us = total_us;
            psi
        };
        let t0 = Instant::now();
        assert_eq!(meter.filter(machine(5_000), t0), None, "nothing to compare");
        let later = t0 + std::time::Duration::from_millis(200);
        assert_eq!(
            meter.filter(machine(65_000), later),
            Some(machine(65_000)),
            "60 ms of the machine's stalls, none the pipeline's"
        );
        // The pipeline hit its memory.max (and was OOM-killed: its usage is back down) while
        // all of the round's stalls were its own.
        std::fs::write(
            dir.path().join("memory.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=61000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=61000\n",
        )
        .expect("pressure");
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("events");
        let after = later + std::time::Duration::from_millis(200);
        assert_eq!(meter.filter(machine(125_000), after), None);
    }
}
