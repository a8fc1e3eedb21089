//! Aggregates over a window of samples: avg, min, max, sum, count, rate, last
//! and quantiles. Quantiles of more than [`EXACT_QUANTILE_MAX`] values come
//! from a DDSketch (1 % relative error): one bucket increment per sample, not
//! a sort. Fewer values are kept as they are and the quantile is selected
//! exactly, which is both cheaper and more accurate than a sketch of them.

use sketches_ddsketch::{Config, DDSketch};

use super::series::Kind;
use warden_core::records::Sample;

/// The relative error of quantiles.
pub const QUANTILE_RELATIVE_ERROR: f64 = 0.01;

/// One aggregate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    /// The mean.
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The sum of values.
    Sum,
    /// The number of samples.
    Count,
    /// Per second: a counter's increase (resets handled), else the change.
    Rate,
    /// The newest value.
    Last,
    /// A quantile in `[0, 1]`, such as 0.99 for `p99`.
    Quantile(f64),
}

impl std::str::FromStr for Aggregation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "avg" | "mean" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "sum" => Aggregation::Sum,
            "count" => Aggregation::Count,
            "rate" => Aggregation::Rate,
            "last" => Aggregation::Last,
            other => {
                let q = other
                    .strip_prefix('p')
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|n| (0.0..=100.0).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "`{other}` is not an aggregate; use avg, min, max, sum, count, rate, last, or a quantile such as p50, p90, p95, p99, p99.9"
                        )
                    })?;
                Aggregation::Quantile(q / 100.0)
            }
        })
    }
}

impl std::fmt::Display for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aggregation::Avg => f.write_str("avg"),
            Aggregation::Min => f.write_str("min"),
            Aggregation::Max => f.write_str("max"),
            Aggregation::Sum => f.write_str("sum"),
            Aggregation::Count => f.write_str("count"),
            Aggregation::Rate => f.write_str("rate"),
            Aggregation::Last => f.write_str("last"),
            Aggregation::Quantile(q) => write!(f, "p{}", q * 100.0),
        }
    }
}

pub(crate) fn sketch() -> DDSketch {
    DDSketch::new(Config::new(QUANTILE_RELATIVE_ERROR, 2048, 1.0e-9))
}

/// Windows of at most this many samples get exact quantiles by selection
/// (O(n), no sort, no allocation); larger ones go through the sketch.
pub const EXACT_QUANTILE_MAX: usize = 64;

/// Running state of the aggregates over one series, or over many merged.
#[derive(Clone)]
pub struct Accumulator {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    first: Sample,
    last: Sample,
    /// Sum of increases (counters) or of changes (others).
    delta: f64,
    /// Per-second rates of merged series, summed.
    merged_rate: Option<f64>,
    /// True once another accumulator was merged in: the rate is then the sum
    /// of theirs, never one computed across series.
    merged: bool,
    quantiles: bool,
    /// The values while there are few of them.
    small: [f64; EXACT_QUANTILE_MAX],
    sketch: Option<DDSketch>,
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .finish_non_exhaustive()
    }
}

const NO_SAMPLE: Sample = Sample {
    at_ms: 0,
    value: 0.0,
};

impl Accumulator {
    /// An empty accumulator; `quantiles` says whether to keep values for them.
    pub fn new(quantiles: bool) -> Self {
        Accumulator {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first: NO_SAMPLE,
            last: NO_SAMPLE,
            delta: 0.0,
            merged_rate: None,
            merged: false,
            quantiles,
            small: [0.0; EXACT_QUANTILE_MAX],
            sketch: None,
        }
    }

    /// Empties it for reuse, keeping the sketch's allocation out of it.
    pub fn reset(&mut self) {
        // `small` is only read up to `count`, so it need not be cleared.
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
        self.first = NO_SAMPLE;
        self.last = NO_SAMPLE;
        self.delta = 0.0;
        self.merged_rate = None;
        self.merged = false;
        self.sketch = None;
    }

    #[inline]
    fn keep(&mut self, v: f64) {
        let n = self.count as usize;
        if n < EXACT_QUANTILE_MAX && self.sketch.is_none() {
            self.small[n] = v;
            return;
        }
        self.spilled().add(v);
    }

    /// The sketch, made on first need from the values kept so far.
    fn spilled(&mut self) -> &mut DDSketch {
        let kept = &self.small[..(self.count as usize).min(EXACT_QUANTILE_MAX)];
        self.sketch.get_or_insert_with(|| {
            let mut sk = sketch();
            for x in kept {
                sk.add(*x);
            }
            sk
        })
    }

