//! The primitives of the sample encoding: LEB128 varints, zigzagged deltas and length-prefixed
//! strings, over `bytes` buffers. Decoding never trusts a number it reads: deltas are checked
//! (no wrapping), string lengths and counts are checked against a limit and the bytes left.
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

/// The largest value a delta carries: both ends are clamped to it, so every change fits an i64
/// and the decoder's checked arithmetic never refuses what an encoder wrote (no counter or
/// time comes near 2^63).
pub const MAX_DELTA_VALUE: u64 = i64::MAX as u64;

/// Appends the change from `old` to `new` (each clamped to [`MAX_DELTA_VALUE`]), zigzagged.
pub fn put_delta(out: &mut BytesMut, old: u64, new: u64) {
    let (old, new) = (old.min(MAX_DELTA_VALUE), new.min(MAX_DELTA_VALUE));
    // Both are at most i64::MAX: the difference fits an i64.
    let delta = new.wrapping_sub(old) as i64;
    put_varint(out, ((delta << 1) ^ (delta >> 63)) as u64);
}

/// Applies one zigzagged change to `old`; a change that takes it below 0 or past u64::MAX is
/// an error, never a wrapped value.
pub fn get_delta(buf: &mut &[u8], old: u64) -> Result<u64, DecodeError> {
    let raw = get_varint(buf)?;
    let delta = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    old.checked_add_signed(delta)
        .ok_or_else(|| DecodeError(format!("a change of {delta} takes {old} out of range")))
}

/// Appends a length-prefixed UTF-8 string.
pub fn put_str(out: &mut BytesMut, text: &str) {
    put_varint(out, text.len() as u64);
    out.put_slice(text.as_bytes());
}

/// Reads a length-prefixed UTF-8 string of at most `max` bytes. The length is checked against
/// `max` and the bytes left before anything is allocated.
pub fn get_str(buf: &mut &[u8], max: usize) -> Result<String, DecodeError> {
    let len = get_varint(buf)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= max)
        .ok_or_else(|| DecodeError(format!("a string of {len} bytes (at most {max} allowed)")))?;
    if buf.remaining() < len {
        return Err(short("a string"));
    }
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    buf.advance(len);
    Ok(text)
}

/// Reads a count of items that each take at least `min_bytes` of the payload, refused when the
/// bytes left cannot hold that many (so a crafted count never sizes an allocation).
pub fn get_count(buf: &mut &[u8], min_bytes: usize, what: &str) -> Result<usize, DecodeError> {
    let count = get_varint(buf)?;
    let room = buf.remaining() / min_bytes.max(1);
    usize::try_from(count)
        .ok()
        .filter(|count| *count <= room)
        .ok_or_else(|| {
            DecodeError(format!(
                "{count} {what} cannot fit in the {} bytes left",
                buf.remaining()
            ))
        })
}

#[cfg(test)]
mod tests {
    //! Deltas at the ends of the range, clamped on the way in and checked on the way out;
    //! counts and strings against the bytes left.
    use super::*;

    fn delta(old: u64, new: u64) -> Result<u64, DecodeError> {
        let mut out = BytesMut::new();
        put_delta(&mut out, old, new);
        get_delta(&mut &out[..], old.min(MAX_DELTA_VALUE))
    }

    #[test]
    fn deltas_round_trip_clamped_and_never_wrap() {
        assert_eq!(delta(5, 3), Ok(3));
        assert_eq!(delta(0, MAX_DELTA_VALUE), Ok(MAX_DELTA_VALUE));
        assert_eq!(delta(MAX_DELTA_VALUE, 0), Ok(0));
        // Past i64::MAX the encoder clamps, so what it writes always decodes.
        assert_eq!(delta(0, u64::MAX), Ok(MAX_DELTA_VALUE));
        assert_eq!(delta(u64::MAX, 7), Ok(7));
        // A crafted change below 0 or past u64::MAX is an error (it used to wrap).
        let mut minus_one = BytesMut::new();
        put_varint(&mut minus_one, 1);
        assert!(get_delta(&mut &minus_one[..], 0).is_err());
        let mut plus_max = BytesMut::new();
        put_varint(&mut plus_max, u64::MAX - 1);
        assert!(get_delta(&mut &plus_max[..], u64::MAX).is_err());
    }

    #[test]
    fn counts_and_strings_must_fit_what_is_left() {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, 3);
        buf.extend_from_slice(&[0; 6]);
        assert_eq!(get_count(&mut &buf[..], 2, "things"), Ok(3));
        let err = get_count(&mut &buf[..], 3, "things").expect_err("3 × 3 > 6");
        assert!(
            err.0.contains("3 things cannot fit in the 6 bytes left"),
            "{err}"
        );
        let mut text = BytesMut::new();
        put_str(&mut text, "hello");
        assert_eq!(get_str(&mut &text[..], 5), Ok("hello".to_owned()));
        assert!(get_str(&mut &text[..], 4).is_err());
        let mut huge = BytesMut::new();
        put_varint(&mut huge, u64::MAX);
        assert!(get_str(&mut &huge[..], usize::MAX).is_err());
    }
}
