//! The exits the rare-event programs report with their memory
//! ([`TracerOptions::exit_memory`](crate::collect::tracer::TracerOptions::exit_memory): `top`
//! by default), joined into the /proc source's readings. A process the source followed leaves
//! with the memory it had as it exited and its peak up to then (the kernel's high-water mark),
//! not only with its last reading; a process born and gone between two readings, which the
//! source never saw, is added as an exited sample with its peak, as the per-event tracer's exit
//! events add it.
//!
//! An exit event can arrive before the source notices the exit (the event is sent as the
//! process starts exiting, its pidfd becomes readable a little later): it waits, at most
//! [`KEEP_ROUNDS`] readings, for the source to report that process gone.
use std::collections::HashMap;

use memtrace_common::{ProcEvent, event_kind};

use super::ebpf::{comm_string, sample_from_stats};
use crate::collect::{model::ProcSample, tracer::RssMembers};

/// Readings an exit event waits for the /proc source to report its process gone.
const KEEP_ROUNDS: u8 = 3;

/// Exit events waiting for their process's last reading.
#[derive(Debug, Default)]
pub(super) struct ExitMemory {
    pending: HashMap<u32, (ProcEvent, u8)>,
}

impl ExitMemory {
    /// Joins this reading's exit `events` into the source's `exited` samples (memory at exit,
    /// peak, the kernel's fault count), and appends a sample for each exit of a process the
    /// source never read (neither in `live` nor in `exited`).
    pub(super) fn join(
        &mut self,
        events: &[ProcEvent],
        live: &[ProcSample],
        exited: &mut Vec<ProcSample>,
        members: RssMembers,
    ) {
        for event in events.iter().filter(|e| e.kind == event_kind::EXIT) {
            self.pending.insert(event.pid, (*event, KEEP_ROUNDS));
        }
        for sample in exited.iter_mut() {
            if let Some((event, _)) = self.pending.remove(&sample.pid) {
                apply(sample, &event, members);
            }
        }
        let mut born_and_gone = Vec::new();
        self.pending.retain(|&pid, (event, rounds)| {
            if live.iter().any(|sample| sample.pid == pid) {
                // Exiting as the source read it: its exit comes in a later reading.
                *rounds -= 1;
                return *rounds > 0;
            }
            let mut sample = sample_from_stats(pid, &event.stats, members);
            sample.comm = comm_string(&event.comm).into();
            sample.exited = true;
            born_and_gone.push(sample);
            false
        });
        born_and_gone.sort_by_key(|sample| sample.pid);
        exited.extend(born_and_gone);
    }
}

/// The memory `event` reports at exit, over the source's last reading of that process.
fn apply(sample: &mut ProcSample, event: &ProcEvent, members: RssMembers) {
    let at_exit = sample_from_stats(sample.pid, &event.stats, members);
    sample.rss_bytes = at_exit.rss_bytes;
    sample.anon_bytes = at_exit.anon_bytes;
    sample.file_bytes = at_exit.file_bytes;
    sample.shmem_bytes = at_exit.shmem_bytes;
    sample.swap_bytes = at_exit.swap_bytes;
    sample.peak_rss_bytes = sample.peak_rss_bytes.max(at_exit.peak_rss_bytes);
    sample.faults = sample.faults.max(at_exit.faults);
}

#[cfg(test)]
mod tests {
    //! Exit events joined into readings: the source's exits, processes it never saw, and an
    //! event that comes before the source notices the exit.
    use memtrace_common::{COMM_LEN, ProcStats};

    use super::*;

    const MIB: u64 = 1 << 20;
    const MEMBERS: RssMembers = RssMembers {
        file: 0,
        anon: 1,
        swap: 2,
        shmem: 3,
    };

    fn sample(pid: u32, rss: u64, peak: u64) -> ProcSample {
        ProcSample {
            pid,
            comm: "read".into(),
            rss_bytes: rss,
            anon_bytes: rss,
            peak_rss_bytes: peak,
            faults: 10,
            ..ProcSample::default()
        }
    }

