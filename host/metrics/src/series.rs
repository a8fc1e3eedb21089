//! Series identity: a metric name, a label set and a kind, interned once to a
//! small number so that recording a sample moves no strings.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::validate::{self, Invalid, PiiKeys};

/// What a series holds, which decides how it is stored, persisted and exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A running total that only goes up; each sample is the total.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations (timings, sizes); queried as quantiles.
    Histogram,
}

impl Kind {
    /// The name used in persisted records and the API.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The identity of a series. Labels are sorted by name.
#[derive(Debug, PartialEq, Eq)]
pub struct SeriesKey {
    /// The metric name.
    pub metric: Box<str>,
    /// The labels, sorted by name.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// The kind.
    pub kind: Kind,
}

impl SeriesKey {
    /// The labels as owned pairs.
    pub fn label_pairs(&self) -> Vec<(String, String)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[inline]
    fn matches(&self, metric: &str, labels: &[(&str, &str)]) -> bool {
        if *self.metric != *metric || self.labels.len() != labels.len() {
            return false;
        }
        // Labels given in sorted order (the usual case): the stored labels are
        // sorted and distinct, so pairwise equality is set equality.
        if self
            .labels
            .iter()
            .zip(labels)
            .all(|((a, b), (k, v))| **a == **k && **b == **v)
        {
            return true;
        }
        // Both directions, so a repeated label cannot stand in for a missing one.
        labels
            .iter()
            .all(|(k, v)| self.labels.iter().any(|(a, b)| **a == **k && **b == **v))
            && self
                .labels
                .iter()
                .all(|(a, b)| labels.iter().any(|(k, v)| **a == **k && **b == **v))
    }
}

/// A series' number. Stable for the life of the process.
pub type SeriesId = u32;

/// Why a series could not be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SeriesError {
    /// The name or labels are not acceptable.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The store holds as many series as it may.
    #[error(
        "the store already holds its limit of {limit} series; `{metric}` with new labels was refused (raise `metrics.store.max_series` or drop a label with many values)"
    )]
    TooManySeries {
        /// The limit.
        limit: usize,
        /// The refused metric.
        metric: String,
    },
    /// The metric exists as another kind.
    #[error(
        "`{metric}` is a {existing} and cannot also be recorded as a {asked}; use another name"
    )]
    KindMismatch {
        /// The metric.
        metric: String,
        /// What it is.
        existing: &'static str,
        /// What was asked.
        asked: &'static str,
    },
}

#[derive(Default)]
struct Table {
    /// Order-independent hash of (metric, labels) → ids with that hash.
    by_hash: HashMap<u64, Vec<SeriesId>, NoHash>,
    /// Metric name → its kind and its series.
    by_metric: HashMap<Arc<str>, (Kind, Vec<SeriesId>)>,
    keys: Vec<Arc<SeriesKey>>,
}

/// The names a metric's samples carry on `/metrics`: a counter's family name
/// (without `_total`) and its `_total` sample, a gauge's name, a
/// histogram's quantiles and its `_count` and `_sum`.
fn exposed(metric: &str, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Gauge => vec![metric.to_owned()],
        Kind::Counter => {
            let base = metric.strip_suffix("_total").unwrap_or(metric);
            vec![base.to_owned(), format!("{base}_total")]
        }
        Kind::Histogram => vec![
            metric.to_owned(),
            format!("{metric}_count"),
            format!("{metric}_sum"),
        ],
    }
}

/// An existing metric that a new `metric` of `kind` would share a name with
/// on `/metrics` (two families of one name, or one sample name in two
/// families, make the whole exposition invalid).
fn clash(t: &Table, metric: &str, kind: Kind) -> Option<String> {
    for name in exposed(metric, kind) {
        // Every existing name that could expose `name`.
        let total = format!("{name}_total");
        let candidates = [
            Some(name.as_str()),
            Some(total.as_str()),
            name.strip_suffix("_total"),
            name.strip_suffix("_count"),
            name.strip_suffix("_sum"),
        ];
        for c in candidates.into_iter().flatten() {
            if c == metric {
                continue;
            }
            if let Some((k, _)) = t.by_metric.get(c)
                && exposed(c, *k).contains(&name)
            {
                return Some(c.to_owned());
            }
        }
    }
    None
}

