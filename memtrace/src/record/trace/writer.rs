//! Appends records to a trace file. Each sample (with the identities it introduces) and each
//! event is one `write()` of complete records, issued as soon as it exists: after a `kill -9`
//! the kernel still holds everything written, so at most the sample being taken is lost.
use std::{fs::File, io::Write as _, path::Path};

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
    path: String,
    encoder: Encoder,
    start_unix_ms: u64,
    samples: u64,
    bytes: u64,
}

impl TraceWriter {
    /// Creates (or truncates) `path` and writes the magic, version and header.
    pub fn create(path: &Path, header: &Header) -> Result<Self, TraceError> {
        let name = path.display().to_string();
        let file = File::create(path).map_err(|source| TraceError::Io {
            path: name.clone(),
            source,
        })?;
        let mut writer = Self {
            file,
            path: name,
            encoder: Encoder::new(header.start_unix_ms),
            start_unix_ms: header.start_unix_ms,
            samples: 0,
            bytes: 0,
        };
        let mut out = BytesMut::new();
        out.put_slice(MAGIC);
        out.put_u16_le(VERSION);
        let json = serde_json::to_vec(header).unwrap_or_default();
        out.extend_from_slice(&frame::encode(kind::HEADER, &json));
        writer.write(&out)?;
        Ok(writer)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), TraceError> {
        self.file.write_all(data).map_err(|source| TraceError::Io {
            path: self.path.clone(),
            source,
        })?;
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
        self.file.sync_all().map_err(|source| TraceError::Io {
            path: self.path.clone(),
            source,
        })?;
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
