//! The quantities users type and read: byte sizes ([`bytes`]) and durations ([`duration`]).
pub mod bytes;
pub mod duration;

pub use bytes::{
    GIB, KIB, MIB, SizeError, human_bytes, mib, mib_f64, parse_size, signed_mib, to_gib, to_mib,
    to_mib_f64,
};
pub use duration::{DurationError, parse_duration};
