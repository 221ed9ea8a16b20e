//! Stage runs regrouped by clip: which clip (round of the pipeline) each run belongs to, every
//! stage's retained memory per clip, and the whole tree's growth per clip.
//!
//! A new clip starts each time the first stage that runs more than once begins again, so a
//! setup stage that runs once and a stage that runs twice per clip both land in the right clip
//! whether or not the marks name clips.
use std::collections::HashMap;

use super::{handoff::Series, judge::MIN_CLIPS, stages::StageRun};

/// The runs of a trace, by stage and clip.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clips {
    /// Stage names, in order of first appearance.
    pub stages: Vec<String>,
    /// Runs per stage.
    pub runs: Vec<usize>,
    /// Per stage, host bytes retained on each clip (summed if it ran twice on one).
    pub host: Vec<Series>,
    /// Per stage, GPU bytes retained on each clip; all `None` when it has no GPU data.
    pub gpu: Vec<Series>,
    /// The tree's host growth on each clip: from the clip's first mark to the next clip's, so
    /// memory kept between marks counts too. The last clip has no next mark: it counts (to its
    /// last run's end, missing what is kept after it) only when too few clips come before it.
    pub tree_host: Vec<f64>,
    /// The same for GPU memory, when every run has GPU data.
    pub tree_gpu: Option<Vec<f64>>,
}

impl Clips {
    /// Groups `runs` (in trace order).
    pub fn of(runs: &[StageRun]) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut stages: Vec<String> = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        let slots: Vec<usize> = runs
            .iter()
            .map(|run| {
                let slot = *index.entry(&run.stage).or_insert_with(|| {
                    stages.push(run.stage.clone());
                    counts.push(0);
                    stages.len() - 1
                });
                counts[slot] += 1;
                slot
            })
            .collect();
        let round_stage = counts.iter().position(|c| *c > 1).unwrap_or(0);
        let mut clip_of = Vec::with_capacity(runs.len());
        let (mut clip, mut seen) = (0usize, false);
        for slot in &slots {
            if *slot == round_stage {
                clip += usize::from(seen);
                seen = true;
            }
            clip_of.push(clip);
        }
        let clips = if runs.is_empty() { 0 } else { clip + 1 };
        let mut host = vec![vec![None; clips]; stages.len()];
        let mut gpu = vec![vec![None; clips]; stages.len()];
        let mut has_gpu = vec![true; stages.len()];
        let mut bounds: Vec<Option<(&StageRun, &StageRun)>> = vec![None; clips];
        for ((run, slot), clip) in runs.iter().zip(&slots).zip(&clip_of) {
            let add = |cell: &mut Option<f64>, v: f64| *cell = Some(cell.unwrap_or(0.0) + v);
            add(&mut host[*slot][*clip], run.host_retained as f64);
            match run.gpu {
                Some(g) => add(&mut gpu[*slot][*clip], g[3] as f64),
                None => has_gpu[*slot] = false,
            }
            let bound = &mut bounds[*clip];
            *bound = Some(bound.map_or((run, run), |(first, _)| (first, run)));
        }
        for (series, has) in gpu.iter_mut().zip(&has_gpu) {
            if !has {
                series.iter_mut().for_each(|v| *v = None);
            }
        }
        let firsts: Vec<(&StageRun, &StageRun)> = bounds.into_iter().flatten().collect();
        let whole = if firsts.len() > MIN_CLIPS {
            firsts.len() - 1
        } else {
            firsts.len()
        };
        let growth = |value: &dyn Fn(&StageRun, bool) -> Option<f64>| -> Option<Vec<f64>> {
            firsts
                .iter()
                .take(whole)
                .enumerate()
                .map(|(i, (first, last))| {
                    let end = match firsts.get(i + 1) {
                        Some((next, _)) => value(next, false)?,
                        None => value(last, true)?,
                    };
                    Some(end - value(first, false)?)
                })
                .collect()
        };
        let tree_host = growth(&|run, end| {
            Some(if end {
                run.host_end as f64
            } else {
                run.host_start as f64
            })
        })
        .unwrap_or_default();
        let tree_gpu = growth(&|run, end| run.gpu.map(|g| g[usize::from(end)] as f64))
            .filter(|_| !firsts.is_empty());
        Self {
            stages,
            runs: counts,
            host,
            gpu,
            tree_host,
            tree_gpu,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Clips found from the first repeating stage, a setup stage, a stage twice per clip, and
    //! the tree's growth including memory kept between marks.
    use super::*;

    fn run(stage: &str, start: u64, end: u64) -> StageRun {
        StageRun {
            stage: stage.to_owned(),
            host_start: start,
            host_end: end,
            host_retained: super::super::stages::change(start, end),
            ..StageRun::default()
        }
    }

    #[test]
    fn clips_start_at_the_first_stage_that_repeats() {
        let runs = vec![
            run("load", 0, 100),
            run("decode", 100, 110),
            run("infer", 110, 113),
            run("infer", 113, 116),
            run("decode", 120, 130),
            run("infer", 130, 133),
            run("infer", 133, 136),
        ];
        let clips = Clips::of(&runs);
        assert_eq!(clips.stages, ["load", "decode", "infer"]);
        assert_eq!(clips.runs, [1, 2, 4]);
        assert_eq!(clips.host[0], [Some(100.0), None], "setup: clip 1 only");
        assert_eq!(clips.host[1], [Some(10.0), Some(10.0)]);
        assert_eq!(
            clips.host[2],
            [Some(6.0), Some(6.0)],
            "twice per clip: summed"
        );
        // Clip 1 from load's start to clip 2's first mark; the last clip to its end.
        assert_eq!(clips.tree_host, [120.0, 16.0]);
        assert!(clips.tree_gpu.is_none());
        assert!(clips.gpu.iter().flatten().all(Option::is_none));
    }

    #[test]
    fn memory_kept_between_marks_is_the_trees() {
        let runs = vec![
            run("a", 0, 5),
            run("b", 5, 6),
            run("a", 9, 14),
            run("b", 14, 15),
            run("a", 18, 23),
            run("b", 23, 24),
        ];
        let clips = Clips::of(&runs);
        assert_eq!(clips.host[0], [Some(5.0); 3]);
        assert_eq!(clips.host[1], [Some(1.0); 3]);
        assert_eq!(
            clips.tree_host,
            [9.0, 9.0, 6.0],
            "the gaps 6 → 9 count for the tree"
        );
    }
}
