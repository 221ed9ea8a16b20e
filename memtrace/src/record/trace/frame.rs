//! Record framing: `[u8 kind][u32 LE length][payload][u32 LE CRC-32]`, the CRC (IEEE) covering
//! kind, length and payload, so a torn tail and flipped bytes are both caught at the record
//! where they start.
use bytes::{Buf as _, BufMut as _, BytesMut};

use super::TraceError;

/// Record kinds.
pub mod kind {
    /// The JSON header (first record).
    pub const HEADER: u8 = 1;
    /// One delta-encoded sample.
    pub const SAMPLE: u8 = 2;
    /// A process identity (slot, pid, ppid, start time, comm, cmdline).
    pub const PROC: u8 = 3;
    /// One JSON event with its time.
    pub const EVENT: u8 = 4;
    /// Clean end of the trace.
    pub const END: u8 = 5;
}

/// Bytes a record adds around its payload.
pub const OVERHEAD: usize = 1 + 4 + 4;
/// Largest payload accepted (a sample of ~100k processes fits easily).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// CRC-32 (IEEE 802.3) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Frames one record.
pub fn encode(kind: u8, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(payload.len() + OVERHEAD);
    out.put_u8(kind);
    out.put_u32_le(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(payload);
    let crc = crc32(&out);
    out.put_u32_le(crc);
    out
}

/// One framed record found in a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its kind.
    pub kind: u8,
    /// Its payload.
    pub payload: &'a [u8],
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// Its framed length.
    pub len: usize,
}

/// Reads the record at the start of `buf` (found at file offset `offset`); `Ok(None)` at a clean
/// end of the data.
pub fn decode(buf: &[u8], offset: u64) -> Result<Option<Record<'_>>, TraceError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let truncated = |what: String| TraceError::Truncated { offset, what };
    if buf.len() < 5 {
        return Err(truncated(format!(
            "record header needs 5 bytes, {} left",
            buf.len()
        )));
    }
    let mut head = &buf[..5];
    let kind = head.get_u8();
    let len = head.get_u32_le() as usize;
    if !(kind::HEADER..=kind::END).contains(&kind) || len > MAX_PAYLOAD {
        return Err(TraceError::Corrupt {
            offset,
            what: format!("invalid record header (kind {kind}, length {len})"),
        });
    }
    let total = len + OVERHEAD;
    if buf.len() < total {
        return Err(truncated(format!(
            "record of {total} bytes, {} left",
            buf.len()
        )));
    }
    let mut tail = &buf[5 + len..total];
    let stored = tail.get_u32_le();
    if crc32(&buf[..5 + len]) != stored {
        return Err(TraceError::Corrupt {
            offset,
            what: "checksum mismatch".to_owned(),
        });
    }
    Ok(Some(Record {
        kind,
        payload: &buf[5..5 + len],
        offset,
        len: total,
    }))
}

#[cfg(test)]
mod tests {
    //! Framing round trip, the CRC check value, and the two kinds of damage.
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_and_damage() {
        let framed = encode(kind::EVENT, b"hello");
        let record = decode(&framed, 10).expect("valid").expect("a record");
        assert_eq!(
            (record.kind, record.payload, record.len),
            (kind::EVENT, &b"hello"[..], 14)
        );
        assert!(matches!(
            decode(&framed[..9], 10),
            Err(TraceError::Truncated { offset: 10, .. })
        ));
        let mut bad = framed.to_vec();
        bad[6] ^= 1;
        assert!(matches!(
            decode(&bad, 3),
            Err(TraceError::Corrupt { offset: 3, .. })
        ));
        assert_eq!(decode(&[], 0).expect("empty is a clean end"), None);
    }
}
