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

/// What a ring holds, kept beside it by its writers (under its write
/// lock) so that a reader can bound its sum without reading its cells:
/// `total` is every cell's amount, live or expired, and rises before a cell
/// does and falls after; `latest` is the newest key added.
pub(crate) struct Held {
    pub(crate) total: AtomicU64,
    pub(crate) latest: AtomicI64,
}

impl Default for Held {
    fn default() -> Held {
        Held {
            total: AtomicU64::new(0),
            latest: AtomicI64::new(EMPTY),
        }
    }
}

impl Held {
    /// Returns a bound [`AtomicRing::sum`] at `key` never exceeds, for a
    /// ring of `span` cells: 0 once even the newest cell has expired.
    #[inline]
    pub(crate) fn bound(&self, key: i64, span: usize) -> u64 {
        if live(self.latest.load(Ordering::Relaxed), key, span) {
            self.total.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Returns a bound of [`AtomicRing::sum`] at `key` for a ring of `span`
    /// cells, unless a cell is newer than `key` (a clock that went back):
    /// `total` bounds only what is at or before `latest`.
    #[inline]
    pub(crate) fn bound_at(&self, key: i64, span: usize) -> Option<u64> {
        let latest = self.latest.load(Ordering::Relaxed);
        if latest > key {
            None
        } else if live(latest, key, span) {
            Some(self.total.load(Ordering::Relaxed))
        } else {
            Some(0)
        }
    }
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

    /// Adds `amount` under bucket `key`, keeping `held` (see [`Held`]).
    pub(crate) fn add(&self, key: i64, amount: u64, held: &Held) {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let c = &self.cells[key.rem_euclid(self.span as i64) as usize];
        let cell_key = c.key.load(Ordering::Relaxed);
        if cell_key == key {
            held.total.fetch_add(amount, Ordering::Relaxed);
            c.amount.fetch_add(amount, Ordering::Relaxed);
        } else if cell_key < key {
            held.total.fetch_add(amount, Ordering::Relaxed);
            held.latest.fetch_max(key, Ordering::Relaxed);
            let old = c.amount.load(Ordering::Relaxed);
            // The amount is replaced before the key is published, so a
            // reader that sees the new key never adds the old amount.
            c.amount.store(amount, Ordering::Relaxed);
            c.key.store(key, Ordering::Release);
            held.total.fetch_sub(old, Ordering::Relaxed);
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

    pub(crate) fn clear(&self, held: &Held) {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        for c in self.cells() {
            c.key.store(EMPTY, Ordering::Release);
            c.amount.store(0, Ordering::Relaxed);
        }
        held.total.store(0, Ordering::Relaxed);
        held.latest.store(EMPTY, Ordering::Relaxed);
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

    pub(crate) fn import(&self, cells: &[(i64, u64)], held: &Held) {
        self.clear(held);
        for &(k, a) in cells {
            self.add(k, a, held);
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

    /// A ring and the total its writers keep.
    struct Kept(AtomicRing, Held);

    impl Kept {
        fn new(span: usize) -> Kept {
            Kept(AtomicRing::new(span), Held::default())
        }

        fn add(&self, key: i64, amount: u64) {
            self.0.add(key, amount, &self.1);
            // The total is every cell's amount, live or not.
            let cells: u64 = self
                .0
                .cells()
                .iter()
                .map(|c| c.amount.load(Ordering::Relaxed))
                .sum();
            assert_eq!(self.1.total.load(Ordering::Relaxed), cells);
        }

        fn sum(&self, key: i64) -> u64 {
            let s = self.0.sum(key);
            assert!(s <= self.1.bound(key, self.0.span));
            s
        }
    }

    #[test]
    fn a_rolling_sum_drops_buckets_older_than_the_span() {
        let r = Kept::new(4);
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
        let r = Kept::new(1);
        r.add(5, 3);
        r.add(5, 3);
        assert_eq!(r.sum(5), 6);
        assert_eq!(r.sum(6), 0);
        r.add(6, 1);
        assert_eq!(r.sum(6), 1);
    }

    #[test]
    fn amounts_from_the_past_do_not_revive_expired_buckets() {
        let r = Kept::new(2);
        r.add(9, 5);
        r.add(7, 100);
        assert_eq!(r.sum(9), 5);
    }

    #[test]
    fn export_and_import_keep_the_live_cells() {
        let r = Kept::new(4);
        r.add(1, 9);
        r.add(20, 1);
        r.add(21, 2);
        assert_eq!(r.0.export(21), vec![(20, 1), (21, 2)]);
        let s = Kept::new(4);
        s.0.import(&r.0.export(21), &s.1);
        assert_eq!(s.1.total.load(Ordering::Relaxed), 3);
        s.0.clear(&s.1);
        assert_eq!((s.sum(21), s.1.total.load(Ordering::Relaxed)), (0, 0));
        s.0.import(&r.0.export(21), &s.1);
        assert_eq!(s.sum(21), 3);
        let mut p = Ring::new(4);
        p.import(&r.0.export(21));
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
