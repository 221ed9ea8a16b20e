//! Exact stdout marks: each `--stage-regex` mark line is matched, by byte offset in its stream,
//! to the write(2) that carried it (reported by the kernel's pipe-write program with the
//! writer's memory counters at that write), so the mark's boundary sample describes the moment
//! the pipeline wrote the line, not the later moment memtrace read it.
//!
//! The writes to one pipe are reported in the order they return, each with its byte count, so
//! their byte ranges follow by adding the counts up ([`WriteMatcher`]); the output pump counts
//! the bytes it reads the same way, so the line whose end is at offset `p` was carried by the
//! write whose range holds `p`. Where that cannot be known — a write the kernel could not report
//! (ring full), a record that is late past [`WAIT_FOR_WRITE`], no eBPF — the mark falls back to
//! read time ([`Boundary::Read`]) and the trace says so.
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use memtrace_common::PipeWrite;

use super::{child::OutputPipes, trace::MarkTiming};
use crate::collect::tracer::{PipeWrites, pipes::WatchError};

/// Which output pipe of the traced command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Its stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

impl Stream {
    /// Both, in slot order.
    pub const ALL: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    /// Its slot in the kernel's watch list.
    pub fn slot(self) -> u32 {
        match self {
            Self::Stdout => 0,
            Self::Stderr => 1,
        }
    }

    fn from_slot(slot: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.slot() == slot)
    }
}

/// Where a line ended in its stream: the offset of the byte that ended it (its `\n` or `\r`,
/// or its last byte at the end of the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineAt {
    /// The stream.
    pub stream: Stream,
    /// The byte offset.
    pub at: u64,
}

/// What a mark's boundary sample describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    /// The write that carried the mark line: the writer's counters at that write.
    Written(PipeWrite),
    /// A mark whose sender can wait for the acknowledgement sent after the sample.
    Acknowledged,
    /// The moment memtrace read the mark (approximate).
    Read,
}

impl Boundary {
    /// How the trace records it.
    pub fn timing(&self) -> MarkTiming {
        match self {
            Self::Written(_) => MarkTiming::Write,
            Self::Acknowledged => MarkTiming::Acknowledged,
            Self::Read => MarkTiming::Read,
        }
    }
}

/// One reported write with its byte range in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    start: u64,
    end: u64,
    record: PipeWrite,
}

/// The most reported writes kept per stream between marks (a command printing much more
/// between two marks loses the oldest: a mark needing one falls back to read time).
const KEEP_WRITES: usize = 65_536;

/// What is known about the write that carried a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// This write carried it.
    Found(PipeWrite),
    /// No write reaching it has been reported yet.
    NotYet,
    /// Its write was not reported or no longer kept.
    Unknown,
}

/// The byte ranges of the writes to each stream, from the reported writes in order.
#[derive(Debug, Default)]
pub struct WriteMatcher {
    streams: [StreamWrites; 2],
}

#[derive(Debug, Default)]
struct StreamWrites {
    /// Bytes reported so far: where the next write starts.
    total: u64,
    writes: VecDeque<Written>,
}

impl WriteMatcher {
    /// Adds a reported write (in report order); one for an unknown slot is ignored.
    pub fn push(&mut self, record: PipeWrite) {
        let Some(stream) = Stream::from_slot(record.pipe) else {
            return;
        };
        let writes = &mut self.streams[stream.slot() as usize];
        let start = writes.total;
        writes.total = start.saturating_add(record.bytes);
        if writes.writes.len() == KEEP_WRITES {
            writes.writes.pop_front();
        }
        writes.writes.push_back(Written {
            start,
            end: writes.total,
            record,
        });
    }

    /// The write that carried byte `line.at` of its stream. Lines are looked up in the order
    /// they were read, so the writes before it are forgotten.
    pub fn find(&mut self, line: LineAt) -> Lookup {
        let writes = &mut self.streams[line.stream.slot() as usize];
        while writes.writes.front().is_some_and(|w| w.end <= line.at) {
            writes.writes.pop_front();
        }
        match writes.writes.front() {
            Some(w) if w.start <= line.at => Lookup::Found(w.record),
            Some(_) => Lookup::Unknown,
            None => Lookup::NotYet,
        }
    }
}

/// How long a mark waits for the report of the write that carried it: the report is made when
/// the write returns, which can be a moment after memtrace has read its bytes.
pub const WAIT_FOR_WRITE: Duration = Duration::from_millis(50);

/// The kernel's reports of writes to the command's output pipes, and their matching.
#[derive(Debug)]
pub struct ExactMarks {
    writes: PipeWrites,
    matcher: WriteMatcher,
    drained: Vec<PipeWrite>,
}

impl ExactMarks {
    /// Watches both of `pipes`, written by the processes this one forks from now on: call it
    /// before the command starts (so from its first byte), and [`Self::started`] after.
    pub fn watch(mut writes: PipeWrites, pipes: &OutputPipes) -> Result<Self, WatchError> {
        for stream in Stream::ALL {
            writes.watch(stream.slot(), pipes.read_end(stream))?;
        }
        writes.add_writer(std::process::id())?;
        Ok(Self {
            writes,
            matcher: WriteMatcher::default(),
            drained: Vec::new(),
        })
    }

    /// The command started (a fork of this process, so its tree is looked at): this process's
    /// own writes no longer are.
    pub fn started(&mut self) {
        self.writes.remove_writer(std::process::id());
    }

    /// Takes the writes reported so far (at every sample, so the ring never fills).
    pub fn drain(&mut self) {
        self.writes.drain(&mut self.drained);
        for record in self.drained.drain(..) {
            self.matcher.push(record);
        }
    }

