//! Bucketed counters over a period: a ring of cells, each holding the
//! amount added under one bucket key (see [`crate::period`]). A sum at key
//! `k` counts only the cells whose key lies within the last `span` keys, so
//! old buckets expire without anyone clearing them, and a calendar period
//! (span 1) starts from zero at each new key.
//!
//! [`AtomicRing`] is read by checks without a lock; [`Ring`] is its plain
//! twin for state only the evaluation touches.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::period::ROLLING_BUCKETS;

/// A key no bucket ever has, so an untouched cell never counts.
const EMPTY: i64 = i64::MIN;

fn live(cell_key: i64, key: i64, span: usize) -> bool {
    cell_key != EMPTY && cell_key <= key && cell_key > key.saturating_sub(span as i64)
}

struct Cell {
    key: AtomicI64,
    amount: AtomicU64,
}

/// A ring whose sums need no lock; writers serialise on a mutex so that a
/// cell is never reset under another writer's addition.
///
/// The cells are held inline, at most [`ROLLING_BUCKETS`] of them: a check
/// on a rate then follows one pointer (the slot's) instead of two, and with
/// 100,000 owners each pointer followed is a likely cache miss.
pub(crate) struct AtomicRing {
    cells: [Cell; ROLLING_BUCKETS],
    /// Cells in use: 16 for a rolling period, 1 for a calendar one.
    span: usize,
    write: Mutex<()>,
}

impl AtomicRing {
    /// Returns a ring of `span` cells, at most [`ROLLING_BUCKETS`].
    pub(crate) fn new(span: usize) -> AtomicRing {
        assert!(
            (1..=ROLLING_BUCKETS).contains(&span),
            "a ring spans 1 to {ROLLING_BUCKETS} buckets"
        );
        AtomicRing {
            cells: std::array::from_fn(|_| Cell {
                key: AtomicI64::new(EMPTY),
                amount: AtomicU64::new(0),
            }),
            span,
            write: Mutex::new(()),
        }
    }

    #[inline]
    fn cells(&self) -> &[Cell] {
        &self.cells[..self.span]
    }

    pub(crate) fn add(&self, key: i64, amount: u64) {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let c = &self.cells[key.rem_euclid(self.span as i64) as usize];
        let held = c.key.load(Ordering::Relaxed);
        if held == key {
            c.amount.fetch_add(amount, Ordering::Relaxed);
        } else if held < key {
            // The amount is replaced before the key is published, so a
            // reader that sees the new key never adds the old amount.
            c.amount.store(amount, Ordering::Relaxed);
            c.key.store(key, Ordering::Release);
        }
        // A key older than the cell's comes from a clock that went back:
        // that bucket has expired, so the amount is dropped.
    }

    #[inline]
    pub(crate) fn sum(&self, key: i64) -> u64 {
        let span = self.span;
        let mut total = 0u64;
        for c in self.cells() {
            if live(c.key.load(Ordering::Acquire), key, span) {
                total = total.saturating_add(c.amount.load(Ordering::Relaxed));
            }
        }
        total
    }

    pub(crate) fn clear(&self) {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        for c in self.cells() {
            c.key.store(EMPTY, Ordering::Release);
            c.amount.store(0, Ordering::Relaxed);
        }
    }

    /// Returns the live cells at `key`, for a snapshot.
    pub(crate) fn export(&self, key: i64) -> Vec<(i64, u64)> {
        let span = self.span;
        let mut out: Vec<(i64, u64)> = self
            .cells()
            .iter()
            .map(|c| {
                (
                    c.key.load(Ordering::Acquire),
                    c.amount.load(Ordering::Relaxed),
                )
            })
            .filter(|&(k, a)| a > 0 && live(k, key, span))
            .collect();
        out.sort_unstable();
        out
    }

    pub(crate) fn import(&self, cells: &[(i64, u64)]) {
        self.clear();
        for &(k, a) in cells {
            self.add(k, a);
        }
    }
}

/// The same ring without atomics.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ring {
    cells: Vec<(i64, u64)>,
}

impl Ring {
    /// Returns a ring of `span` cells; of none, it holds nothing.
    pub(crate) fn new(span: usize) -> Ring {
        Ring {
            cells: vec![(EMPTY, 0); span],
        }
    }

    pub(crate) fn add(&mut self, key: i64, amount: u64) {
        if self.cells.is_empty() {
            return;
        }
        let n = self.cells.len() as i64;
        let c = &mut self.cells[key.rem_euclid(n) as usize];
        if c.0 == key {
            c.1 = c.1.saturating_add(amount);
        } else if c.0 < key {
            *c = (key, amount);
        }
    }

    pub(crate) fn sum(&self, key: i64) -> u64 {
        let span = self.cells.len();
        self.cells
            .iter()
            .filter(|c| live(c.0, key, span))
            .fold(0u64, |t, c| t.saturating_add(c.1))
    }

    pub(crate) fn clear(&mut self) {
        self.cells.fill((EMPTY, 0));
    }

    pub(crate) fn export(&self, key: i64) -> Vec<(i64, u64)> {
        let span = self.cells.len();
        let mut out: Vec<(i64, u64)> = self
            .cells
            .iter()
            .copied()
            .filter(|&(k, a)| a > 0 && live(k, key, span))
            .collect();
        out.sort_unstable();
        out
    }

    pub(crate) fn import(&mut self, cells: &[(i64, u64)]) {
        self.clear();
        for &(k, a) in cells {
            self.add(k, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolling_sum_drops_buckets_older_than_the_span() {
        let r = AtomicRing::new(4);
        r.add(10, 1);
        r.add(11, 2);
        r.add(13, 4);
        assert_eq!(r.sum(13), 7);
        // Key 10 leaves the window at 14, key 11 at 15.
        assert_eq!(r.sum(14), 6);
        assert_eq!(r.sum(15), 4);
        assert_eq!(r.sum(17), 0);
        // Reusing a cell replaces the expired amount rather than adding to it.
        r.add(14, 8);
        assert_eq!(r.sum(14), 14);
        assert_eq!(r.sum(17), 8);
    }

    #[test]
    fn a_single_cell_ring_resets_when_the_key_changes() {
        let r = AtomicRing::new(1);
        r.add(5, 3);
        r.add(5, 3);
        assert_eq!(r.sum(5), 6);
        assert_eq!(r.sum(6), 0);
        r.add(6, 1);
        assert_eq!(r.sum(6), 1);
    }

    #[test]
    fn amounts_from_the_past_do_not_revive_expired_buckets() {
        let r = AtomicRing::new(2);
        r.add(9, 5);
        r.add(7, 100);
        assert_eq!(r.sum(9), 5);
    }

    #[test]
    fn export_and_import_keep_the_live_cells() {
        let r = AtomicRing::new(4);
        r.add(1, 9);
        r.add(20, 1);
        r.add(21, 2);
        assert_eq!(r.export(21), vec![(20, 1), (21, 2)]);
        let s = AtomicRing::new(4);
        s.import(&r.export(21));
        assert_eq!(s.sum(21), 3);
        let mut p = Ring::new(4);
        p.import(&r.export(21));
        assert_eq!((p.sum(21), p.export(21)), (3, vec![(20, 1), (21, 2)]));
        p.clear();
        assert_eq!(p.sum(21), 0);
    }

    #[test]
    fn an_empty_ring_holds_nothing() {
        let mut p = Ring::new(0);
        p.add(3, 3);
        assert_eq!(p.sum(3), 0);
    }
}
