//! Inputs the engine derives from outside state: GPU over-threshold reasons (naming the top
//! holders). (Where a victim tree is frozen is [`crate::guard::freeze`]'s.)
use crate::{
    collect::{
        gpu::{GpuSample, over_threshold},
        model::Snapshot,
    },
    host::units,
};

/// One reason per GPU at or above `percent`, naming its three largest holders.
pub(super) fn gpu_reasons(sample: &GpuSample, snapshot: &Snapshot, percent: f64) -> Vec<String> {
    over_threshold(sample, percent)
        .into_iter()
        .map(|(index, used, holders)| {
            let names: Vec<String> = holders
                .iter()
                .take(3)
                .map(|(pid, bytes)| {
                    let comm = snapshot
                        .procs
                        .iter()
                        .find(|p| p.pid == *pid)
                        .map_or("?", |p| &*p.comm);
                    format!("{pid} ({comm}) {:.1} GiB", units::to_gib(*bytes))
                })
                .collect();
            format!(
                "GPU {index} memory {used:.1} % >= {percent} %; top holders: {}",
                names.join(", ")
            )
        })
        .collect()
}
