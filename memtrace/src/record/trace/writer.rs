//! Appends records to a trace file. Each sample (with the identities it introduces) and each
//! event is one `write()` of complete records, issued as soon as it exists: after a `kill -9`
//! the kernel still holds everything written, so at most the sample being taken is lost.
//!
//! A writer dropped before [`TraceWriter::finish`] with nothing written after the header (the
//! command did not exist, the first sample failed) removes its file, if the path still names
//! the file it created: a failed `run` or `record` leaves no header-only trace behind.
use std::{
    fs::File,
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use bytes::{BufMut as _, BytesMut};

use super::{
    Event, Header, MAGIC, TraceError, VERSION,
    codec::{self, Encoder},
    frame::{self, kind},
};
use crate::collect::model::Snapshot;

/// An open trace being written.
#[derive(Debug)]
pub struct TraceWriter {
    file: File,
    path: PathBuf,
    encoder: Encoder,
    start_unix_ms: u64,
    samples: u64,
    bytes: u64,
    /// Bytes of the magic, version and header.
    header_bytes: u64,
    /// The end record is written: the file is kept whatever happens.
    finished: bool,
}

impl TraceWriter {
    /// Creates (or truncates) `path` and writes the magic, version and header.
    pub fn create(path: &Path, header: &Header) -> Result<Self, TraceError> {
        let file = File::create(path).map_err(|source| TraceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut writer = Self {
            file,
            path: path.to_path_buf(),
            encoder: Encoder::new(header.start_unix_ms),
            start_unix_ms: header.start_unix_ms,
            samples: 0,
            bytes: 0,
            header_bytes: 0,
            finished: false,
        };
        let mut out = BytesMut::new();
        out.put_slice(MAGIC);
        out.put_u16_le(VERSION);
        let json = serde_json::to_vec(header).unwrap_or_default();
        out.extend_from_slice(&frame::encode(kind::HEADER, &json));
        writer.write(&out)?;
        writer.header_bytes = writer.bytes;
        Ok(writer)
    }

    fn io_error(&self, source: std::io::Error) -> TraceError {
        TraceError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), TraceError> {
        self.file
            .write_all(data)
            .map_err(|source| self.io_error(source))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Appends one sample of `snapshot` (already filtered to what is traced).
    pub fn sample(&mut self, snapshot: &Snapshot) -> Result<(), TraceError> {
        let (idents, payload) = self.encoder.encode(snapshot);
        let mut out = BytesMut::with_capacity(payload.len() + 64 * (idents.len() + 1));
        for (slot, ident) in &idents {
            out.extend_from_slice(&frame::encode(
                kind::PROC,
                &codec::encode_ident(*slot, ident),
            ));
        }
        out.extend_from_slice(&frame::encode(kind::SAMPLE, &payload));
        self.samples += 1;
        self.write(&out)
    }

    /// Appends one event that happened at `time_unix_ms`.
    pub fn event(&mut self, time_unix_ms: u64, event: &Event) -> Result<(), TraceError> {
        let mut payload = BytesMut::new();
        codec::put_varint(
            &mut payload,
            time_unix_ms.saturating_sub(self.start_unix_ms),
        );
        payload.extend_from_slice(&serde_json::to_vec(event).unwrap_or_default());
        let framed = frame::encode(kind::EVENT, &payload);
        self.write(&framed)
    }

    /// Writes the end record (a JSON summary) and flushes the file to disk.
    pub fn finish(mut self, summary: &serde_json::Value) -> Result<u64, TraceError> {
        let framed = frame::encode(kind::END, &serde_json::to_vec(summary).unwrap_or_default());
        self.write(&framed)?;
        self.finished = true;
        self.file
            .sync_all()
            .map_err(|source| self.io_error(source))?;
        Ok(self.bytes)
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        if self.finished || self.bytes > self.header_bytes {
            return;
        }
        // Only the file this writer created: not one renamed into its place meanwhile.
        let ours = match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Which unfinished traces are removed on drop.
    use super::*;

    fn header() -> Header {
        Header {
            start_unix_ms: 1_700_000_000_000,
            interval_ms: 1000,
            ..Header::default()
        }
    }

    #[test]
    fn a_header_only_trace_is_removed_when_dropped_unfinished() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("failed.mtrace");
        let writer = TraceWriter::create(&path, &header()).expect("create");
        assert!(path.exists());
        drop(writer);
        assert!(!path.exists(), "nothing recorded: no file left");
    }

    #[test]
    fn traces_with_records_or_an_end_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let crashed = dir.path().join("crashed.mtrace");
        let mut writer = TraceWriter::create(&crashed, &header()).expect("create");
        writer
            .event(
                1_700_000_000_500,
                &Event::RunEnd {
                    exit_code: Some(1),
                    signal: None,
                },
            )
            .expect("event");
        drop(writer);
        assert!(crashed.exists(), "what was recorded stays readable");

        let empty = dir.path().join("empty.mtrace");
        let writer = TraceWriter::create(&empty, &header()).expect("create");
        writer.finish(&serde_json::json!({})).expect("finish");
        assert!(
            empty.exists(),
            "a finished trace is kept, even without samples"
        );

        // Another file renamed into the path meanwhile is not ours to remove.
        let replaced = dir.path().join("replaced.mtrace");
        let writer = TraceWriter::create(&replaced, &header()).expect("create");
        std::fs::write(dir.path().join("other"), b"x").expect("write");
        std::fs::rename(dir.path().join("other"), &replaced).expect("rename");
        drop(writer);
        assert!(replaced.exists());
    }
}
