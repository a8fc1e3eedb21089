//! The retry budget of one operation, as Finagle's `RetryBudget` and Envoy's
//! retry budgets work: over the last `window` seconds, retries may be at
//! most `min_per_second × window + ratio × calls`. A fleet of clients that
//! all retry every failure would multiply the load on a struggling
//! dependency; with a budget, an outage costs at most `ratio` more calls.
//!
//! Calls and granted retries are counted in one bucket per second.

use serde::{Deserialize, Serialize};

use warden_policy::recovery::BudgetOptions;

/// A retry budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Per second of the window: (calls, retries).
    buckets: Vec<(u32, u32)>,
    last_sec: i64,
    calls: u64,
    retries: u64,
    /// Retries refused since the budget was created.
    pub refused: u64,
}

/// The budget as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BudgetView {
    /// Calls in the window.
    pub calls: u64,
    /// Retries granted in the window.
    pub retries: u64,
    /// Retries the window allows now.
    pub allowed: u64,
    /// Retries refused since the budget was created.
    pub refused: u64,
}

impl Budget {
    /// An empty budget over `opts.window_secs` seconds.
    pub fn new(opts: &BudgetOptions) -> Budget {
        Budget {
            buckets: vec![(0, 0); opts.window_secs.max(1) as usize],
            last_sec: 0,
            calls: 0,
            retries: 0,
            refused: 0,
        }
    }

    /// Keeps the counts if the window has the same length, else starts over.
    pub fn reconfigure(&mut self, opts: &BudgetOptions) {
        if self.buckets.len() != opts.window_secs.max(1) as usize {
            let refused = self.refused;
            *self = Budget::new(opts);
            self.refused = refused;
        }
    }

    fn advance(&mut self, now_ms: i64) -> usize {
        let n = self.buckets.len() as i64;
        let now = now_ms.div_euclid(1000);
        if now > self.last_sec {
            if now - self.last_sec >= n {
                self.buckets.fill((0, 0));
                self.calls = 0;
                self.retries = 0;
            } else {
                for s in self.last_sec + 1..=now {
                    let b = &mut self.buckets[s.rem_euclid(n) as usize];
                    self.calls -= u64::from(b.0);
                    self.retries -= u64::from(b.1);
                    *b = (0, 0);
                }
            }
            self.last_sec = now;
        }
        self.last_sec.rem_euclid(n) as usize
    }

    /// Counts a call (a first attempt).
    pub fn call(&mut self, now_ms: i64) {
        self.calls_n(now_ms, 1);
    }

    /// Counts `n` calls.
    pub fn calls_n(&mut self, now_ms: i64, n: u64) {
        let i = self.advance(now_ms);
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        self.buckets[i].0 = self.buckets[i].0.saturating_add(n32);
        self.calls += u64::from(n32);
    }

    fn allowed(&self, opts: &BudgetOptions) -> u64 {
        let window = self.buckets.len() as f64;
        (opts.min_per_second * window + opts.ratio * self.calls as f64).floor() as u64
    }

    /// Returns true if and only if one more retry fits now.
    pub fn has_room(&mut self, now_ms: i64, opts: &BudgetOptions) -> bool {
        self.advance(now_ms);
        self.retries < self.allowed(opts)
    }

    /// Grants a retry if the budget has room, and counts it; returns false
    /// (and counts the refusal) if not.
    pub fn try_retry(&mut self, now_ms: i64, opts: &BudgetOptions) -> bool {
        let i = self.advance(now_ms);
        if self.retries < self.allowed(opts) {
            self.buckets[i].1 = self.buckets[i].1.saturating_add(1);
            self.retries += 1;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// Returns the counts now.
    pub fn view(&mut self, now_ms: i64, opts: &BudgetOptions) -> BudgetView {
        self.advance(now_ms);
        BudgetView {
            calls: self.calls,
            retries: self.retries,
            allowed: self.allowed(opts),
            refused: self.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ratio: f64, min_per_second: f64, window_secs: u32) -> BudgetOptions {
        BudgetOptions {
            ratio,
            min_per_second,
            window_secs,
        }
    }

    #[test]
    fn retries_are_a_share_of_calls_plus_a_floor() {
        let o = opts(0.2, 1.0, 10);
        let mut b = Budget::new(&o);
        for _ in 0..100 {
            b.call(0);
        }
        // 10 from the floor (1/s over 10 s) + 20% of 100 calls.
        let granted = (0..100).filter(|_| b.try_retry(0, &o)).count();
        assert_eq!(granted, 30);
        assert_eq!(b.view(0, &o).refused, 70);
    }

    #[test]
    fn calls_and_retries_leave_the_window() {
        let o = opts(0.5, 0.0, 2);
        let mut b = Budget::new(&o);
        for _ in 0..10 {
            b.call(0);
        }
        assert_eq!((0..10).filter(|_| b.try_retry(500, &o)).count(), 5);
        assert!(!b.try_retry(1_999, &o), "still in the window");
        // Second 0 left the 2-second window: no calls, so no retries.
        assert!(!b.try_retry(2_000, &o));
        b.call(2_000);
        b.call(2_000);
        assert!(b.try_retry(2_000, &o), "a fresh share");
        let v = b.view(10_000, &o);
        assert_eq!((v.calls, v.retries), (0, 0));
    }

    #[test]
    fn a_zero_ratio_and_floor_refuses_every_retry() {
        let o = opts(0.0, 0.0, 10);
        let mut b = Budget::new(&o);
        b.call(0);
        assert!(!b.try_retry(0, &o));
    }
}
