//! A closed breaker's sliding window: the last N calls (a ring of outcome
//! bits with running counts) or the calls of the last N seconds (a bucket per
//! second with running totals, old seconds dropped as time moves on). Both
//! answer their counts in constant time, so a breaker can judge its rates
//! after every call.

use serde::{Deserialize, Serialize};

use warden_policy::recovery::WindowKind;

use super::breaker::{Call, Counts};

/// The sliding window of a closed breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Window {
    /// The last `ring.len()` calls: bit 0 failed, bit 1 slow.
    Count {
        ring: Vec<u8>,
        next: usize,
        len: usize,
        failures: u32,
        slow: u32,
    },
    /// One bucket per second of the last `buckets.len()` seconds.
    Time {
        buckets: Vec<Bucket>,
        last_sec: i64,
        total: Bucket,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Bucket {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Window {
    pub(super) fn new(kind: WindowKind, size: u32) -> Window {
        let size = size.max(1) as usize;
        match kind {
            WindowKind::Count => Window::Count {
                ring: vec![0; size],
                next: 0,
                len: 0,
                failures: 0,
                slow: 0,
            },
            WindowKind::Time => Window::Time {
                buckets: vec![Bucket::default(); size],
                last_sec: 0,
                total: Bucket::default(),
            },
        }
    }

    pub(super) fn fits(&self, kind: WindowKind, size: u32) -> bool {
        match self {
            Window::Count { ring, .. } => kind == WindowKind::Count && ring.len() == size as usize,
            Window::Time { buckets, .. } => {
                kind == WindowKind::Time && buckets.len() == size as usize
            }
        }
    }

    pub(super) fn push(&mut self, now_ms: i64, c: Call) {
        match self {
            Window::Count {
                ring,
                next,
                len,
                failures,
                slow,
            } => {
                if *len == ring.len() {
                    let old = ring[*next];
                    *failures -= u32::from(old & 1);
                    *slow -= u32::from(old >> 1 & 1);
                } else {
                    *len += 1;
                }
                ring[*next] = u8::from(c.failed) | u8::from(c.slow) << 1;
                *failures += u32::from(c.failed);
                *slow += u32::from(c.slow);
                *next = (*next + 1) % ring.len();
            }
            Window::Time { .. } => {
                self.advance(now_ms);
                let Window::Time {
                    buckets,
                    last_sec,
                    total,
                } = self
                else {
                    unreachable!()
                };
                let i = last_sec.rem_euclid(buckets.len() as i64) as usize;
                let b = &mut buckets[i];
                for x in [b, total] {
                    x.calls += 1;
                    x.failures += u32::from(c.failed);
                    x.slow += u32::from(c.slow);
                }
            }
        }
    }

    /// Drops the buckets of seconds that left the window.
    fn advance(&mut self, now_ms: i64) {
        let Window::Time {
            buckets,
            last_sec,
            total,
        } = self
        else {
            return;
        };
        let now_sec = now_ms.div_euclid(1000);
        if now_sec <= *last_sec {
            // The clock stepped back: count in the newest bucket.
            return;
        }
        let n = buckets.len() as i64;
        if now_sec - *last_sec >= n {
            buckets.fill(Bucket::default());
            *total = Bucket::default();
        } else {
            for s in *last_sec + 1..=now_sec {
                let b = &mut buckets[s.rem_euclid(n) as usize];
                total.calls -= b.calls;
                total.failures -= b.failures;
                total.slow -= b.slow;
                *b = Bucket::default();
            }
        }
        *last_sec = now_sec;
    }

    pub(super) fn counts(&mut self, now_ms: i64) -> Counts {
        self.advance(now_ms);
        match self {
            Window::Count {
                len,
                failures,
                slow,
                ..
            } => Counts {
                calls: *len as u32,
                failures: *failures,
                slow: *slow,
            },
            Window::Time { total, .. } => Counts {
                calls: total.calls,
                failures: total.failures,
                slow: total.slow,
            },
        }
    }
}