/// The table of series. Lookups of known series take a read lock and allocate
/// nothing; a new series takes the write lock once.
pub struct Interner {
    /// Tells this table's entries in the per-thread cache from another's.
    instance: u64,
    table: RwLock<Table>,
    hasher: foldhash::fast::FixedState,
    max_series: usize,
    refused: AtomicU64,
    pii: PiiKeys,
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("max_series", &self.max_series)
            .finish_non_exhaustive()
    }
}

impl Interner {
    /// A table of at most `max_series` series whose labels are checked against
    /// `pii`.
    pub fn new(max_series: usize, pii: PiiKeys) -> Self {
        static INSTANCES: AtomicU64 = AtomicU64::new(1);
        Interner {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            table: RwLock::default(),
            hasher: foldhash::fast::FixedState::with_seed(0x5741_5244_454e),
            max_series,
            refused: AtomicU64::new(0),
            pii,
        }
    }

    fn hash(&self, metric: &str, labels: &[(&str, &str)]) -> u64 {
        let mut h = self.hasher.hash_one(metric);
        for (k, v) in labels {
            let mut p = self.hasher.build_hasher();
            p.write(k.as_bytes());
            p.write_u8(0xff);
            p.write(v.as_bytes());
            // Addition commutes: the label order the caller used does not matter.
            h = h.wrapping_add(p.finish());
        }
        h
    }

    /// Returns the id of `metric{labels}` of `kind`, creating the series if it
    /// is new and valid.
    pub fn intern(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        kind: Kind,
    ) -> Result<SeriesId, SeriesError> {
        let h = self.hash(metric, labels);
        if let Some(found) = cached(self.instance, h, metric, labels, kind) {
            return found;
        }
        {
            let t = self.table.read().unwrap_or_else(|p| p.into_inner());
            if let Some(id) = find(&t, h, metric, labels) {
                remember(self.instance, h, id, &t.keys[id as usize]);
                return check_kind(&t.keys[id as usize], kind).map(|()| id);
            }
        }
        validate::metric_name(metric)?;
        validate::labels(labels, &self.pii)?;
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = find(&t, h, metric, labels) {
            return check_kind(&t.keys[id as usize], kind).map(|()| id);
        }
        if let Some((existing, _)) = t.by_metric.get(metric)
            && *existing != kind
        {
            return Err(SeriesError::KindMismatch {
                metric: metric.to_owned(),
                existing: existing.name(),
                asked: kind.name(),
            });
        }
        if !t.by_metric.contains_key(metric)
            && let Some(other) = clash(&t, metric, kind)
        {
            return Err(SeriesError::Invalid(Invalid::new(
                "metric",
                format!(
                    "`{metric}` would be exposed on /metrics under a name `{other}` already uses; pick another name"
                ),
            )));
        }
        if t.keys.len() >= self.max_series {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SeriesError::TooManySeries {
                limit: self.max_series,
                metric: metric.to_owned(),
            });
        }
        let id = SeriesId::try_from(t.keys.len()).expect("max_series fits in u32");
        let mut sorted: Vec<(Box<str>, Box<str>)> = labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        sorted.sort();
        t.keys.push(Arc::new(SeriesKey {
            metric: metric.into(),
            labels: sorted.into_boxed_slice(),
            kind,
        }));
        t.by_hash.entry(h).or_default().push(id);
        t.by_metric
            .entry(Arc::from(metric))
            .or_insert_with(|| (kind, Vec::new()))
            .1
            .push(id);
        Ok(id)
    }

    /// The id and kind of an existing series, without creating one.
    pub fn lookup(&self, metric: &str, labels: &[(&str, &str)]) -> Option<(SeriesId, Kind)> {
        let h = self.hash(metric, labels);
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        find(&t, h, metric, labels).map(|id| (id, t.keys[id as usize].kind))
    }

    /// The key of series `id`.
    pub fn key(&self, id: SeriesId) -> Option<Arc<SeriesKey>> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        t.keys.get(id as usize).cloned()
    }

    /// Calls `f` with a lookup from id to key, under one lock for a whole batch.
    pub fn with_keys<R>(&self, f: impl FnOnce(&[Arc<SeriesKey>]) -> R) -> R {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        f(&t.keys)
    }

    /// The series of `metric`.
    pub fn series_of(&self, metric: &str) -> Vec<SeriesId> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        t.by_metric
            .get(metric)
            .map(|(_, ids)| ids.clone())
            .unwrap_or_default()
    }

    /// Every metric name with its kind and series, sorted by name.
    pub fn metrics(&self) -> Vec<(Arc<str>, Kind, Vec<SeriesId>)> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = t
            .by_metric
            .iter()
            .map(|(m, (k, ids))| (Arc::clone(m), *k, ids.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// How many series exist.
    pub fn len(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .len()
    }

    /// True if no series exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many new series the cap refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The cap.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// The personal-data keys this table refuses.
    pub fn pii(&self) -> &PiiKeys {
        &self.pii
    }
}

/// Slots in each thread's cache of recently used series.
const CACHE_SLOTS: usize = 64;

type CacheSlot = Option<(u64, u64, SeriesId, Arc<SeriesKey>)>;

thread_local! {
    /// A direct-mapped cache of (table, hash) → series, so a thread that
    /// records the same series again skips the table's lock. Entries never go
    /// stale: series are never removed and their keys never change.
    static CACHE: std::cell::RefCell<[CacheSlot; CACHE_SLOTS]> =
        const { std::cell::RefCell::new([const { None }; CACHE_SLOTS]) };
}

#[inline]
fn cached(
    instance: u64,
    h: u64,
    metric: &str,
    labels: &[(&str, &str)],
    kind: Kind,
) -> Option<Result<SeriesId, SeriesError>> {
    CACHE.with(|c| {
        let c = c.try_borrow().ok()?;
        match &c[(h as usize) % CACHE_SLOTS] {
            Some((i, hash, id, key))
                if *i == instance && *hash == h && key.matches(metric, labels) =>
            {
                Some(check_kind(key, kind).map(|()| *id))
            }
            _ => None,
        }
    })
}

fn remember(instance: u64, h: u64, id: SeriesId, key: &Arc<SeriesKey>) {
    CACHE.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c[(h as usize) % CACHE_SLOTS] = Some((instance, h, id, Arc::clone(key)));
        }
    });
}

