//! The clock breakers, budgets and histories read: the kernel's coarse wall
//! clock in the daemon and the library, a hand-moved one in tests, so that
//! every transition is tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of time in milliseconds since the epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Returns the time now.
    fn now_ms(&self) -> i64;

    /// True if and only if this is the wall clock. Otherwise (a test, a
    /// replay of recorded failures) a recovery plugin's `now` is this
    /// clock's time too, so its decision rests on one time.
    fn is_wall(&self) -> bool {
        false
    }
}

/// The system's wall clock, read with `CLOCK_REALTIME_COARSE`: a few
/// nanoseconds instead of a few tens, at the resolution of the kernel's tick
/// (1–4 ms), which is finer than any breaker wait or slow-call duration a
/// policy may set. It is read twice per guarded call, so the cost matters.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
            return warden_core::clock::now_ms();
        }
        (ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000).max(0)
    }

    fn is_wall(&self) -> bool {
        true
    }
}

/// A clock that moves only when told to; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock standing at `ms`.
    pub fn at(ms: i64) -> Self {
        TestClock(Arc::new(AtomicI64::new(ms)))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
