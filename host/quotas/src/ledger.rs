//! Usage accounting for one quota: a slot per owner (one shared slot when
//! the quota is not per owner), in shards so that checks on different
//! owners never wait on each other.
//!
//! A slot holds the level (what is held now, or what the host measured),
//! the rate ring when the quota measures a rate, the limit checks are held
//! to (set by each evaluation), and the state machine's tracker.
//!
//! Hot path: a check hashes the owner, takes its shard's read lock, and
//! reads atomics; it never allocates. With many owners, what it costs is
//! the cache lines it reads that are not in cache, so it reads one: the
//! slot at the owner's hash, which holds the name and what a check reads. Writes to a slot also happen under the
//! read lock; only the first charge of a new owner and pruning take the
//! write lock, which is why pruning an idle slot can never lose a charge.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::fast::RandomState;

use crate::state::{State, Thresholds, Tracker};
use crate::window::{AtomicRing, Held};

/// Shards per quota: enough that 2–16 cores rarely meet on one lock.
const SHARDS: usize = 16;

/// Owner names up to this long are kept in the slot itself: what is left
/// of its cache line.
const INLINE: usize = 22;

/// `Slot::len` of a name longer than [`INLINE`]: `short` holds its first
/// bytes and [`Cold::long`] all of it.
const LONG: u8 = u8::MAX;

/// What a new slot is made with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Rate ring cells; 0 when the quota is not a rate.
    pub(crate) rate_span: usize,
    /// Burst-time ring cells; 0 without a burst allowance.
    pub(crate) burst_span: usize,
    /// The limit checks start at.
    pub(crate) ceiling: u64,
}

/// One owner's usage and state: the map entry itself, one cache line
/// holding what checks and evaluations of calm owners read (with 100,000
/// owners each line read is a likely cache miss, so a check reads one).
/// What else a slot holds is behind `cold`.
#[repr(align(64))]
pub(crate) struct Slot {
    pub(crate) level: AtomicU64,
    pub(crate) ceiling: AtomicU64,
    /// For a rate: a bound of what its ring holds, so that a check or an
    /// evaluation of an owner under its limits need not follow the
    /// pointer to the ring.
    pub(crate) held: Held,
    cold: Box<Cold>,
    /// True if and only if the state is `ok` with no burst time in the
    /// period: the ceiling is the first one, and an evaluation with usage
    /// under every limit has nothing to do.
    pub(crate) calm: AtomicBool,
    /// The owner's name: `short[..len]`, or `cold.long` if `len` is `LONG`.
    len: u8,
    short: [u8; INLINE],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// What a slot holds that checks do not read.
struct Cold {
    rate: Option<Box<AtomicRing>>,
    tracker: Mutex<Tracker>,
    /// The owner's name if longer than [`INLINE`], else empty.
    long: Box<str>,
}

impl Slot {
    fn new(owner: &str, shape: Shape) -> Slot {
        let mut short = [0; INLINE];
        let (len, long) = if owner.len() <= INLINE {
            short[..owner.len()].copy_from_slice(owner.as_bytes());
            (owner.len() as u8, Box::default())
        } else {
            short.copy_from_slice(&owner.as_bytes()[..INLINE]);
            (LONG, owner.into())
        };
        Slot {
            level: AtomicU64::new(0),
            ceiling: AtomicU64::new(shape.ceiling),
            held: Held::default(),
            cold: Box::new(Cold {
                rate: (shape.rate_span > 0).then(|| Box::new(AtomicRing::new(shape.rate_span))),
                tracker: Mutex::new(Tracker::new(shape.burst_span)),
                long,
            }),
            calm: AtomicBool::new(true),
            len,
            short,
        }
    }

    /// Returns the owner's name.
    #[inline]
    pub(crate) fn owner(&self) -> &str {
        // `LONG` is out of `short`'s range.
        match self.short.get(..usize::from(self.len)) {
            // SAFETY: the bytes were copied whole from a `&str` in `new`, so
            // they are valid UTF-8.
            Some(b) => unsafe { std::str::from_utf8_unchecked(b) },
            None => &self.cold.long,
        }
    }

