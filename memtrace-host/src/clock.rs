//! The clocks memtrace stamps things with: wall time in ms since the Unix epoch (traces, logs),
//! seconds since boot (the clock of /proc start times) and the tick rate of those start times.
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::{
    param::clock_ticks_per_second,
    time::{ClockId, clock_gettime},
};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since boot (CLOCK_BOOTTIME), the clock /proc start times are on.
pub fn boottime_s() -> f64 {
    let ts = clock_gettime(ClockId::Boottime);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Clock ticks per second (`USER_HZ`), the unit of /proc start times.
pub fn clock_ticks() -> u64 {
    Some(clock_ticks_per_second())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}
