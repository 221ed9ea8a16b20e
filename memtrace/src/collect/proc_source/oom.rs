//! OOM kills without eBPF: the kernel's own count (a cgroup's `memory.events` or
//! `memory.oom_control` `oom_kill`, or the machine's `/proc/vmstat` `oom_kill`), read at every
//! sample in which a followed process vanished (an OOM victim always does) and at least every
//! [`READ_EVERY`] otherwise (a victim that was born and killed between two samples). A rise
//! becomes one [`OomKill`] per kill. The counter names no process: the largest of the processes
//! that vanished in the same interval is named as the *probable* victim (its comm says so), and
//! a kill with no such process keeps pid 0 and an unknown victim.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    collect::model::{OomKill, ProcSample},
    host::{
        cgroup::{self, Version},
        procfs::OpenFile,
    },
};

/// Where the /proc source reads the OOM-kill count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OomSource {
    /// `/proc/vmstat` `oom_kill`: every kill on the machine.
    Machine,
    /// A memory cgroup's `oom_kill` (in `memory.events` on v2, `memory.oom_control` on v1): the
    /// kills in it and below it.
    Cgroup {
        /// Its directory.
        dir: PathBuf,
        /// Its hierarchy.
        version: Version,
    },
}

/// The longest time between two reads of the counter.
pub(super) const READ_EVERY: Duration = Duration::from_millis(900);

/// The most kills one rise reports (a counter that jumps wildly is not believed in detail).
const MAX_KILLS_PER_SAMPLE: u64 = 64;

/// The comm suffix of a probable victim.
pub const PROBABLE: &str = " (probable victim)";

/// The comm of a kill whose victim is unknown.
pub const UNKNOWN_VICTIM: &str = "? (victim unknown: the OOM counter rose)";

/// An OOM-kill counter, open.
#[derive(Debug)]
pub(super) struct OomCounter {
    file: OpenFile,
    last: u64,
    read_at: Instant,
}

impl OomCounter {
    /// Opens the counter and reads its base; `None` where it is not readable (logged once).
    pub(super) fn open(proc_root: &Path, source: &OomSource) -> Option<Self> {
        let path = match source {
            OomSource::Machine => proc_root.join("vmstat"),
            OomSource::Cgroup { dir, version } => dir.join(version.oom_events().0),
        };
        let mut file = match OpenFile::open(&path) {
            Ok(file) => file,
            Err(err) => {
                log::info!("without eBPF, OOM kills are not reported: {err}");
                return None;
            }
        };
        let last = file.text().ok().and_then(count)?;
        Some(Self {
            file,
            last,
            read_at: Instant::now(),
        })
    }

    /// The kills counted since the previous read, attributed among `vanished` (the processes
    /// that exited since the previous sample); nothing is read when none vanished and the last
    /// read is recent.
    pub(super) fn read(
        &mut self,
        now: Instant,
        vanished: &[ProcSample],
        time_unix_ms: u64,
    ) -> Vec<OomKill> {
        if vanished.is_empty() && now.saturating_duration_since(self.read_at) < READ_EVERY {
            return Vec::new();
        }
        self.read_at = now;
        let Some(count_now) = self.file.text().ok().and_then(count) else {
            return Vec::new();
        };
        // A counter that went down was reset (a new cgroup of the same name): a new base.
        let kills = count_now.saturating_sub(self.last);
        self.last = count_now;
        attribute(kills, vanished, time_unix_ms)
    }
}

/// The `oom_kill` line of a `memory.events`, `memory.oom_control` or `vmstat`.
fn count(text: &str) -> Option<u64> {
    cgroup::stat_value(text, "oom_kill")
}

/// `kills` OOM kills, the largest of `vanished` (by resident + swapped memory, what the OOM
/// killer weighs) named as the probable victims, largest first.
pub(super) fn attribute(kills: u64, vanished: &[ProcSample], time_unix_ms: u64) -> Vec<OomKill> {
    let mut candidates: Vec<&ProcSample> = vanished.iter().collect();
    candidates.sort_by_key(|p| std::cmp::Reverse(p.rss_bytes.saturating_add(p.swap_bytes)));
    let mut candidates = candidates.into_iter();
    (0..kills.min(MAX_KILLS_PER_SAMPLE))
        .map(|_| match candidates.next() {
            Some(victim) => OomKill {
                pid: victim.pid,
                comm: format!("{}{PROBABLE}", victim.comm),
                rss_bytes: victim.rss_bytes,
                time_unix_ms,
            },
            None => OomKill {
                pid: 0,
                comm: UNKNOWN_VICTIM.to_owned(),
                rss_bytes: 0,
                time_unix_ms,
            },
        })
        .collect()
}