fn find(t: &Table, h: u64, metric: &str, labels: &[(&str, &str)]) -> Option<SeriesId> {
    t.by_hash
        .get(&h)?
        .iter()
        .copied()
        .find(|id| t.keys[*id as usize].matches(metric, labels))
}

fn check_kind(key: &SeriesKey, kind: Kind) -> Result<(), SeriesError> {
    if key.kind == kind {
        Ok(())
    } else {
        Err(SeriesError::KindMismatch {
            metric: key.metric.to_string(),
            existing: key.kind.name(),
            asked: kind.name(),
        })
    }
}

/// The map's keys are already hashes.
#[derive(Default, Clone, Copy)]
struct NoHash;

impl BuildHasher for NoHash {
    type Hasher = NoHasher;
    fn build_hasher(&self) -> NoHasher {
        NoHasher(0)
    }
}

#[derive(Default)]
struct NoHasher(u64);

impl Hasher for NoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_share_an_exposed_name_are_refused() {
        let i = Interner::new(100, PiiKeys::default());
        i.intern("req", &[], Kind::Histogram).unwrap();
        i.intern("hits_total", &[], Kind::Counter).unwrap();
        i.intern("temp", &[], Kind::Gauge).unwrap();
        for (metric, kind) in [
            ("req_count", Kind::Gauge),
            ("req_sum", Kind::Counter),
            ("hits", Kind::Counter),
            ("hits", Kind::Gauge),
            ("hits_total", Kind::Gauge),
            ("temp_total", Kind::Counter),
            ("temp", Kind::Histogram),
        ] {
            assert!(i.intern(metric, &[], kind).is_err(), "{metric} {kind:?}");
        }
        for (metric, kind) in [("req_seconds", Kind::Gauge), ("hit", Kind::Counter)] {
            i.intern(metric, &[], kind).unwrap();
        }
        // More series of an existing metric are no clash with itself.
        i.intern("req", &[("a", "b")], Kind::Histogram).unwrap();
    }

    #[test]
    fn the_same_series_in_any_label_order_is_one_id() {
        let i = Interner::new(10, PiiKeys::default());
        let a = i
            .intern("m", &[("a", "1"), ("b", "2")], Kind::Gauge)
            .unwrap();
        let b = i
            .intern("m", &[("b", "2"), ("a", "1")], Kind::Gauge)
            .unwrap();
        let c = i.intern("m", &[("a", "1")], Kind::Gauge).unwrap();
        let d = i
            .intern("m", &[("a", "1"), ("b", "3")], Kind::Gauge)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(i.len(), 3);
        assert!(c != a && d != a && c != d);
        assert_eq!(
            &*i.key(a).unwrap().labels,
            &[("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn the_per_thread_cache_keeps_tables_apart() {
        let a = Interner::new(10, PiiKeys::default());
        let b = Interner::new(10, PiiKeys::default());
        assert_eq!(a.intern("m", &[("k", "v")], Kind::Gauge).unwrap(), 0);
        b.intern("x", &[], Kind::Gauge).unwrap();
        // The same series in another table is that table's own.
        assert_eq!(b.intern("m", &[("k", "v")], Kind::Gauge).unwrap(), 1);
        assert_eq!(a.intern("m", &[("k", "v")], Kind::Gauge).unwrap(), 0);
        // A cached series still has its kind checked.
        assert!(matches!(
            a.intern("m", &[("k", "v")], Kind::Counter),
            Err(SeriesError::KindMismatch { .. })
        ));
        // And another thread, with an empty cache, finds the same ids.
        let id = std::thread::scope(|s| {
            s.spawn(|| b.intern("m", &[("k", "v")], Kind::Gauge).unwrap())
                .join()
                .unwrap()
        });
        assert_eq!(id, 1);
    }

    #[test]
    fn a_repeated_label_does_not_match_a_series_with_two() {
        let i = Interner::new(10, PiiKeys::default());
        i.intern("m", &[("a", "1"), ("b", "2")], Kind::Gauge)
            .unwrap();
        assert!(matches!(
            i.intern("m", &[("a", "1"), ("a", "1")], Kind::Gauge),
            Err(SeriesError::Invalid(_))
        ));
    }

    #[test]
    fn the_cap_refuses_new_series_and_counts_them() {
        let i = Interner::new(2, PiiKeys::default());
        i.intern("m", &[("i", "1")], Kind::Gauge).unwrap();
        i.intern("m", &[("i", "2")], Kind::Gauge).unwrap();
        let e = i.intern("m", &[("i", "3")], Kind::Gauge).unwrap_err();
        assert!(e.to_string().contains("limit of 2 series"), "{e}");
        i.intern("m", &[("i", "1")], Kind::Gauge).unwrap();
        assert_eq!((i.len(), i.refused()), (2, 1));
    }

    #[test]
    fn a_metric_has_one_kind() {
        let i = Interner::new(10, PiiKeys::default());
        i.intern("m", &[("i", "1")], Kind::Counter).unwrap();
        let e = i.intern("m", &[("i", "2")], Kind::Gauge).unwrap_err();
        assert!(matches!(e, SeriesError::KindMismatch { .. }), "{e}");
        let e = i.intern("m", &[("i", "1")], Kind::Histogram).unwrap_err();
        assert!(e.to_string().contains("is a counter"), "{e}");
    }

    #[test]
    fn invalid_names_are_refused_with_the_field() {
        let i = Interner::new(10, PiiKeys::default());
        let SeriesError::Invalid(e) = i.intern("1m", &[], Kind::Gauge).unwrap_err() else {
            panic!()
        };
        assert_eq!(e.field, "metric");
        let SeriesError::Invalid(e) = i
            .intern("m", &[("password", "x")], Kind::Gauge)
            .unwrap_err()
        else {
            panic!()
        };
        assert_eq!(e.field, "labels.password");
        assert!(i.is_empty());
    }
}
