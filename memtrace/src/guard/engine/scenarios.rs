//! Scenarios of the pure policy, table-driven: each is a sequence of rounds (made-up time,
//! scope usage and growth, the processes as the sampler saw them) and the intents expected of
//! each round. No /proc, no sleep, no signal: the candidates are ranked from the made-up
//! processes by the real [`rank`], and a fake effects layer holds, resumes and kills in a list
//! (or fails to hold a victim that exited before the action).
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use super::policy::{Held, Inputs, Intent, KillTarget, Policy, Why};
use crate::{
    collect::{
        model::{ProcSample, Snapshot},
        scope::Usage,
    },
    guard::{
        config::GuardConfig,
        level::{Signals, time_to_exhaustion},
        victim::{Protection, rank},
    },
    host::units::MIB,
};

/// The scope's limit: 10 GiB.
const LIMIT: u64 = 10 << 30;

/// A process as the sampler saw it: (pid, parent, start ticks, name, growth MiB/s, holds MiB).
type P = (u32, u32, u64, &'static str, f64, u64);

/// One round: (seconds since the start, used %, scope growth MiB/s, processes, what the fake
/// effects fail to hold (pids that exited before the action)).
struct Round {
    at_s: f64,
    used_percent: f64,
    growth_mib: f64,
    procs: Vec<P>,
    gone: Vec<u32>,
}

fn round(at_s: f64, used_percent: f64, growth_mib: f64, procs: &[P]) -> Round {
    Round {
        at_s,
        used_percent,
        growth_mib,
        procs: procs.to_vec(),
        gone: Vec::new(),
    }
}

/// The policy, the fake effects' held list and the epoch of the made-up time.
struct World {
    policy: Policy,
    held: Vec<Held>,
    t0: Instant,
}

impl World {
    fn new(extra_config: &str) -> Self {
        let text = format!("[thresholds]\nresume_after = \"2s\"\n{extra_config}");
        let config = GuardConfig::from_layers(Some((&text, "test"))).expect("config");
        Self {
            policy: Policy::new(config),
            held: Vec::new(),
            // The epoch only: the policy is handed `t0 + at_s`, never reads the clock itself.
            t0: Instant::now(),
        }
    }

    /// Runs one round; the intents, after the fake effects carried them out.
    fn step(&mut self, r: &Round) -> Vec<Intent> {
        let procs: Vec<ProcSample> = r
            .procs
            .iter()
            .map(|&(pid, ppid, start, comm, growth, held)| ProcSample {
                pid,
                ppid,
                start_ticks: start,
                comm: comm.to_owned().into(),
                anon_bytes: held * MIB,
                rss_bytes: held * MIB,
                growth_bytes_per_s: growth * MIB as f64,
                footprint_growth_bytes_per_s: growth * MIB as f64,
                ..ProcSample::default()
            })
            .collect();
        let snapshot = Snapshot {
            procs: procs.clone(),
            ..Snapshot::default()
        };
        let used_bytes = (LIMIT as f64 * r.used_percent / 100.0) as u64;
        let growth = r.growth_mib * MIB as f64;
        let signals = Signals {
            used_percent: r.used_percent,
            exhaustion_s: time_to_exhaustion(used_bytes, LIMIT, growth),
            ..Signals::default()
        };
        let now = self.t0 + Duration::from_secs_f64(r.at_s);
        let candidates = self.policy.wants_candidates(&signals, now).then(|| {
            let sshd = HashSet::new();
            let protection = Protection {
                guard_pid: 99_999,
                victims: &self.policy.config().victims,
                sshd: &sshd,
            };
            rank(&procs, &HashMap::new(), &protection, &|_| true)
        });
        let inputs = Inputs {
            usage: Usage {
                used_bytes,
                limit_bytes: LIMIT,
            },
            signals,
            growth_bytes_per_s: growth,
            snapshot: &snapshot,
            scope_pids: None,
            held: self.held.clone(),
            candidates,
        };
        let intents = self.policy.decide(&inputs, now);
        for intent in &intents {
            match intent {
                Intent::Suspend { victim, .. } if !r.gone.contains(&victim.root.pid) => {
                    self.held.push(Held {
                        root: victim.root.clone(),
                        pids: victim.members.iter().map(|m| m.pid).collect(),
                        summary: victim.summary(),
                        growth_bytes_per_s: victim.growth_bytes_per_s,
                        held_bytes: victim.held_bytes,
                        how: "freeze",
                    });
                }
                Intent::Resume { tree, .. }
                | Intent::Kill {
                    target: KillTarget::Held(tree),
                    ..
                } => self.held.retain(|h| h.root != tree.root),
                _ => {}
            }
        }
        intents
    }
}

/// An intent in a row: its action and the pid it is about (0: none).
fn short(intent: &Intent) -> (&'static str, u32) {
    let pid = match intent {
        Intent::Suspend { victim, .. } => victim.root.pid,
        Intent::Resume { tree, .. } | Intent::Wait { tree, .. } | Intent::Keep { tree, .. } => {
            tree.root.pid
        }
        Intent::Kill { target, .. } => match target {
            KillTarget::Held(tree) => tree.root.pid,
            KillTarget::Candidate(c) => c.root.pid,
        },
        Intent::Level { .. } | Intent::Warn { .. } | Intent::Reclaim { .. } => 0,
    };
    (intent.act().as_str(), pid)
}

/// The actions on trees (suspend, resume, wait, keep, kill), for the rows.
fn acted(intents: &[Intent]) -> Vec<(&'static str, u32)> {
    intents
        .iter()
        .map(short)
        .filter(|(act, _)| !matches!(*act, "level" | "warn" | "reclaim"))
        .collect()
}

/// A scenario: its name, extra `[thresholds]`/`[actions]` keys, and rounds each with the tree
/// actions expected of it.
type Scenario = (
    &'static str,
    &'static str,
    Vec<(Round, Vec<(&'static str, u32)>)>,
);

const HOG: P = (100, 1, 10, "hog", 200.0, 4000);
const HOG_STILL: P = (100, 1, 10, "hog", 0.0, 4000);
const LEAK: P = (200, 1, 20, "leak", 2.0, 3000);
const IDLE: P = (300, 1, 30, "idle", 0.0, 500);
/// Holds 64 MiB it touches now and then; its growth over the window is a few MiB/s.
const BYSTANDER: P = (400, 1, 40, "bystander", 3.1, 64);

fn scenarios() -> Vec<Scenario> {
    let none = Vec::new;
    vec![
        (
            "negative control: load under the thresholds is left alone",
            "",
            vec![
                (round(0.0, 60.0, 50.0, &[HOG, IDLE]), none()),
                (round(1.0, 70.0, 50.0, &[HOG, IDLE]), none()),
                (round(2.0, 79.0, 0.0, &[HOG_STILL, IDLE]), none()),
            ],
        ),
        (
            "runaway: held once at the suspend line, however long the level stays there",
            "",
            vec![
                (round(0.0, 70.0, 200.0, &[HOG, IDLE]), none()),
                (round(0.5, 85.0, 100.0, &[HOG, IDLE]), none()),
                (
                    round(1.0, 91.0, 200.0, &[HOG, IDLE]),
                    vec![("suspend", 100)],
                ),
                (round(1.5, 91.0, 100.0, &[HOG_STILL, IDLE]), none()),
                (round(3.0, 91.0, 0.0, &[HOG_STILL, IDLE]), none()),
            ],
        ),
        (
            "slow leak: held at the line, resumed after calm since the headroom lasts it",
            "",
            vec![
                (round(0.0, 91.0, 2.0, &[LEAK, IDLE]), vec![("suspend", 200)]),
                (round(1.0, 60.0, 0.0, &[LEAK, IDLE]), none()),
                (round(3.5, 60.0, 0.0, &[LEAK, IDLE]), vec![("resume", 200)]),
                (round(4.0, 60.0, 2.0, &[LEAK, IDLE]), none()),
            ],
        ),
        (
            "fork-heavy: a root whose many children each grow a little is one victim",
            "",
            vec![(
                round(
                    0.0,
                    92.0,
                    60.0,
                    &[
                        (400, 1, 40, "make", 0.0, 10),
                        (401, 400, 41, "cc", 0.6, 100),
                        (402, 400, 42, "cc", 0.6, 100),
                        (403, 400, 43, "cc", 0.6, 100),
                        (404, 403, 44, "cc1", 0.6, 100),
                        (500, 1, 50, "db", 0.9, 2000),
                    ],
                ),
                vec![("suspend", 400)],
            )],
        ),
        (
            "a bystander that grew long ago (holds much, grows no more) is not the victim",
            "",
            vec![
                (
                    round(0.0, 91.0, 2.0, &[(600, 1, 60, "ballast", 0.0, 6000), LEAK]),
                    vec![("suspend", 200)],
                ),
                (
                    round(1.0, 91.0, 0.0, &[(600, 1, 60, "ballast", 0.0, 6000)]),
                    none(),
                ),
            ],
        ),
        (
            "nothing growing at the suspend line: nothing held",
            "",
            vec![(round(0.0, 92.0, 0.0, &[HOG_STILL, IDLE]), none())],
        ),
        (
            "two growers: the faster first, the other once the samples since the hold show growth",
            "",
            vec![
                (
                    round(0.0, 91.0, 202.0, &[HOG, LEAK]),
                    vec![("suspend", 100)],
                ),
                // The first reading 0.5 s after the hold is the baseline (the freeze has settled
                // and the hog is read again), then usage still grows: the leak is next.
                (round(1.0, 91.2, 202.0, &[HOG_STILL, LEAK]), none()),
                (
                    round(1.5, 91.3, 100.0, &[HOG_STILL, LEAK]),
                    vec![("suspend", 200)],
                ),
            ],
        ),
        (
            "escalation right after a hold: wait for the hold to show in the signals",
            "",
            vec![
                (
                    round(0.0, 91.0, 200.0, &[HOG, LEAK]),
                    vec![("suspend", 100)],
                ),
                // The growth window still counts the held hog; usage has not moved since.
                (round(0.2, 91.0, 180.0, &[HOG_STILL, LEAK]), none()),
                (round(1.0, 91.0, 100.0, &[HOG_STILL, LEAK]), none()),
                // Now usage grows again since the hold: the leak is next.
                (
                    round(2.0, 92.0, 50.0, &[HOG_STILL, LEAK]),
                    vec![("suspend", 200)],
                ),
            ],
        ),
        (
            "a tree still growing while its hold settles is no reason to hold a bystander",
            "",
            vec![
                (
                    round(
                        0.0,
                        80.4,
                        250.0,
                        &[(100, 1, 10, "hog", 250.0, 320), BYSTANDER],
                    ),
                    vec![("suspend", 100)],
                ),
                // 35 ms later the hog has added 10 MiB before the freeze took hold; the scope
                // grew by about as much (9 MiB, 260 MiB/s since the hold): nothing grows
                // elsewhere.
                (
                    round(
                        0.035,
                        80.49,
                        250.0,
                        &[(100, 1, 10, "hog", 250.0, 330), BYSTANDER],
                    ),
                    none(),
                ),
                // Usage rises 6 MiB more, which the hog's reading (taken before it stopped) does
                // not show: still no other victim before the readings settle.
                (
                    round(
                        0.07,
                        80.55,
                        250.0,
                        &[(100, 1, 10, "hog", 250.0, 330), BYSTANDER],
                    ),
                    none(),
                ),
                // The settled reading (the baseline), then nothing grows elsewhere.
                (
                    round(
                        0.6,
                        80.55,
                        10.0,
                        &[(100, 1, 10, "hog", 0.0, 336), BYSTANDER],
                    ),
                    none(),
                ),
                (
                    round(1.2, 80.55, 0.0, &[(100, 1, 10, "hog", 0.0, 336), BYSTANDER]),
                    none(),
                ),
            ],
        ),
        (
            "hand-off: the stage that grew exited, the next one grows: the next one is held",
            "",
            vec![
                (round(0.0, 86.0, 100.0, &[HOG, IDLE]), none()),
                (
                    round(
                        0.5,
                        91.0,
                        150.0,
                        &[(101, 1, 11, "stage2", 150.0, 3000), IDLE],
                    ),
                    vec![("suspend", 101)],
                ),
            ],
        ),
        (
            "a victim that exits before the action: nothing held, nothing killed after",
            "[actions]\nkill = true\n",
            vec![
                (
                    Round {
                        gone: vec![100],
                        ..round(0.0, 96.0, 200.0, &[HOG, IDLE])
                    },
                    vec![("suspend", 100)],
                ),
                (round(1.0, 96.0, 0.0, &[]), none()),
                (round(10.0, 96.0, 0.0, &[]), none()),
            ],
        ),
        (
            "a pid reused: the held tree's pid in another process is another tree",
            "",
            vec![
                (round(0.0, 91.0, 200.0, &[HOG]), vec![("suspend", 100)]),
                // Same pid, same start: the tree already held, not held twice.
                (round(1.0, 92.0, 200.0, &[HOG]), none()),
                // Same pid, another start time: a new process, growing since the hold.
                (
                    round(2.0, 93.0, 200.0, &[(100, 1, 99, "hog2", 200.0, 1000)]),
                    vec![("suspend", 100)],
                ),
            ],
        ),
        (
            "resume cycle: waits while it would not hold, resumes when it will, kept at max_cycles",
            "max_cycles = 1\n",
            vec![
                (round(0.0, 91.0, 200.0, &[HOG]), vec![("suspend", 100)]),
                (round(1.0, 70.0, 0.0, &[HOG_STILL]), none()),
                // 20 % of 10 GiB at 200 MiB/s: 10 s < resume_hold 30 s. Said once.
                (round(3.5, 70.0, 0.0, &[HOG_STILL]), vec![("wait", 100)]),
                (round(4.0, 70.0, 0.0, &[HOG_STILL]), none()),
                // The user freed memory: 80 % below the line last it 41 s.
                (round(5.0, 10.0, 0.0, &[HOG_STILL]), vec![("resume", 100)]),
                (round(6.0, 91.0, 200.0, &[HOG]), vec![("suspend", 100)]),
                (round(7.0, 10.0, 0.0, &[HOG_STILL]), none()),
                (round(9.5, 10.0, 0.0, &[HOG_STILL]), vec![("keep", 100)]),
                (round(20.0, 10.0, 0.0, &[HOG_STILL]), none()),
            ],
        ),
        (
            "kill: the held tree is killed when the kill level lasts kill_after",
            "[actions]\nkill = true\n",
            vec![
                (
                    round(0.0, 96.0, 200.0, &[HOG, IDLE]),
                    vec![("suspend", 100)],
                ),
                (round(2.0, 96.0, 0.0, &[HOG_STILL, IDLE]), none()),
                (
                    round(5.5, 96.0, 0.0, &[HOG_STILL, IDLE]),
                    vec![("kill", 100)],
                ),
                (round(6.0, 96.0, 0.0, &[]), none()),
            ],
        ),
    ]
}

#[test]
fn scenarios_decide_as_expected() {
    for (name, config, rounds) in scenarios() {
        let mut world = World::new(config);
        for (index, (r, expected)) in rounds.iter().enumerate() {
            let intents = world.step(r);
            assert_eq!(
                acted(&intents),
                *expected,
                "{name}: round {index} at {} s: {intents:#?}",
                r.at_s
            );
        }
    }
}

#[test]
fn reasons_render_as_the_log_reads_them() {
    let mut world = World::new("");
    let intents = world.step(&round(0.0, 91.0, 0.0, &[HOG]));
    let texts: Vec<(&str, String)> = intents
        .iter()
        .map(|i| {
            let why = match i {
                Intent::Level { why }
                | Intent::Warn { why, .. }
                | Intent::Reclaim { why }
                | Intent::Suspend { why, .. }
                | Intent::Resume { why, .. }
                | Intent::Wait { why, .. }
                | Intent::Keep { why, .. }
                | Intent::Kill { why, .. } => why,
            };
            (i.act().as_str(), why.to_string())
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("level", "ok → suspend".to_owned()),
            ("warn", "used 91.0 % >= suspend 90 %".to_owned()),
            ("reclaim", "used 91.0 % >= suspend 90 %".to_owned()),
            (
                "suspend",
                "used 91.0 % >= suspend 90 %; victim 100 (hog) 1 proc(s) growth +200.0 MiB/s \
                 holds 4000.0 MiB"
                    .to_owned()
            ),
        ]
    );
    let Some(Intent::Warn { growers, .. }) = intents.get(1) else {
        panic!("a warn: {intents:#?}");
    };
    assert_eq!(
        growers[0].to_string(),
        "100 (hog) +200.0 MiB/s rss 4000.0 MiB"
    );
    let not_relieved = Why::NotRelieved {
        reasons: vec!["used 96.0 % >= kill 95 %".to_owned()],
        within: Duration::from_secs(5),
    };
    assert_eq!(
        not_relieved.to_string(),
        "used 96.0 % >= kill 95 %; suspension did not relieve pressure within 5s"
    );
}
