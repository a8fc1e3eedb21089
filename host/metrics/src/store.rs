//! Labeled series in bounded ring buffers: what the `query-series` host import,
//! the query API and `/metrics` read. Each series keeps its newest samples, at
//! most `max_samples` of them and none older than `retention` behind its
//! newest; the number of series is capped by the [`Interner`].

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::aggregate::{Accumulator, Aggregation};
use super::series::{Interner, Kind, SeriesError, SeriesId, SeriesKey};
use super::validate::{self, PiiKeys};
use warden_core::records::{
    Labels, Over, Reduce, Reduced, Sample, Series, SeriesSelector, TimestampMs, owned,
};
use warden_reduce::Of;

/// From this many series on, an aggregate is computed on every core.
const PARALLEL_FROM: usize = 4096;

/// How a recorded value changes its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The value is the series' new value (gauges; counters on refill).
    Set,
    /// The value is added to the counter's total.
    Add,
    /// The value is one observation (histograms).
    Observe,
}

/// The bounds of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// The most series.
    pub max_series: usize,
    /// The most samples one series keeps.
    pub max_samples: usize,
    /// How far behind its newest sample a series keeps samples.
    pub retention: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_series: 100_000,
            max_samples: 720,
            retention: Duration::from_secs(3600),
        }
    }
}

struct SeriesData {
    key: Arc<SeriesKey>,
    samples: VecDeque<Sample>,
    /// A counter's running total.
    total: f64,
}

/// The series store. Shared between ingest and every reader.
pub struct SeriesStore {
    interner: Arc<Interner>,
    data: RwLock<Vec<SeriesData>>,
    limits: StoreLimits,
    retention_ms: i64,
}

impl std::fmt::Debug for SeriesStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesStore")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for SeriesStore {
    fn default() -> Self {
        SeriesStore::new(StoreLimits::default(), PiiKeys::default())
    }
}

/// Aggregates of one series.
#[derive(Debug, Clone)]
pub struct SeriesAggregates {
    /// The series.
    pub key: Arc<SeriesKey>,
    /// One value per asked aggregate, `None` where there is nothing to say.
    pub values: Vec<Option<f64>>,
}

/// Which aggregates to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// For each series.
    Each,
    /// Over all the series together.
    Combined,
    /// Both.
    #[default]
    Both,
}

/// Aggregates over every matching series, each and together.
#[derive(Debug, Clone)]
pub struct AggregateResult {
    /// Per series (empty for [`Scope::Combined`]).
    pub series: Vec<SeriesAggregates>,
    /// Over all the series together, rates added up (empty for [`Scope::Each`]).
    pub combined: Vec<Option<f64>>,
}