    /// Returns true if and only if this is `owner`'s slot: a long name is
    /// read from `cold` only if its first bytes match.
    #[inline]
    fn is(&self, owner: &str) -> bool {
        let b = owner.as_bytes();
        if b.len() <= INLINE {
            usize::from(self.len) == b.len() && self.short[..b.len()] == *b
        } else {
            self.len == LONG && self.short == b[..INLINE] && *self.cold.long == *owner
        }
    }

    /// Returns the rate's ring, if the quota is a rate.
    pub(crate) fn rate(&self) -> Option<&AtomicRing> {
        self.cold.rate.as_deref()
    }

    /// Returns usage at bucket `key`: the rate's sum, else the level.
    #[inline]
    pub(crate) fn usage(&self, key: i64) -> u64 {
        match self.rate() {
            Some(r) => r.sum(key),
            None => self.level.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(&self, key: i64, amount: u64) {
        match self.rate() {
            Some(r) => r.add(key, amount, &self.held),
            None => {
                self.level.fetch_add(amount, Ordering::Relaxed);
            }
        }
    }

    /// Returns a bound usage at bucket `key` never exceeds, read without
    /// following a pointer: the level, or a bound of a rate's ring of
    /// `span` cells (0 when not a rate).
    #[inline]
    pub(crate) fn bound(&self, key: i64, span: usize) -> u64 {
        if span > 0 {
            self.held.bound(key, span)
        } else {
            self.level.load(Ordering::Relaxed)
        }
    }

    /// Returns usage at bucket `key` for a rate of `span` cells (0 if not
    /// a rate), or a bound of it when that is at most `fits`: the ring is
    /// read only when the bound in this cache line does not fit.
    #[inline]
    pub(crate) fn usage_within(&self, key: i64, span: usize, fits: u64) -> u64 {
        if span == 0 {
            return self.level.load(Ordering::Relaxed);
        }
        match self.held.bound_at(key, span) {
            Some(b) if b <= fits => b,
            _ => self.usage(key),
        }
    }

    /// Empties a rate's ring.
    pub(crate) fn clear_rate(&self) {
        if let Some(r) = self.rate() {
            r.clear(&self.held);
        }
    }

    /// Sets a rate's ring to `cells` (from a snapshot).
    pub(crate) fn import_rate(&self, cells: &[(i64, u64)]) {
        if let Some(r) = self.rate() {
            r.import(cells, &self.held);
        }
    }

    /// Takes `amount` off the level, never below zero.
    pub(crate) fn sub(&self, amount: u64) {
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self
            .level
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(amount))
            });
    }

    pub(crate) fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.cold.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes what checks and evaluations read of tracker `t`.
    pub(crate) fn publish(&self, t: &Tracker, th: &Thresholds, key: i64) {
        self.ceiling.store(t.ceiling(th, key), Ordering::Relaxed);
        let calm = t.state == State::Ok && t.burst_used.sum(key) == 0;
        self.calm.store(calm, Ordering::Relaxed);
    }

    /// Returns true if and only if the slot holds nothing worth keeping.
    pub(crate) fn idle(&self, key: i64) -> bool {
        self.calm.load(Ordering::Relaxed)
            && self.level.load(Ordering::Relaxed) == 0
            && self.rate().is_none_or(|r| r.sum(key) == 0)
    }
}

/// One shard's slots: open addressing with linear probing, so that a
/// lookup reads the slot at the owner's hash (or the next few, adjacent)
/// and nothing before it; a table with separate control bytes would read
/// theirs first, a second likely cache miss on the critical path.
#[derive(Default)]
struct Table {
    /// A power of two long, at most 7/8 full so that probes end at an
    /// empty place; empty before the first insert. Kept this full since a
    /// smaller table misses the cache less: at most half full, probes were
    /// shorter but checks slower.
    slots: Box<[Option<Slot>]>,
    len: usize,
}

const _: () = assert!(std::mem::size_of::<Option<Slot>>() == 64);

