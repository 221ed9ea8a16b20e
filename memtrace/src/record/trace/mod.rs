//! Trace files: what `memtrace record` and `memtrace run --out` write and `report`/`export`
//! read.
//!
//! Layout (version 1): the 8-byte magic `MEMTRACE`, a little-endian u16 version, then records
//! framed as `[u8 kind][u32 LE payload length][payload][u32 LE CRC-32 of kind+length+payload]`
//! ([`frame`]). The first record is the self-describing [`Header`] (JSON); then, appended as they
//! happen, process identities, samples (delta-encoded, see [`codec`]), events (JSON, see
//! [`Event`]; a guard decision holds its typed action and outcome, see [`decision`]) and, on a
//! clean stop, an end record. Every record is handed to the kernel with one
//! `write()` as soon as it is complete, so a `kill -9` of the recorder loses at most the sample
//! being taken; a torn or corrupt record is reported with its byte offset and everything before
//! it still reads ([`reader`]).
pub mod codec;
pub mod decision;
pub mod frame;
pub mod header;
pub mod process;
pub mod reader;
pub mod varint;
pub mod writer;

pub use decision::{Act, Outcome};
pub use header::Header;
pub use reader::{TraceData, read_bytes, read_file};
use serde::{Deserialize, Serialize};
pub use writer::TraceWriter;

/// The file starts with these bytes.
pub const MAGIC: &[u8; 8] = b"MEMTRACE";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;

/// Something that happened during a trace, with its time kept by the record that holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A stage began (and any stage still open ended).
    StageBegin {
        /// Stage name (`decode`, `composite`, …).
        stage: String,
        /// Clip the stage works on, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<String>,
        /// Which marking way produced it: `cli`, `socket`, `regex`.
        #[serde(default)]
        source: String,
        /// What moment its boundary sample describes (older traces: read time).
        #[serde(default)]
        timing: MarkTiming,
    },
    /// A stage ended.
    StageEnd {
        /// Stage name.
        stage: String,
        /// Clip, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<String>,
    },
    /// A process joined the traced tree (fork or exec).
    Exec {
        /// Its pid.
        pid: u32,
        /// Its parent.
        ppid: u32,
        /// Command name.
        comm: String,
    },
    /// A process of the traced tree exited.
    Exit {
        /// Its pid.
        pid: u32,
        /// Command name.
        comm: String,
        /// The kernel OOM killer chose it.
        #[serde(default)]
        oom_killed: bool,
    },
    /// The kernel OOM killer killed a process (anywhere on the host).
    OomKill {
        /// The victim.
        pid: u32,
        /// Its command name.
        comm: String,
        /// Its resident set when chosen.
        rss_bytes: u64,
    },
    /// The guard decided something.
    GuardDecision {
        /// Pressure level (`warn`, `suspend`, …).
        level: String,
        /// What it did, by its lowercase name (`suspend`, `kill`, `resume`, …): the names older
        /// traces wrote as free text, so they decode to the same actions.
        action: Act,
        /// Why, in words.
        reason: String,
        /// The processes acted on.
        #[serde(default)]
        pids: Vec<u32>,
        /// How it went (`done`, `dry_run`, `failed`, `reported`); `None` where that is not
        /// known: in traces written before outcomes were recorded, and for the releases when a
        /// run ends (their reason says how each went).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<Outcome>,
    },
    /// The traced tree's host memory with shared pages counted once, after a sample of a
    /// process tree: Σ Pss_Anon + Pss_Shmem + SwapPss of its live processes (`smaps_rollup`;
    /// a process whose rollup cannot be read counts with its anon + shmem + swap).
    TreeMemory {
        /// The sum, bytes.
        pss_bytes: u64,
    },
    /// The traced command ended.
    RunEnd {
        /// Its exit code, when it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// The signal that ended it, when one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
}

/// What moment a stage mark's boundary sample describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkTiming {
    /// The pipeline's write(2) of the mark line (`--stage-regex` with eBPF): the writer's
    /// counters are the kernel's at that write; the rest of the tree is sampled right after.
    Write,
    /// A socket mark whose sender can wait for the acknowledgement, which is sent after the
    /// sample (`memtrace mark` always waits): exact when it does.
    Acknowledged,
    /// When memtrace read the mark (stdout marks without eBPF or whose write was not reported,
    /// datagrams nobody waits on, older traces): approximate, the pipeline may have moved on.
    #[default]
    Read,
}

impl MarkTiming {
    /// What it guarantees, for the report.
    pub fn words(self) -> &'static str {
        match self {
            Self::Write => "exact (sampled at the pipeline's write of the mark line)",
            Self::Acknowledged => "exact if the sender waited (sampled before the acknowledgement)",
            Self::Read => "approximate (sampled when memtrace read the mark)",
        }
    }
}

/// Why a trace could not be written or read. Damage names the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a memtrace trace at all.
    #[error("not a memtrace trace (no MEMTRACE magic at byte 0)")]
    NotATrace,
    /// Written by a newer memtrace.
    #[error("trace format version {0} is not supported (this memtrace reads version {VERSION})")]
    Version(u16),
    /// The file ends in the middle of a record (the recorder died while writing it).
    #[error("trace truncated at byte {offset}: {what}; everything before it was read")]
    Truncated {
        /// Offset of the incomplete record.
        offset: u64,
        /// What was missing.
        what: String,
    },
    /// A record fails its checksum or does not decode.
    #[error("trace corrupt at byte {offset}: {what}; everything before it was read")]
    Corrupt {
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

impl TraceError {
    /// The byte offset of the damage, for truncated and corrupt traces.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Truncated { offset, .. } | Self::Corrupt { offset, .. } => Some(*offset),
            Self::NotATrace => Some(0),
            Self::Version(_) => Some(MAGIC.len() as u64),
            _ => None,
        }
    }
}
