//! Reads a trace back: decodes every record up to the end or the first damage; damage (a torn
//! tail after a crash, flipped bytes, a number out of range) is kept with its byte offset next
//! to everything read before it, so reports still show the run up to that point.
//!
//! Hostile files are bounded: only a regular file of at most [`MAX_FILE_BYTES`] is read (a FIFO
//! or `/dev/zero` is refused at once), and the decoded trace takes memory in proportion to the
//! file (see [`codec`]: samples keep only what changed, every count is checked against the
//! bytes that hold it).
use std::path::Path;

use bytes::Buf as _;

use super::{
    Event, Header, MAGIC, TraceError, VERSION,
    codec::{self, Decoder, MAX_TIME_MS, ProcIdent, Replay, Sample},
    frame::{self, kind},
};

/// The largest trace read: an hour of 100 processes at 1 Hz is ~1 MiB, a week ~170 MiB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// An event with its time and position among the samples.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// ms since the Unix epoch.
    pub time_unix_ms: u64,
    /// How many samples precede it in the file (the sample at index `after_samples - 1` is the
    /// state when it happened).
    pub after_samples: usize,
    /// What happened.
    pub event: Event,
}

/// Everything a trace holds.
#[derive(Debug, Default)]
pub struct TraceData {
    /// The header.
    pub header: Header,
    /// Process identities by slot.
    pub idents: Vec<ProcIdent>,
    /// Samples in time order.
    pub samples: Vec<Sample>,
    /// Events in file order.
    pub events: Vec<TimedEvent>,
    /// The end record's summary, when the recorder stopped cleanly.
    pub end: Option<serde_json::Value>,
    /// Where and how the file is damaged, if it is.
    pub damage: Option<TraceError>,
    /// Size of the file.
    pub bytes: u64,
}

impl TraceData {
    /// The identity of `slot` (a blank one if the trace never named it).
    pub fn ident(&self, slot: u32) -> ProcIdent {
        self.idents.get(slot as usize).cloned().unwrap_or_default()
    }

    /// The samples with every process present in each (written or carried forward).
    pub fn replay(&self) -> Replay<'_> {
        Replay::new(&self.samples)
    }
}

/// Reads the trace at `path`: a regular file of at most [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<TraceData, TraceError> {
    let data = crate::host::input::read(path, MAX_FILE_BYTES, "a trace").map_err(|source| {
        TraceError::Io {
            path: path.display().to_string(),
            source,
        }
    })?;
    read_bytes(&data)
}

/// Decodes a whole trace held in memory. Fails only when not even the header reads; later
/// damage ends up in [`TraceData::damage`].
pub fn read_bytes(data: &[u8]) -> Result<TraceData, TraceError> {
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return Err(TraceError::NotATrace);
    }
    let mut rest = &data[MAGIC.len()..];
    if rest.len() < 2 {
        return Err(TraceError::Truncated {
            offset: MAGIC.len() as u64,
            what: "the version is missing".to_owned(),
        });
    }
    let version = rest.get_u16_le();
    if version != VERSION {
        return Err(TraceError::Version(version));
    }
    let mut offset = (MAGIC.len() + 2) as u64;
    let first = frame::decode(rest, offset)?.ok_or(TraceError::Truncated {
        offset,
        what: "the header is missing".to_owned(),
    })?;
    if first.kind != kind::HEADER {
        return Err(TraceError::Corrupt {
            offset,
            what: format!("expected the header record, found kind {}", first.kind),
        });
    }
    let header: Header =
        serde_json::from_slice(first.payload).map_err(|err| TraceError::Corrupt {
            offset,
            what: format!("header: {err}"),
        })?;
    if header.start_unix_ms > MAX_TIME_MS {
        return Err(TraceError::Corrupt {
            offset,
            what: format!(
                "header: start time {} ms is after the year 9999",
                header.start_unix_ms
            ),
        });
    }
    offset += first.len as u64;
    rest = &rest[first.len..];
    let mut trace = TraceData {
        bytes: data.len() as u64,
        ..TraceData::default()
    };
    let mut decoder = Decoder::new(header.start_unix_ms);
    trace.header = header;
    loop {
        match frame::decode(rest, offset) {
            Ok(None) => break,
            Ok(Some(record)) => {
                if let Err(what) = apply(&mut trace, &mut decoder, record.kind, record.payload) {
                    trace.damage = Some(TraceError::Corrupt { offset, what });
                    break;
                }
                offset += record.len as u64;
                rest = &rest[record.len..];
            }
            Err(err) => {
                trace.damage = Some(err);
                break;
            }
        }
    }
    Ok(trace)
}

