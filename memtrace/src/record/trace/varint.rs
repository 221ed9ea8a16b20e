//! The primitives of the sample encoding: LEB128 varints, zigzagged deltas and length-prefixed
//! strings, over `bytes` buffers.
use bytes::{Buf as _, BufMut as _, BytesMut};

/// Why a payload did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn short(what: &str) -> DecodeError {
    DecodeError(format!("payload ends inside {what}"))
}

/// Appends `value` as LEB128.
pub fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Reads one LEB128 value.
pub fn get_varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(short("a number"));
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError("number longer than 10 bytes".to_owned()))
}

/// Appends the change from `old` to `new`, zigzagged.
pub fn put_delta(out: &mut BytesMut, old: u64, new: u64) {
    let delta = new.wrapping_sub(old) as i64;
    put_varint(out, ((delta << 1) ^ (delta >> 63)) as u64);
}

/// Applies one zigzagged change to `old`.
pub fn get_delta(buf: &mut &[u8], old: u64) -> Result<u64, DecodeError> {
    let raw = get_varint(buf)?;
    let delta = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    Ok(old.wrapping_add(delta as u64))
}

/// Appends a length-prefixed UTF-8 string.
pub fn put_str(out: &mut BytesMut, text: &str) {
    put_varint(out, text.len() as u64);
    out.put_slice(text.as_bytes());
}

/// Reads a length-prefixed UTF-8 string.
pub fn get_str(buf: &mut &[u8]) -> Result<String, DecodeError> {
    let len = usize::try_from(get_varint(buf)?).unwrap_or(usize::MAX);
    if buf.remaining() < len {
        return Err(short("a string"));
    }
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    buf.advance(len);
    Ok(text)
}