impl SeriesStore {
    /// Returns an empty store.
    pub fn new(limits: StoreLimits, pii: PiiKeys) -> Self {
        SeriesStore {
            interner: Arc::new(Interner::new(limits.max_series, pii)),
            data: RwLock::default(),
            limits: StoreLimits {
                max_samples: limits.max_samples.max(1),
                ..limits
            },
            retention_ms: i64::try_from(limits.retention.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// The series table.
    pub fn interner(&self) -> &Arc<Interner> {
        &self.interner
    }

    /// The bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Records a gauge value straight into the store, bypassing the ingest
    /// queue and persistence (tests, embedders that only want queries).
    pub fn record(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        at_ms: TimestampMs,
        value: f64,
    ) -> Result<(), SeriesError> {
        validate::value(value)?;
        let id = self.interner.intern(metric, labels, Kind::Gauge)?;
        self.apply(&[(id, Op::Set, at_ms, value)], |_, _, _| {});
        Ok(())
    }

    /// Applies changes under one lock. `stored` is told each change as it
    /// now stands in the series (a counter's new total), for persistence.
    pub fn apply(
        &self,
        changes: &[(SeriesId, Op, TimestampMs, f64)],
        mut stored: impl FnMut(SeriesId, TimestampMs, f64),
    ) {
        if changes.is_empty() {
            return;
        }
        let mut data = self.data.write().unwrap_or_else(|p| p.into_inner());
        for &(id, op, at_ms, value) in changes {
            let idx = id as usize;
            if idx >= data.len() {
                self.interner.with_keys(|keys| {
                    for key in &keys[data.len()..=idx.min(keys.len() - 1)] {
                        data.push(SeriesData {
                            key: Arc::clone(key),
                            samples: VecDeque::new(),
                            total: 0.0,
                        });
                    }
                });
            }
            let Some(s) = data.get_mut(idx) else { continue };
            let v = match op {
                Op::Set => {
                    s.total = value;
                    value
                }
                Op::Add => {
                    s.total += value;
                    s.total
                }
                Op::Observe => value,
            };
            push_sample(
                &mut s.samples,
                Sample { at_ms, value: v },
                self.limits.max_samples,
                self.retention_ms,
            );
            stored(id, at_ms, v);
        }
    }

    /// Returns the number of series.
    pub fn series_count(&self) -> usize {
        self.interner.len()
    }

    /// Returns the times of the oldest and the newest sample of any series.
    pub fn extent(&self) -> Option<(TimestampMs, TimestampMs)> {
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        data.iter()
            .filter_map(|s| Some((s.samples.front()?.at_ms, s.samples.back()?.at_ms)))
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    /// Returns how many new series were refused for the series cap.
    pub fn refused_series(&self) -> u64 {
        self.interner.refused()
    }

    fn matching(&self, selector: &SeriesSelector) -> Vec<SeriesId> {
        let mut ids = self.interner.series_of(&selector.metric);
        if !selector.matchers.is_empty() {
            self.interner.with_keys(|keys| {
                ids.retain(|id| {
                    let key = &keys[*id as usize];
                    selector
                        .matchers
                        .iter()
                        .all(|(k, v)| key.labels.iter().any(|(lk, lv)| **lk == **k && **lv == **v))
                });
            });
        }
        ids
    }

    /// Returns every series matching `selector` with its samples in
    /// `(now - window_ms, now]`.
    pub fn query(
        &self,
        selector: &SeriesSelector,
        window_ms: u64,
        now_ms: TimestampMs,
    ) -> Vec<Series> {
        let from = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        self.range(selector, from, now_ms)
    }

    /// Like [`SeriesStore::query`], copying at most `max_bytes` (samples at
    /// 16 bytes each, names and labels at their length, 64 bytes per series):
    /// returns the series and the bytes they take, or `Err(bytes)` with at
    /// least what the answer would take, having copied no more than fits.
    /// What a plugin reads through `query-series` is bounded this way, so one
    /// call never copies a whole store.
    pub fn query_bounded(
        &self,
        selector: &SeriesSelector,
        window_ms: u64,
        now_ms: TimestampMs,
        max_bytes: usize,
    ) -> Result<(Vec<Series>, usize), usize> {
        const PER_SERIES: usize = 64;
        let from = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let ids = self.matching(selector);
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let mut used = 0usize;
        for s in ids.iter().filter_map(|id| data.get(*id as usize)) {
            let [a, b] = window_runs(&s.samples, from, now_ms);
            let samples = a.len() + b.len();
            if samples == 0 {
                continue;
            }
            let text = s.key.metric.len()
                + s.key
                    .labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            used = used.saturating_add(PER_SERIES + text + samples * 16);
            if used > max_bytes {
                return Err(used);
            }
            out.push(Series {
                metric: s.key.metric.to_string(),
                labels: s.key.label_pairs(),
                samples: a.iter().chain(b).copied().collect(),
            });
        }
        Ok((out, used))
    }

    /// What [`SeriesStore::query_bounded`] would copy, reduced in place as
    /// `how` says (`query-reduced`): at most `max_bytes` of answer (labels at
    /// their length, 32 bytes per value) and of scratch (a quantile sorts a
    /// copy of each window's values, 8 bytes a sample; nothing else copies a
    /// sample), so a plugin cannot make the host copy more through this call
    /// than through `query-series`. Series with no sample in the window are
    /// skipped, as a query skips them, so the values are those a plugin would
    /// compute from the query.
    pub fn reduce_bounded(
        &self,
        selector: &SeriesSelector,
        window_ms: u64,
        now_ms: TimestampMs,
        how: &Reduce,
        max_bytes: usize,
    ) -> Result<(Vec<Reduced>, usize), usize> {
        const PER_VALUE: usize = 32;
        let from = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let ids = self.matching(selector);
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        let mut used = 0usize;
        if how.over == Over::Quantile {
            for s in ids.iter().filter_map(|id| data.get(*id as usize)) {
                let [a, b] = window_runs(&s.samples, from, now_ms);
                used = used.saturating_add((a.len() + b.len()) * 8);
            }
            if used > max_bytes {
                return Err(used);
            }
        }
        let values = ids
            .iter()
            .filter_map(|id| data.get(*id as usize))
            .filter_map(|s| {
                let [a, b] = window_runs(&s.samples, from, now_ms);
                if a.is_empty() && b.is_empty() {
                    return None;
                }
                let points = a.iter().chain(b).map(|p| (p.at_ms, p.value));
                Some((s, warden_reduce::reduce(how.over, how.quantile, points)?))
            });
        fn label<'a>(s: &'a SeriesData, k: &str) -> Option<&'a str> {
            let found = s.key.labels.iter().find(|(lk, _)| **lk == *k);
            found.map(|(_, lv)| &**lv)
        }
        let answer =
            warden_reduce::each_or_grouped(values, how.by.as_deref(), how.aggregate, label);
        let mut out = Vec::with_capacity(answer.len());
        for (of, value) in answer {
            let labels: Labels = match of {
                Of::Series(s) => s.key.label_pairs(),
                Of::Group(key) => owned(&key),
            };
            let text: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
            used = used.saturating_add(PER_VALUE + text);
            if used > max_bytes {
                return Err(used);
            }
            out.push(Reduced { labels, value });
        }
        Ok((out, used))
    }

    /// Calls `f` with the key and newest sample of every series matching
    /// `selector` that has one in `(now - window_ms, now]`, copying nothing:
    /// what a quota over series reads, where only the latest value counts.
    pub fn for_each_latest(
        &self,
        selector: &SeriesSelector,
        window_ms: u64,
        now_ms: TimestampMs,
        mut f: impl FnMut(&SeriesKey, Sample),
    ) {
        let from = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let ids = self.matching(selector);
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        for s in ids.iter().filter_map(|id| data.get(*id as usize)) {
            let [a, b] = window_runs(&s.samples, from, now_ms);
            if let Some(last) = b.last().or(a.last()) {
                f(&s.key, *last);
            }
        }
    }

    /// Returns every series matching `selector` with its samples in `(from, to]`.
    pub fn range(
        &self,
        selector: &SeriesSelector,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Vec<Series> {
        let ids = self.matching(selector);
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .filter_map(|id| data.get(*id as usize))
            .map(|s| Series {
                metric: s.key.metric.to_string(),
                labels: s.key.label_pairs(),
                samples: in_window(&s.samples, from, to).collect(),
            })
            // A series with nothing in the window says nothing.
            .filter(|s| !s.samples.is_empty())
            .collect()
    }

    /// Computes `aggs` over `(now - window, now]` for every series matching
    /// `selector`, and over all of them together.
    pub fn aggregate(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
        aggs: &[Aggregation],
    ) -> AggregateResult {
        self.aggregate_by(selector, window, now_ms, aggs, Scope::Both)
    }

    /// Like [`SeriesStore::aggregate`], computing only what `scope` asks for:
    /// a query for each series' p99 need not build the fleet-wide sketch,
    /// and a fleet-wide one need not select each series' quantiles.
    pub fn aggregate_by(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
        aggs: &[Aggregation],
        scope: Scope,
    ) -> AggregateResult {
        let (each, together) = match scope {
            Scope::Each => (true, false),
            Scope::Combined => (false, true),
            Scope::Both => (true, true),
        };
        let from = now_ms.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let quantiles = aggs.iter().any(|a| matches!(a, Aggregation::Quantile(_)));
        let ids = self.matching(selector);
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        let data: &[SeriesData] = &data;
        // Only the combined quantiles are asked: values go straight into the
        // combined sketch, not through each series' own buffer.
        let direct = quantiles && together && !each;
        let run = |ids: &[SeriesId]| {
            let mut combined = Accumulator::new(quantiles && together);
            let mut acc = Accumulator::new(quantiles && !direct);
            let mut series = Vec::with_capacity(if each { ids.len() } else { 0 });
            for s in ids.iter().filter_map(|id| data.get(*id as usize)) {
                acc.reset();
                let runs = window_runs(&s.samples, from, now_ms);
                acc.add_runs(s.key.kind, runs);
                if direct {
                    combined.sketch_values(runs);
                }
                combined.merge(&acc);
                if each {
                    series.push(SeriesAggregates {
                        key: Arc::clone(&s.key),
                        values: acc.get_many(aggs),
                    });
                }
            }
            (series, combined)
        };
        // Many series: split them over the cores; the parts merge exactly
        // (sums, extremes, summed rates, merged sketches).
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let (series, combined) = if ids.len() >= PARALLEL_FROM && threads > 1 {
            let chunk = ids.len().div_ceil(threads);
            let parts: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = ids
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || run(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("an aggregate thread panicked"))
                    .collect()
            });
            let mut series = Vec::with_capacity(ids.len());
            let mut combined = Accumulator::new(quantiles && together);
            for (s, c) in parts {
                series.extend(s);
                combined.merge(&c);
            }
            (series, combined)
        } else {
            run(&ids)
        };
        AggregateResult {
            series,
            combined: if together {
                aggs.iter().map(|a| combined.get(*a)).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Calls `f` for every metric with its kind and, per series, its key and
    /// the samples in `(from, to]`, in metric-name order (for `/metrics`).
    pub fn for_each_metric(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        mut f: impl FnMut(&str, Kind, &[(&SeriesKey, Vec<Sample>)]),
    ) {
        let metrics = self.interner.metrics();
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        let mut rows = Vec::new();
        for (metric, kind, ids) in metrics {
            rows.clear();
            rows.extend(
                ids.iter()
                    .filter_map(|id| data.get(*id as usize))
                    .filter_map(|s| {
                        let samples: Vec<Sample> = in_window(&s.samples, from, to).collect();
                        (!samples.is_empty()).then_some((&*s.key, samples))
                    }),
            );
            if !rows.is_empty() {
                f(&metric, kind, &rows);
            }
        }
    }
}

fn in_window(
    samples: &VecDeque<Sample>,
    from: TimestampMs,
    to: TimestampMs,
) -> impl Iterator<Item = Sample> + '_ {
    let [a, b] = window_runs(samples, from, to);
    a.iter().chain(b).copied()
}

/// The samples in `(from, to]` as the two runs of the ring buffer.
fn window_runs(samples: &VecDeque<Sample>, from: TimestampMs, to: TimestampMs) -> [&[Sample]; 2] {
    let (a, b) = samples.as_slices();
    let (a0, a1) = (cut(a, from), cut(a, to));
    let (b0, b1) = (cut(b, from), cut(b, to));
    [&a[a0..a1], &b[b0..b1]]
}

/// Returns how many samples of `run` (in time order) are at or before `t`,
/// as `run.partition_point(|p| p.at_ms <= t)` would. Samples mostly come at
/// a steady interval, so a guess from the run's first and last times lands
/// within a sample or two of the answer, and a gallop from there reads a
/// few adjacent samples where a binary search reads log2(n) scattered ones
/// (a day at 10 s is 8,640 samples: 13 likely cache misses per cut, and a
/// query cuts every series it selects twice).
fn cut(run: &[Sample], t: TimestampMs) -> usize {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return 0;
    };
    if t < first.at_ms {
        return 0;
    }
    if t >= last.at_ms {
        return run.len();
    }
    let at = |i: usize| run[i].at_ms;
    let before = |s: &Sample| s.at_ms <= t;
    // `first <= t < last`, so the span is positive; i128 holds any i64 difference.
    let span = i128::from(last.at_ms) - i128::from(first.at_ms);
    let guess =
        ((i128::from(t) - i128::from(first.at_ms)) * (run.len() as i128 - 1) / span) as usize;
    let mut step = 1;
    if at(guess) <= t {
        // Everything before `lo` is at or before `t`.
        let mut lo = guess + 1;
        loop {
            let hi = lo + step;
            if hi >= run.len() {
                return lo + run[lo..].partition_point(before);
            }
            if at(hi) > t {
                return lo + run[lo..hi].partition_point(before);
            }
            lo = hi + 1;
            step *= 2;
        }
    }
    // Everything from `hi` on is after `t`.
    let mut hi = guess;
    loop {
        if hi < step {
            return run[..hi].partition_point(before);
        }
        let lo = hi - step;
        if at(lo) <= t {
            return lo + 1 + run[lo + 1..hi].partition_point(before);
        }
        hi = lo;
        step *= 2;
    }
}

fn push_sample(samples: &mut VecDeque<Sample>, s: Sample, max: usize, retention_ms: i64) {
    if samples.back().is_none_or(|b| b.at_ms <= s.at_ms) {
        samples.push_back(s);
    } else {
        // A late sample (pushed with an explicit timestamp) keeps time order.
        let at = samples.partition_point(|p| p.at_ms <= s.at_ms);
        samples.insert(at, s);
    }
    while samples.len() > max {
        samples.pop_front();
    }
    let newest = samples.back().map_or(s.at_ms, |b| b.at_ms);
    while samples
        .front()
        .is_some_and(|f| newest.saturating_sub(f.at_ms) > retention_ms)
    {
        samples.pop_front();
    }
}

#[cfg(test)]
mod tests;