    /// The boundary of the mark whose line ended at `line`: the write that carried it, waiting
    /// up to [`WAIT_FOR_WRITE`] for its report; read time where it cannot be known.
    pub fn boundary(&mut self, line: LineAt) -> Boundary {
        let deadline = Instant::now() + WAIT_FOR_WRITE;
        loop {
            self.drain();
            match self.matcher.find(line) {
                Lookup::Found(record) if !self.writes.lost(line.stream.slot()) => {
                    return Boundary::Written(record);
                }
                Lookup::NotYet if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                _ => return Boundary::Read,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Matching mark lines to the writes that carried them: the line offsets come from the
    //! output pump's own line splitter, fed the bytes of each write.
    use super::*;
    use crate::record::{child::LineHead, marks::StageRegex};

    /// Feeds `writes` (writer tgid, bytes) to a stdout stream as the pump and the kernel would
    /// see them; returns each mark's stage and the tgid of the write matched to it.
    fn marks_and_writers(writes: &[(u32, &[u8])]) -> Vec<(String, Lookup)> {
        let re = StageRegex::new(r"^clip (?P<clip>\d+): (?P<stage>\w+)$").expect("valid");
        let mut matcher = WriteMatcher::default();
        let mut head = LineHead::default();
        let mut found = Vec::new();
        for &(tgid, bytes) in writes {
            matcher.push(PipeWrite {
                tgid,
                pipe: Stream::Stdout.slot(),
                bytes: bytes.len() as u64,
                ..PipeWrite::default()
            });
            let mut lines = Vec::new();
            head.feed(bytes, |line, at| {
                if let Some(crate::record::Mark::Begin { stage, .. }) =
                    re.mark(String::from_utf8_lossy(line).trim_end())
                {
                    lines.push((stage, at));
                }
            });
            for (stage, at) in lines {
                let lookup = matcher.find(LineAt {
                    stream: Stream::Stdout,
                    at,
                });
                found.push((stage, lookup));
            }
        }
        found
    }

    fn tgid(lookup: &Lookup) -> Option<u32> {
        match lookup {
            Lookup::Found(w) => Some(w.tgid),
            _ => None,
        }
    }

    #[test]
    fn a_mark_split_across_writes_belongs_to_the_write_that_ends_it() {
        let found = marks_and_writers(&[
            (1, b"noise\nclip 1: de"),
            (2, b"code"),
            (3, b"\nclip 1: infer\n"),
        ]);
        let got: Vec<_> = found.iter().map(|(s, l)| (s.as_str(), tgid(l))).collect();
        assert_eq!(got, vec![("decode", Some(3)), ("infer", Some(3))]);
    }

    #[test]
    fn several_marks_in_one_write_all_belong_to_it() {
        let found = marks_and_writers(&[
            (7, b"clip 1: decode\nclip 1: infer\nclip 1: encode\n"),
            (8, b"clip 2: decode\n"),
        ]);
        let got: Vec<_> = found.iter().map(|(s, l)| (s.as_str(), tgid(l))).collect();
        assert_eq!(
            got,
            vec![
                ("decode", Some(7)),
                ("infer", Some(7)),
                ("encode", Some(7)),
                ("decode", Some(8)),
            ]
        );
    }

    #[test]
    fn carriage_return_chatter_between_marks_keeps_the_offsets() {
        let mut writes: Vec<(u32, &[u8])> = vec![(1, b"clip 1: decode\r")];
        for _ in 0..500 {
            writes.push((2, b" 42%|####      |\r"));
        }
        writes.push((3, b"\r\n"));
        writes.push((4, b"clip 1: infer\r\n"));
        writes.push((5, b" 99%|#########|\rclip 2: decode\r"));
        let found = marks_and_writers(&writes);
        let got: Vec<_> = found.iter().map(|(s, l)| (s.as_str(), tgid(l))).collect();
        assert_eq!(
            got,
            vec![("decode", Some(1)), ("infer", Some(4)), ("decode", Some(5))]
        );
    }

    #[test]
    fn missing_or_late_reports_are_never_guessed() {
        let mut matcher = WriteMatcher::default();
        let line = |at| LineAt {
            stream: Stream::Stdout,
            at,
        };
        assert_eq!(
            matcher.find(line(0)),
            Lookup::NotYet,
            "nothing reported yet"
        );
        matcher.push(PipeWrite {
            tgid: 1,
            pipe: 0,
            bytes: 10,
            ..PipeWrite::default()
        });
        assert_eq!(
            matcher.find(line(12)),
            Lookup::NotYet,
            "its write comes later"
        );
        // Another stream's writes do not move stdout's offsets; an unknown slot is ignored.
        for pipe in [1, 9] {
            matcher.push(PipeWrite {
                tgid: 2,
                pipe,
                bytes: 5,
                ..PipeWrite::default()
            });
        }
        matcher.push(PipeWrite {
            tgid: 3,
            pipe: 0,
            bytes: 5,
            ..PipeWrite::default()
        });
        assert_eq!(tgid(&matcher.find(line(12))), Some(3));
        assert_eq!(
            matcher.find(line(3)),
            Lookup::Unknown,
            "bytes before the last lookup are forgotten, not guessed"
        );
        // Past the kept window: the oldest writes are dropped, and a line in them is unknown.
        let mut matcher = WriteMatcher::default();
        for tgid in 0..=KEEP_WRITES as u32 {
            matcher.push(PipeWrite {
                tgid,
                pipe: 0,
                bytes: 1,
                ..PipeWrite::default()
            });
        }
        assert_eq!(matcher.find(line(0)), Lookup::Unknown);
        assert_eq!(tgid(&matcher.find(line(1))), Some(1));
    }
}