fn apply(
    trace: &mut TraceData,
    decoder: &mut Decoder,
    kind: u8,
    payload: &[u8],
) -> Result<(), String> {
    match kind {
        kind::SAMPLE => {
            let sample = decoder
                .decode(payload)
                .map_err(|e| format!("sample: {e}"))?;
            trace.samples.push(sample);
        }
        kind::PROC => {
            // The decoder checks the slot: the next new one, or one already named.
            let (slot, ident) = decoder
                .ident(payload)
                .map_err(|e| format!("process: {e}"))?;
            match trace.idents.get_mut(slot as usize) {
                Some(known) => *known = ident,
                None => trace.idents.push(ident),
            }
        }
        kind::EVENT => {
            let mut buf = payload;
            let since = codec::get_varint(&mut buf).map_err(|e| format!("event: {e}"))?;
            let time_unix_ms = trace
                .header
                .start_unix_ms
                .checked_add(since)
                .filter(|t| *t <= MAX_TIME_MS)
                .ok_or_else(|| {
                    format!("event: {since} ms after the start is after the year 9999")
                })?;
            let event: Event = serde_json::from_slice(buf).map_err(|e| format!("event: {e}"))?;
            trace.events.push(TimedEvent {
                time_unix_ms,
                after_samples: trace.samples.len(),
                event,
            });
        }
        kind::END => {
            trace.end = Some(serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null));
        }
        other => return Err(format!("unexpected record kind {other}")),
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod fuzz;

#[cfg(test)]
mod tests {
    //! Write → read round trips, carried-forward processes, exits, and damage with offsets.
    use super::*;
    use crate::{
        collect::model::{ProcSample, Snapshot, SystemSample},
        record::trace::TraceWriter,
    };

    fn proc(pid: u32, anon_mib: u64) -> ProcSample {
        ProcSample {
            pid,
            ppid: 1,
            comm: format!("p{pid}").into(),
            cmdline: format!("p{pid} --flag").into(),
            start_ticks: u64::from(pid) * 10,
            anon_bytes: anon_mib << 20,
            file_bytes: 4096 * 3,
            rss_bytes: (anon_mib << 20) + 4096 * 3,
            peak_rss_bytes: (anon_mib << 20) + 4096 * 3,
            faults: anon_mib * 256,
            gpu_bytes: (pid == 2).then_some(anon_mib << 21),
            ..ProcSample::default()
        }
    }

    fn snapshot(t: u64, procs: Vec<ProcSample>) -> Snapshot {
        Snapshot {
            time_unix_ms: 1_000_000 + t,
            system: SystemSample {
                mem_total_bytes: 8 << 30,
                mem_available_bytes: (6 << 30) - (t << 10),
                psi_some_avg10: Some(1.25),
                ..SystemSample::default()
            },
            procs,
            ..Snapshot::default()
        }
    }

    fn written(path: &Path) -> Vec<u8> {
        let header = Header {
            start_unix_ms: 1_000_000,
            ..Header::default()
        };
        let mut writer = TraceWriter::create(path, &header).expect("create");
        writer
            .sample(&snapshot(0, vec![proc(1, 10), proc(2, 5)]))
            .expect("sample");
        writer
            .event(
                1_000_500,
                &Event::StageBegin {
                    stage: "decode".into(),
                    clip: Some("1".into()),
                    source: "cli".into(),
                    timing: crate::record::trace::MarkTiming::Acknowledged,
                },
            )
            .expect("event");
        writer
            .sample(&snapshot(1000, vec![proc(1, 10), proc(2, 7)]))
            .expect("sample");
        let mut gone = proc(2, 7);
        gone.exited = true;
        writer
            .sample(&snapshot(2000, vec![proc(1, 12), gone]))
            .expect("sample");
        writer
            .sample(&snapshot(3000, vec![proc(1, 12)]))
            .expect("sample");
        writer
            .finish(&serde_json::json!({"ok": true}))
            .expect("finish");
        std::fs::read(path).expect("read back")
    }

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("memtrace-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let data = written(&dir.join("a.mtrace"));
        let trace = read_bytes(&data).expect("reads");
        assert!(trace.damage.is_none(), "{:?}", trace.damage);
        assert_eq!(trace.samples.len(), 4);
        assert_eq!(trace.idents.len(), 2);
        assert_eq!(trace.ident(1).cmdline, "p2 --flag");
        let s1 = &trace.samples[1];
        assert_eq!(s1.time_unix_ms, 1_001_000);
        assert_eq!(s1.system.mem_available_bytes, (6 << 30) - (1000 << 10));
        assert_eq!(s1.system.psi_some_avg10, Some(1.25));
        assert_eq!(s1.changed.len(), 1, "unchanged pid 1 is not written again");
        let mut replay = trace.replay();
        let present = |replay: &mut Replay<'_>| {
            let (_, procs) = replay.step().expect("a sample");
            procs.values().copied().collect::<Vec<_>>()
        };
        let _ = present(&mut replay);
        let procs = present(&mut replay);
        assert_eq!(procs.len(), 2, "unchanged pid 1 is carried forward");
        assert_eq!(procs[0].anon, 10 << 20);
        assert_eq!(procs[1].anon, 7 << 20);
        assert_eq!(procs[1].gpu, Some(14 << 20));
        assert_eq!(procs[1].peak_rss, procs[1].rss());
        assert!(present(&mut replay)[1].exited);
        assert_eq!(present(&mut replay).len(), 1);
        assert!(replay.step().is_none());
        assert_eq!(trace.events.len(), 1);
        assert_eq!(trace.events[0].after_samples, 1);
        assert!(trace.end.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damage_keeps_what_came_before() {
        let dir = std::env::temp_dir().join(format!("memtrace-damage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let data = written(&dir.join("b.mtrace"));
        let cut = &data[..data.len() - 30];
        let trace = read_bytes(cut).expect("header reads");
        let damage = trace.damage.as_ref().expect("truncation found");
        assert!(damage.to_string().contains("truncated at byte"), "{damage}");
        assert!(trace.samples.len() >= 3);
        let mut flipped = data.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x55;
        let trace = read_bytes(&flipped).expect("header reads");
        let offset = trace
            .damage
            .as_ref()
            .and_then(TraceError::offset)
            .expect("offset");
        assert!(offset <= at as u64);
        assert!(matches!(
            read_bytes(b"hello world"),
            Err(TraceError::NotATrace)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