    /// Adds a series' samples, oldest first, in up to two runs (a ring
    /// buffer's halves).
    pub fn add_runs(&mut self, kind: Kind, runs: [&[Sample]; 2]) {
        for run in runs {
            for s in run {
                if self.count == 0 {
                    self.first = *s;
                } else {
                    let prev = self.last.value;
                    self.delta += if kind == Kind::Counter && s.value < prev {
                        // A reset: the counter started again from zero.
                        s.value
                    } else {
                        s.value - prev
                    };
                }
                if self.quantiles {
                    self.keep(s.value);
                }
                self.count += 1;
                self.sum += s.value;
                self.min = self.min.min(s.value);
                self.max = self.max.max(s.value);
                self.last = *s;
            }
        }
    }

    /// Puts values straight into the quantile sketch, for a combined
    /// aggregate whose series keep no values of their own; their other
    /// aggregates come in through [`Accumulator::merge`].
    pub fn sketch_values(&mut self, runs: [&[Sample]; 2]) {
        let sk = self.sketch.get_or_insert_with(sketch);
        for run in runs {
            for s in run {
                sk.add(s.value);
            }
        }
    }

    /// Adds a series' samples, oldest first.
    pub fn add_series(&mut self, kind: Kind, samples: impl Iterator<Item = Sample>) {
        let all: Vec<Sample> = samples.collect();
        self.add_runs(kind, [&all, &[]]);
    }