impl Table {
    #[inline]
    fn get(&self, hash: u64, owner: &str) -> Option<&Slot> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = hash as usize & mask;
        loop {
            match &self.slots[i] {
                None => return None,
                Some(s) if s.is(owner) => return Some(s),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `slot`, whose owner has none here, at `hash`.
    fn insert(&mut self, hash: u64, slot: Slot, hasher: &RandomState) -> &Slot {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.rebuild((self.slots.len() * 2).max(16), hasher, |_| true);
        }
        self.len += 1;
        let i = self.place(hash);
        self.slots[i].insert(slot)
    }

    /// Returns the first empty place from `hash`'s.
    fn place(&self, hash: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        i
    }

    /// Moves the slots that `keep` accepts to a table of `size` places:
    /// how it grows, and how slots are dropped without leaving gaps that
    /// would cut other owners' probes short.
    fn rebuild(&mut self, size: usize, hasher: &RandomState, keep: impl Fn(&Slot) -> bool) {
        let old = std::mem::replace(&mut self.slots, (0..size).map(|_| None).collect());
        self.len = 0;
        for slot in old.into_vec().into_iter().flatten() {
            if keep(&slot) {
                let i = self.place(hasher.hash_one(slot.owner()));
                self.slots[i] = Some(slot);
                self.len += 1;
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().flatten()
    }
}

/// The slots of one quota.
pub(crate) struct Ledger {
    shards: Box<[RwLock<Table>]>,
    /// One hash per lookup picks both the shard (top bits) and the place
    /// in it (low bits). Seeded per process: owners are names applications
    /// choose, so a fixed seed would let one crowd a shard or a probe run.
    hasher: RandomState,
    shape: Shape,
}

impl Ledger {
    pub(crate) fn new(shape: Shape) -> Ledger {
        Ledger {
            shards: (0..SHARDS).map(|_| RwLock::new(Table::default())).collect(),
            hasher: RandomState::default(),
            shape,
        }
    }

    /// Returns the cells of each slot's rate ring (0 if not a rate).
    pub(crate) fn rate_span(&self) -> usize {
        self.shape.rate_span
    }

    /// Returns `owner`'s hash and shard.
    #[inline]
    fn shard(&self, owner: &str) -> (u64, &RwLock<Table>) {
        let h = self.hasher.hash_one(owner);
        (h, &self.shards[(h >> 60) as usize % SHARDS])
    }

    fn read(lock: &RwLock<Table>) -> RwLockReadGuard<'_, Table> {
        lock.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(lock: &RwLock<Table>) -> RwLockWriteGuard<'_, Table> {
        lock.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on `owner`'s slot, if it has one.
    #[inline]
    pub(crate) fn with<R>(&self, owner: &str, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        let (h, shard) = self.shard(owner);
        Self::read(shard).get(h, owner).map(f)
    }

    /// Runs `f` on `owner`'s slot, making it first if need be.
    pub(crate) fn with_new<R>(&self, owner: &str, f: impl FnOnce(&Slot) -> R) -> R {
        let (h, shard) = self.shard(owner);
        if let Some(slot) = Self::read(shard).get(h, owner) {
            return f(slot);
        }
        let mut table = Self::write(shard);
        // Another thread may have made it between the two locks.
        if let Some(slot) = table.get(h, owner) {
            return f(slot);
        }
        f(table.insert(h, Slot::new(owner, self.shape), &self.hasher))
    }

    /// Runs `f` on every slot, one shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &Slot)) {
        for shard in self.shards.iter() {
            for slot in Self::read(shard).iter() {
                f(slot.owner(), slot);
            }
        }
    }

    /// Drops the slots that hold nothing at bucket `key`, so owners that
    /// come and go do not accumulate.
    pub(crate) fn prune(&self, key: i64) {
        for shard in self.shards.iter() {
            let mut table = Self::write(shard);
            if table.iter().any(|s| s.idle(key)) {
                let size = table.slots.len();
                table.rebuild(size, &self.hasher, |s| !s.idle(key));
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::read(s).len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rate_span: usize) -> Shape {
        Shape {
            rate_span,
            burst_span: 0,
            ceiling: 10,
        }
    }

    #[test]
    fn levels_add_and_subtract_per_owner_never_below_zero() {
        let l = Ledger::new(shape(0));
        l.with_new("a", |s| s.add(0, 5));
        l.with_new("a", |s| s.add(0, 2));
        l.with_new("b", |s| s.add(0, 1));
        l.with_new("a", |s| s.sub(3));
        assert_eq!(l.with("a", |s| s.usage(0)), Some(4));
        l.with_new("b", |s| s.sub(9));
        assert_eq!(l.with("b", |s| s.usage(0)), Some(0));
        assert_eq!(l.with("c", |s| s.usage(0)), None);
        assert_eq!(l.with("a", |s| s.ceiling.load(Ordering::Relaxed)), Some(10));
    }

    #[test]
    fn long_and_short_owner_names_are_both_found() {
        let l = Ledger::new(shape(0));
        let long = "o".repeat(INLINE + 1);
        let edge = "p".repeat(INLINE);
        for name in [long.as_str(), edge.as_str(), "", "é"] {
            l.with_new(name, |s| s.add(0, 1));
        }
        for name in [long.as_str(), edge.as_str(), "", "é"] {
            assert_eq!(l.with(name, |s| s.usage(0)), Some(1), "{name}");
        }
        assert_eq!(l.with(&long[1..], |_| ()), None);
        let mut names = Vec::new();
        l.for_each(|o, _| names.push(o.to_owned()));
        names.sort();
        assert_eq!(
            names,
            vec!["".to_owned(), long.clone(), edge.clone(), "é".into()]
        );
    }

    #[test]
    fn rates_count_what_was_added_within_the_window() {
        let l = Ledger::new(shape(4));
        l.with_new("a", |s| s.add(0, 5));
        l.with_new("a", |s| s.add(2, 1));
        assert_eq!(l.with("a", |s| s.usage(3)), Some(6));
        assert_eq!(l.with("a", |s| s.usage(4)), Some(1));
    }

    #[test]
    fn pruning_drops_only_idle_slots() {
        let l = Ledger::new(shape(0));
        for i in 0..100 {
            l.with_new(&format!("o{i}"), |s| s.add(0, u64::from(i % 2 == 0)));
        }
        l.with_new("o1", |s| s.calm.store(false, Ordering::Relaxed));
        assert_eq!(l.len(), 100);
        l.prune(0);
        assert_eq!(l.len(), 51);
        assert!(l.with("o1", |_| ()).is_some());
        assert!(l.with("o3", |_| ()).is_none());
        let mut seen = 0;
        l.for_each(|_, _| seen += 1);
        assert_eq!(seen, 51);
    }

    #[test]
    fn owners_are_found_through_growth_and_pruning() {
        let l = Ledger::new(shape(0));
        // Long names alike in their first `INLINE` bytes, beside short ones.
        let name = |i: usize| {
            if i.is_multiple_of(3) {
                format!("{}{i}", "x".repeat(INLINE))
            } else {
                format!("o{i}")
            }
        };
        for i in 0..5_000 {
            l.with_new(&name(i), |s| s.add(0, u64::from(i % 4 != 0)));
        }
        assert_eq!(l.len(), 5_000);
        for i in 0..5_000 {
            assert_eq!(
                l.with(&name(i), |s| s.usage(0)),
                Some(u64::from(i % 4 != 0))
            );
        }
        l.prune(0);
        assert_eq!(l.len(), 3_750);
        for i in 0..5_000 {
            let found = l.with(&name(i), |s| s.owner() == name(i));
            assert_eq!(found, (i % 4 != 0).then_some(true), "{}", name(i));
        }
        assert_eq!(l.with(&"x".repeat(INLINE + 1), |_| ()), None);
    }

    #[test]
    fn a_rate_bound_is_used_only_when_it_bounds_the_sum() {
        let l = Ledger::new(shape(4));
        l.with_new("a", |s| s.add(3, 5));
        l.with_new("a", |s| s.add(5, 7));
        l.with("a", |s| {
            // Fits: the bound, at least the sum.
            assert_eq!(s.usage_within(5, 4, 100), 12);
            // Does not fit: the sum itself.
            assert_eq!(s.usage_within(5, 4, 3), 12);
            assert_eq!(s.usage_within(7, 4, 3), 7);
            // A clock gone back: the newest cell is after the key, so the
            // total bounds nothing and the ring is read.
            assert_eq!(s.usage_within(4, 4, 100), 5);
            assert_eq!(s.usage_within(9, 4, 0), 0);
        });
    }
}
