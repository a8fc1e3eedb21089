//! The wall clock, in the unit every record uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns milliseconds since the Unix epoch (0 if the clock is before it).
#[inline]
pub fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Read directly: every recorded sample takes the time, and this skips
    // `SystemTime`'s checked subtraction and conversions (a third of the cost).
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return fallback_ms();
    }
    (ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000).max(0)
}

#[cold]
fn fallback_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
