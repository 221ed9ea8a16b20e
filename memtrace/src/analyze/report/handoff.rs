//! Hand-offs: memory one stage keeps that a later stage frees (frames decoded for the next
//! stage, a batch handed on, or an allocation made just after a mark and charged to the stage
//! before it). Judged alone, the keeper looks like a leak and the freer like a stage that gives
//! back more than it took; memory is conserved, so what a stage surely frees every clip was kept
//! by the stages before it. Each freer's release is charged back to the nearest stages before it
//! (cyclically: a stage early in the clip frees what a late stage kept on the clip before) that
//! surely keep memory, clip by clip, and the keepers are judged on what is left.
use serde::Serialize;

use super::judge::{self, Judgement};

/// One stage's retained bytes per clip (round), `None` for a clip it did not run in.
pub type Series = Vec<Option<f64>>;

/// The values of a series that are there, in clip order.
pub fn present(series: &[Option<f64>]) -> Vec<f64> {
    series.iter().flatten().copied().collect()
}

/// Memory kept by one stage and freed by another.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HandOff {
    /// The stage that keeps it.
    pub keeper: String,
    /// The stage that frees it.
    pub freer: String,
    /// Bytes per clip handed over.
    pub per_clip: f64,
    /// Freed on the next clip (the freer runs before the keeper within a clip).
    pub next_clip: bool,
}

/// The stages' series with hand-offs netted out, and the hand-offs found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Netted {
    /// Per stage: its own retained bytes per clip, plus its share of what later stages freed
    /// of it (a clip with no partner value is dropped).
    pub series: Vec<Series>,
    /// The hand-offs.
    pub hand_offs: Vec<HandOff>,
}

/// Nets hand-offs out of `series` (one per stage of `names`, in the order the stages run within
/// a clip, aligned by clip).
pub fn net(names: &[String], series: &[Series]) -> Netted {
    let raw: Vec<Option<Judgement>> = series.iter().map(|s| judge::judge(&present(s))).collect();
    let mut netted = series.to_vec();
    let mut room: Vec<f64> = raw
        .iter()
        .map(|j| j.filter(Judgement::keeps).map_or(0.0, |j| j.per_clip))
        .collect();
    let mut hand_offs = Vec::new();
    let n = series.len();
    for (i, freed) in raw.iter().enumerate() {
        let Some(freed) = freed.filter(Judgement::frees) else {
            continue;
        };
        let total = -freed.per_clip;
        let mut left = total;
        for step in 1..n {
            let j = (i + n - step) % n;
            let take = left.min(room[j]);
            if take <= 0.0 {
                continue;
            }
            let next_clip = j > i;
            let share = take / total;
            let freer = &series[i];
            for (clip, value) in netted[j].iter_mut().enumerate() {
                let partner = freer.get(clip + usize::from(next_clip)).copied().flatten();
                *value = match (*value, partner) {
                    (Some(kept), Some(freed)) => Some(kept + share * freed),
                    _ => None,
                };
            }
            room[j] -= take;
            left -= take;
            hand_offs.push(HandOff {
                keeper: names.get(j).cloned().unwrap_or_default(),
                freer: names.get(i).cloned().unwrap_or_default(),
                per_clip: take,
                next_clip,
            });
            if left <= 0.0 {
                break;
            }
        }
    }
    Netted {
        series: netted,
        hand_offs,
    }
}

#[cfg(test)]
mod tests {
    //! A hand-off within a clip, one across clips, a leak hidden inside a hand-off, and a freer
    //! with no keeper.
    use super::*;

    const MIB: f64 = crate::host::units::MIB as f64;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn series(values: &[f64]) -> Series {
        values.iter().map(|v| Some(v * MIB)).collect()
    }

    #[test]
    fn a_later_stage_freeing_what_an_earlier_kept_cancels_it() {
        let keeps = series(&[20.0, 20.3, 19.8, 20.1, 20.0, 19.9]);
        let frees = series(&[-20.0, -20.1, -19.9, -20.2, -19.8, -20.0]);
        let flat = series(&[0.1, -0.1, 0.0, 0.2, -0.2, 0.0]);
        let out = net(
            &names(&["infer", "mid", "encode"]),
            &[keeps, flat.clone(), frees],
        );
        assert_eq!(out.hand_offs.len(), 1, "{:?}", out.hand_offs);
        let h = &out.hand_offs[0];
        assert_eq!((h.keeper.as_str(), h.freer.as_str()), ("infer", "encode"));
        assert!(!h.next_clip);
        let kept = judge::judge(&present(&out.series[0])).expect("judged");
        assert!(kept.per_clip.abs() < 0.5 * MIB, "{kept:?}");
        assert!(!kept.keeps());
        assert_eq!(out.series[1], flat, "an uninvolved stage is untouched");
    }

    #[test]
    fn a_leak_inside_a_hand_off_is_what_is_left() {
        // infer keeps 23 MiB per clip; decode frees 20 of it on the next clip.
        let decode = series(&[0.0, -20.0, -20.2, -19.9, -20.1, -20.0, -19.8]);
        let infer = series(&[23.0, 23.1, 22.9, 23.0, 23.2, 22.8, 23.0]);
        let out = net(&names(&["decode", "infer"]), &[decode, infer]);
        assert_eq!(out.hand_offs.len(), 1);
        assert!(out.hand_offs[0].next_clip);
        assert!((out.hand_offs[0].per_clip / MIB - 20.0).abs() < 0.5);
        let left = present(&out.series[1]);
        assert_eq!(left.len(), 6, "the last clip's hand-off is still in flight");
        let kept = judge::judge(&left).expect("judged");
        assert!((kept.per_clip / MIB - 3.0).abs() < 0.3, "{kept:?}");
        assert!(kept.keeps());
    }

    #[test]
    fn a_freer_without_a_keeper_changes_nothing() {
        let frees = series(&[-5.0, -5.0, -5.0, -5.0]);
        let flat = series(&[0.0, 0.0, 0.0, 0.0]);
        let input = [flat, frees];
        let out = net(&names(&["a", "b"]), &input);
        assert!(out.hand_offs.is_empty());
        assert_eq!(out.series, input.to_vec());
    }
}
