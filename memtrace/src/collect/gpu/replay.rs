//! A GPU source replayed from a file, chosen by configuration (`MEMTRACE_GPU_REPLAY=FILE`), so
//! the whole GPU path — sampler, trace, report, exports — runs end to end on a machine without
//! a GPU. The file holds per-process GPU memory over time, one line each:
//!
//! ```text
//! total 25769803776        # optional: the device's memory (one device, "replay GPU")
//! 0    4242 1073741824     # SECONDS PID BYTES: from SECONDS after the source opened, pid
//! 2.5  4242 1090519040     #   4242 holds BYTES (its latest line in effect wins)
//! ```
//!
//! The file is read again at every sample (at most [`MAX_BYTES`]), so a pipeline can append
//! `0 PID BYTES` lines as it "allocates" and memtrace sees them at its next sample. A line that
//! does not parse is skipped (said once).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use super::{GpuProcess, GpuSample, GpuSource};
use crate::collect::model::GpuDevice;

/// The environment variable that names a replay file.
pub const REPLAY_ENV: &str = "MEMTRACE_GPU_REPLAY";
/// The most of a replay file read.
pub const MAX_BYTES: u64 = 16 << 20;

/// Replays a file of per-process GPU memory.
#[derive(Debug)]
pub struct ReplaySource {
    path: PathBuf,
    opened: Instant,
    warned: bool,
}

/// What a replay file says at `elapsed_s`: the device total and each pid's bytes.
pub fn parse(text: &str, elapsed_s: f64) -> (Option<u64>, BTreeMap<u32, u64>, usize) {
    let (mut total, mut held, mut bad) = (None, BTreeMap::new(), 0usize);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["total", bytes] => match bytes.parse::<u64>() {
                Ok(bytes) => total = Some(bytes),
                Err(_) => bad += 1,
            },
            [at, pid, bytes] => match (at.parse::<f64>(), pid.parse::<u32>(), bytes.parse()) {
                (Ok(at), Ok(pid), Ok(bytes)) if at.is_finite() => {
                    if at <= elapsed_s {
                        held.insert(pid, bytes);
                    }
                }
                _ => bad += 1,
            },
            _ => bad += 1,
        }
    }
    (total, held, bad)
}

impl ReplaySource {
    /// Replays `path` from now on.
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            opened: Instant::now(),
            warned: false,
        }
    }
}

impl GpuSource for ReplaySource {
    fn sample(&mut self) -> GpuSample {
        let text = match crate::host::input::read_to_string(&self.path, MAX_BYTES, "a GPU replay") {
            Ok(text) => text,
            Err(err) => {
                if !std::mem::replace(&mut self.warned, true) {
                    log::warn!("GPU replay {}: {err}", self.path.display());
                }
                return GpuSample::default();
            }
        };
        let (total, held, bad) = parse(&text, self.opened.elapsed().as_secs_f64());
        if bad > 0 && !std::mem::replace(&mut self.warned, true) {
            log::warn!(
                "GPU replay {}: {bad} line(s) skipped (want `SECONDS PID BYTES` or `total BYTES`)",
                self.path.display()
            );
        }
        let used = held.values().fold(0u64, |a, b| a.saturating_add(*b));
        GpuSample {
            devices: vec![GpuDevice {
                index: 0,
                name: "replay GPU".to_owned(),
                used_bytes: used,
                total_bytes: total.unwrap_or(0),
                utilization_percent: None,
            }],
            processes: held
                .into_iter()
                .map(|(pid, used_bytes)| GpuProcess {
                    pid,
                    gpu_index: 0,
                    used_bytes,
                })
                .collect(),
        }
    }

    fn name(&self) -> &'static str {
        "replay"
    }
}

#[cfg(test)]
mod tests {
    //! Lines in effect by time, the latest per pid, the total, bad lines, and a live file.
    use super::*;

    #[test]
    fn the_latest_line_in_effect_wins() {
        let text = "total 1000 # one device\n0 7 10\n1.5 7 30\n0 8 5\n9 8 99\nnonsense\n0 x 1\n";
        let (total, held, bad) = parse(text, 2.0);
        assert_eq!(total, Some(1000));
        assert_eq!(held, BTreeMap::from([(7, 30), (8, 5)]));
        assert_eq!(bad, 2);
        let (_, early, _) = parse(text, 1.0);
        assert_eq!(early, BTreeMap::from([(7, 10), (8, 5)]));
    }

    #[test]
    fn a_file_appended_live_is_seen_at_the_next_sample() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gpu.replay");
        std::fs::write(&path, "total 4096\n").expect("write");
        let mut source = ReplaySource::open(&path);
        let first = source.sample();
        assert_eq!(first.devices[0].used_bytes, 0);
        assert!(first.processes.is_empty());
        std::fs::write(&path, "total 4096\n0 42 1024\n0 42 2048\n").expect("write");
        let second = source.sample();
        assert_eq!(second.devices[0].used_bytes, 2048);
        assert_eq!(second.devices[0].total_bytes, 4096);
        assert_eq!(
            second.processes,
            vec![GpuProcess {
                pid: 42,
                gpu_index: 0,
                used_bytes: 2048
            }]
        );
        assert_eq!(source.name(), "replay");
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(
            source.sample(),
            GpuSample::default(),
            "a missing file: nothing"
        );
    }
}