    /// Folds another series' accumulator into this one (for an aggregate over
    /// many series). Rates add up, like `sum(rate(...))`.
    pub fn merge(&mut self, other: &Accumulator) {
        self.merged = true;
        if other.count == 0 {
            return;
        }
        if let Some(r) = other.rate() {
            *self.merged_rate.get_or_insert(0.0) += r;
        }
        if self.quantiles && other.quantiles {
            match &other.sketch {
                Some(theirs) => {
                    // Sketches made by `sketch()` share one config, which is all merge checks.
                    let _ = self.spilled().merge(theirs);
                }
                None if self.sketch.is_some() => {
                    let sk = self.sketch.as_mut().expect("checked above");
                    for v in &other.small[..other.count as usize] {
                        sk.add(*v);
                    }
                }
                None => {
                    let start = self.count;
                    for (i, v) in other.small[..other.count as usize].iter().enumerate() {
                        // `keep` indexes by count; advance it as we go.
                        self.count = start + i as u64;
                        self.keep(*v);
                    }
                    self.count = start;
                }
            }
        }
        if self.count == 0 || other.first.at_ms < self.first.at_ms {
            self.first = other.first;
        }
        if self.count == 0 || other.last.at_ms > self.last.at_ms {
            self.last = other.last;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    fn rate(&self) -> Option<f64> {
        if self.merged {
            return self.merged_rate;
        }
        if self.count < 2 {
            return None;
        }
        let secs = (self.last.at_ms - self.first.at_ms) as f64 / 1000.0;
        (secs > 0.0).then(|| self.delta / secs)
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        if let Some(sk) = &self.sketch {
            return sk.quantile(q).ok().flatten();
        }
        let n = self.count as usize;
        let mut values = self.small;
        let values = &mut values[..n];
        // The same rank the sketch uses: the lower of the two around q.
        let rank = (q * (n as f64 - 1.0)) as usize;
        let (_, v, _) = values.select_nth_unstable_by(rank.min(n - 1), f64::total_cmp);
        Some(*v)
    }

    /// The values of several aggregates, quantiles selected in place (the
    /// kept values are reordered, which nothing else minds).
    pub fn get_many(&mut self, aggs: &[Aggregation]) -> Vec<Option<f64>> {
        let n = self.count as usize;
        if self.sketch.is_some() || n == 0 || !self.quantiles {
            return aggs.iter().map(|a| self.get(*a)).collect();
        }
        let mut out: Vec<Option<f64>> = aggs
            .iter()
            .map(|a| match a {
                Aggregation::Quantile(_) => None,
                other => self.get(*other),
            })
            .collect();
        let values = &mut self.small[..n];
        for (slot, a) in out.iter_mut().zip(aggs) {
            if let Aggregation::Quantile(q) = a {
                // Selection leaves the rest partitioned, so the next one is
                // still right.
                let rank = ((q * (n as f64 - 1.0)) as usize).min(n - 1);
                *slot = Some(*values.select_nth_unstable_by(rank, f64::total_cmp).1);
            }
        }
        out
    }

    /// The value of one aggregate; `None` where there is nothing to say (no
    /// samples, or a rate from fewer than two).
    pub fn get(&self, agg: Aggregation) -> Option<f64> {
        if self.count == 0 {
            return (agg == Aggregation::Count).then_some(0.0);
        }
        match agg {
            Aggregation::Avg => Some(self.sum / self.count as f64),
            Aggregation::Min => Some(self.min),
            Aggregation::Max => Some(self.max),
            Aggregation::Sum => Some(self.sum),
            Aggregation::Count => Some(self.count as f64),
            Aggregation::Rate => self.rate(),
            Aggregation::Last => Some(self.last.value),
            Aggregation::Quantile(q) if self.quantiles => self.quantile(q),
            Aggregation::Quantile(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample {
                at_ms: i as i64 * 1000,
                value: *v,
            })
            .collect()
    }

    #[test]
    fn basic_aggregates() {
        let mut a = Accumulator::new(true);
        a.add_series(Kind::Gauge, samples(&[4.0, 2.0, 6.0, 8.0]).into_iter());
        assert_eq!(a.get(Aggregation::Avg), Some(5.0));
        assert_eq!(a.get(Aggregation::Min), Some(2.0));
        assert_eq!(a.get(Aggregation::Max), Some(8.0));
        assert_eq!(a.get(Aggregation::Sum), Some(20.0));
        assert_eq!(a.get(Aggregation::Count), Some(4.0));
        assert_eq!(a.get(Aggregation::Last), Some(8.0));
        // (8 - 4) over 3 s.
        assert!((a.get(Aggregation::Rate).unwrap() - 4.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn counter_rate_survives_a_reset() {
        let mut a = Accumulator::new(false);
        // 10 → 20 (+10), reset to 5 (+5), → 15 (+10): 25 over 3 s.
        a.add_series(Kind::Counter, samples(&[10.0, 20.0, 5.0, 15.0]).into_iter());
        assert!((a.get(Aggregation::Rate).unwrap() - 25.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_are_within_the_sketch_error() {
        let mut a = Accumulator::new(true);
        let values: Vec<f64> = (1..=10_000).map(f64::from).collect();
        a.add_series(Kind::Histogram, samples(&values).into_iter());
        for (q, want) in [(0.5, 5000.0), (0.9, 9000.0), (0.99, 9900.0)] {
            let got = a.get(Aggregation::Quantile(q)).unwrap();
            assert!(
                (got - want).abs() / want <= 0.011,
                "p{}: {got} vs {want}",
                q * 100.0
            );
        }
    }

    #[test]
    fn small_windows_get_exact_quantiles_and_large_ones_the_sketch() {
        let mut a = Accumulator::new(true);
        a.add_series(Kind::Gauge, samples(&[5.0, 1.0, 4.0, 2.0, 3.0]).into_iter());
        let mut a2 = a.clone();
        assert_eq!(a.get(Aggregation::Quantile(0.5)), Some(3.0));
        assert_eq!(a.get(Aggregation::Quantile(1.0)), Some(5.0));
        let qs = [0.0, 0.25, 0.5, 0.75, 1.0].map(Aggregation::Quantile);
        assert_eq!(
            a2.get_many(&qs),
            vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)]
        );
        // Crossing the threshold moves every value into the sketch.
        let values: Vec<f64> = (1..=200).map(f64::from).collect();
        let mut b = Accumulator::new(true);
        b.add_series(Kind::Gauge, samples(&values).into_iter());
        let p50 = b.get(Aggregation::Quantile(0.5)).unwrap();
        assert!((p50 - 100.0).abs() / 100.0 <= 0.011, "{p50}");
        // Merging many small ones spills into the combined sketch too.
        let mut all = Accumulator::new(true);
        for chunk in values.chunks(10) {
            let mut a = Accumulator::new(true);
            a.add_series(Kind::Gauge, samples(chunk).into_iter());
            all.merge(&a);
        }
        assert_eq!(all.get(Aggregation::Count), Some(200.0));
        let p99 = all.get(Aggregation::Quantile(0.99)).unwrap();
        assert!((p99 - 198.0).abs() / 198.0 <= 0.011, "{p99}");
    }

    #[test]
    fn merging_series_adds_rates_and_merges_quantiles() {
        let mut all = Accumulator::new(true);
        for slope in [1.0, 2.0, 3.0] {
            let mut a = Accumulator::new(true);
            let v: Vec<f64> = (0..5).map(|i| f64::from(i) * slope).collect();
            a.add_series(Kind::Counter, samples(&v).into_iter());
            all.merge(&a);
        }
        assert!((all.get(Aggregation::Rate).unwrap() - 6.0).abs() < 1e-9);
        assert_eq!(all.get(Aggregation::Count), Some(15.0));
        assert_eq!(all.get(Aggregation::Max), Some(12.0));
        assert!(all.get(Aggregation::Quantile(0.5)).is_some());
    }

    #[test]
    fn nothing_to_aggregate() {
        let a = Accumulator::new(true);
        assert_eq!(a.get(Aggregation::Count), Some(0.0));
        assert_eq!(a.get(Aggregation::Avg), None);
        let mut one = Accumulator::new(false);
        one.add_series(Kind::Gauge, samples(&[1.0]).into_iter());
        assert_eq!(one.get(Aggregation::Rate), None);
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            "p99".parse::<Aggregation>(),
            Ok(Aggregation::Quantile(0.99))
        );
        assert_eq!("avg".parse::<Aggregation>(), Ok(Aggregation::Avg));
        assert!("p101".parse::<Aggregation>().is_err());
        assert!("median".parse::<Aggregation>().unwrap_err().contains("p50"));
    }
}