    fn exit(pid: u32, comm: &str, anon: u64, peak: u64, faults: u64) -> ProcEvent {
        let mut raw = [0u8; COMM_LEN];
        raw[..comm.len()].copy_from_slice(comm.as_bytes());
        ProcEvent {
            kind: event_kind::EXIT,
            pid,
            ts_ns: 1,
            comm: raw,
            stats: ProcStats {
                rss_bytes: [MIB, anon, 0, 0],
                peak_rss_bytes: peak,
                faults,
                ..ProcStats::ZERO
            },
        }
    }

    #[test]
    fn a_followed_process_leaves_with_its_memory_at_exit_and_its_peak() {
        let mut joined = ExitMemory::default();
        let mut exited = vec![sample(10, 8 * MIB, 8 * MIB)];
        let events = [exit(10, "clip", 100 * MIB, 300 * MIB, 5000)];
        joined.join(&events, &[], &mut exited, MEMBERS);
        assert_eq!(exited.len(), 1);
        let gone = &exited[0];
        assert_eq!(gone.comm.as_ref(), "read", "the source's identity is kept");
        assert_eq!(
            (gone.anon_bytes, gone.file_bytes, gone.rss_bytes),
            (100 * MIB, MIB, 101 * MIB)
        );
        assert_eq!(gone.peak_rss_bytes, 300 * MIB);
        assert_eq!(gone.faults, 5000);
        assert!(joined.pending.is_empty());
    }

    #[test]
    fn a_process_the_source_never_read_is_added_with_its_peak() {
        let mut joined = ExitMemory::default();
        let mut exited = Vec::new();
        let events = [
            exit(21, "dd", 32 * MIB, 33 * MIB, 8300),
            exit(20, "sh", MIB, 2 * MIB, 90),
        ];
        joined.join(&events, &[sample(5, MIB, MIB)], &mut exited, MEMBERS);
        let pids: Vec<u32> = exited.iter().map(|s| s.pid).collect();
        assert_eq!(pids, [20, 21]);
        let dd = &exited[1];
        assert!(dd.exited);
        assert_eq!(dd.comm.as_ref(), "dd");
        assert_eq!(dd.peak_rss_bytes, 33 * MIB);
        assert_eq!(dd.faults, 8300);
        // Events that are not exits are not this join's.
        let victim = ProcEvent {
            kind: event_kind::OOM_VICTIM,
            ..exit(30, "hog", 0, 0, 0)
        };
        let mut exited = Vec::new();
        joined.join(&[victim], &[], &mut exited, MEMBERS);
        assert!(exited.is_empty());
    }

    #[test]
    fn an_event_before_the_source_notices_the_exit_waits_for_it() {
        let mut joined = ExitMemory::default();
        let live = [sample(10, 8 * MIB, 8 * MIB)];
        let mut exited = Vec::new();
        joined.join(
            &[exit(10, "clip", 64 * MIB, 96 * MIB, 900)],
            &live,
            &mut exited,
            MEMBERS,
        );
        assert!(exited.is_empty(), "still live in this reading");
        // The next reading reports it gone: the waiting event completes it.
        let mut exited = vec![sample(10, 8 * MIB, 8 * MIB)];
        joined.join(&[], &[], &mut exited, MEMBERS);
        assert_eq!(exited[0].peak_rss_bytes, 96 * MIB);
        assert!(joined.pending.is_empty());
        // One whose exit the source never reports is forgotten after KEEP_ROUNDS readings.
        let mut exited = Vec::new();
        joined.join(
            &[exit(11, "x", 0, 0, 0)],
            &live_of(11),
            &mut exited,
            MEMBERS,
        );
        for _ in 1..KEEP_ROUNDS {
            assert_eq!(joined.pending.len(), 1);
            joined.join(&[], &live_of(11), &mut exited, MEMBERS);
        }
        assert!(joined.pending.is_empty() && exited.is_empty());
    }

    fn live_of(pid: u32) -> [ProcSample; 1] {
        [sample(pid, MIB, MIB)]
    }
}
