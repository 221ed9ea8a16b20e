//! Which memory stalls the guard inside `memtrace run` counts as pressure on its scope. The
//! kernel counts every stalled task in the machine's PSI (`/proc/pressure/memory`), those a
//! cgroup's own `memory.high` / `memory.max` stalls included: a pipeline throttled at the
//! `--memory-high` it was given would otherwise read as a machine under pressure, and so would,
//! for the ten seconds its `avg10` takes to decay, the stalls of a run that has ended.
//!
//! So each round compares the stall time (the `some` totals) the machine and the pipeline's own
//! cgroup gained over the last second ([`counts`]): the PSI averages are passed on only while
//! the machine is stalling now, and not when the pipeline sits at its own limit (at some reading
//! of that second, or it hit the limit meanwhile) and its own stalls account for the machine's
//! (all but a tenth: the files are read a moment apart). cgroup v1 has no per-cgroup pressure
//! file: there only the first rule applies. A pipeline below its limit stalled by a full machine
//! is the machine's pressure; used memory counts in every case.
use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    time::{Duration, Instant},
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

/// How far back the stall time is compared: long enough that reading the two files a moment
/// apart (milliseconds, more on a busy or emulated machine) is a small share of it.
const WINDOW: Duration = Duration::from_secs(1);
/// The shortest span compared: until then (a run's first half second) nothing counts.
const MIN_SPAN: Duration = Duration::from_millis(500);

/// One round's reading.
#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    /// The machine's `some` total, µs.
    machine_us: u64,
    /// The pipeline's `some` total, µs.
    own_us: u64,
    /// How often the pipeline hit its limits so far (`memory.events` high + max + oom).
    hits: u64,
    /// Its usage was near its limit.
    near: bool,
}

/// The readings over the last [`WINDOW`].
#[derive(Debug)]
pub struct StallMeter {
    /// The pipeline's cgroup and the lower of its limits.
    pipeline: PathBuf,
    limit: u64,
    readings: VecDeque<Reading>,
}

impl StallMeter {
    /// A meter for the pipeline in `pipeline`, limited to `limit` bytes.
    pub fn new(pipeline: &Path, limit: u64) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            limit,
            readings: VecDeque::new(),
        }
    }

    /// `machine` (the scope's PSI, just read) if the stalls of the last [`WINDOW`] count, else
    /// `None`; nothing counts before the readings span [`MIN_SPAN`].
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
            near: current as f64 >= AT_LIMIT * self.limit as f64,
        };
        self.readings.push_back(reading);
        while self.readings.len() > 2
            && self
                .readings
                .get(1)
                .is_some_and(|r| now.duration_since(r.at) >= WINDOW)
        {
            self.readings.pop_front();
        }
        let first = *self.readings.front()?;
        let span = now.duration_since(first.at);
        if span < MIN_SPAN {
            return None;
        }
        let round = Round {
            elapsed_us: u64::try_from(span.as_micros()).unwrap_or(u64::MAX),
            machine_us: reading.machine_us.saturating_sub(first.machine_us),
            own_us: reading.own_us.saturating_sub(first.own_us),
            // Near its limit at some reading of the window, or it hit one meanwhile: an OOM
            // kill at memory.max, or the pipeline's end, frees the memory before a reading.
            at_limit: self.readings.iter().any(|r| r.near) || reading.hits > first.hits,
        };
        let counted = counts(round);
        log::debug!("run pressure: {round:?}: counted {counted}");
        counted.then_some(machine)
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

    /// A fake pipeline cgroup: its stall total (µs), usage and limit hits.
    fn pipeline(dir: &Path, own_us: u64, current: u64, hits: u64) {
        std::fs::write(
            dir.join("memory.pressure"),
            format!(
                "some avg10=0.00 avg60=0.00 avg300=0.00 total={own_us}\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total={own_us}\n"
            ),
        )
        .expect("pressure");
        std::fs::write(dir.join("memory.current"), format!("{current}\n")).expect("current");
        std::fs::write(
            dir.join("memory.events"),
            format!("low 0\nhigh 0\nmax {hits}\noom 0\noom_kill 0\n"),
        )
        .expect("events");
    }

    fn machine(total_us: u64) -> Psi {
        let mut psi = Psi::default();
        psi.some.avg10 = 12.0;
        psi.some.total_us = total_us;
        psi
    }

    const LIMIT: u64 = 1 << 20;

    #[test]
    fn the_meter_compares_the_last_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |ms: u64| Instant::now() + Duration::from_millis(ms);
        let t0 = at(0);
        let after = |ms: u64| t0 + Duration::from_millis(ms);
        // The machine stalls, the pipeline (far below its limit) does not.
        pipeline(dir.path(), 0, 1000, 0);
        let mut meter = StallMeter::new(dir.path(), LIMIT);
        assert_eq!(
            meter.filter(machine(0), after(0)),
            None,
            "nothing to compare"
        );
        assert_eq!(
            meter.filter(machine(60_000), after(200)),
            None,
            "under MIN_SPAN"
        );
        assert_eq!(
            meter.filter(machine(300_000), after(600)),
            Some(machine(300_000)),
            "half of 600 ms stalled, none of it the pipeline's"
        );
        // An earlier run's stalls: the totals no longer move, avg10 still shows them.
        let mut meter = StallMeter::new(dir.path(), LIMIT);
        meter.filter(machine(900_000), after(0));
        assert_eq!(meter.filter(machine(900_000), after(600)), None);
    }

    #[test]
    fn the_pipelines_stalls_stay_its_own_after_its_memory_is_freed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = Instant::now();
        let after = |ms: u64| t0 + Duration::from_millis(ms);
        // At its limit, then ended (usage 0): the window still saw it near the limit.
        pipeline(dir.path(), 0, LIMIT, 0);
        let mut meter = StallMeter::new(dir.path(), LIMIT);
        meter.filter(machine(0), after(0));
        pipeline(dir.path(), 290_000, LIMIT, 0);
        assert_eq!(meter.filter(machine(300_000), after(600)), None);
        pipeline(dir.path(), 330_000, 0, 0);
        assert_eq!(meter.filter(machine(340_000), after(700)), None);
        // Never seen near it, but it hit memory.max (an OOM kill freed the memory).
        pipeline(dir.path(), 0, 0, 0);
        let mut meter = StallMeter::new(dir.path(), LIMIT);
        meter.filter(machine(0), after(0));
        pipeline(dir.path(), 300_000, 0, 4);
        assert_eq!(meter.filter(machine(300_000), after(600)), None);
    }
}
