//! What the detector learns of one series, online: one sample at a time, in
//! time order, with constant work and memory per sample. The whole of it is
//! a plain serializable value ([`Model`]), so it can be kept between
//! evaluations as plugin state, which the 0.2 contract offers: the detector
//! keeps one per series and feeds it only the samples it has not seen
//! (learning the window the plugin queries, oldest sample first, for a
//! series it has no model of).
//!
//! The series is read as `level + daily cycle + weekly cycle + noise`:
//!
//! - **level**: an exponentially weighted mean of the value with the cycles
//!   taken out (time constant [`LEVEL_TAU_MS`]);
//! - **daily and weekly cycles**: the usual deviation from the level at each
//!   time of day (96 quarter-hours, interpolated) and of the week (168
//!   hours), learned from their first visit on; each is used only once it
//!   has seen a whole period and it makes the residuals smaller than the
//!   model without it (a series with no cycle keeps none); samples the
//!   tests flag teach a cycle next to nothing (nothing once it is in use);
//! - **spread**: the noise's scale, from the mean absolute residual (time
//!   constant [`SPREAD_TAU_MS`]), and its lag-1 autocorrelation;
//! - **tail**: how often the residual exceeds 4, 5, 6, 8, 10 and 14 spreads,
//!   so a series whose normal noise is heavy-tailed needs a larger
//!   excursion before a point counts as anomalous.
//!
//! Each sample is scored before it is learned, by four tests: a point far
//! outside the series' tail, or two in a row well outside it (`spike`), a
//! sustained shift of the level (two-sided CUSUM of the residual, corrected
//! for autocorrelation, or of Student-t's likelihood ratio where the tail is
//! heavy; in the first day, against the level carried along its slope:
//! `shift`), noise grown beyond its usual spread (short mean of the squared
//! residual, or a CUSUM of the likelihood ratio of grown noise for the
//! residuals freed of their autocorrelation where the tail is light, of a
//! bounded score of it where it may be heavy: `variance`), and the level
//! drifted away from where it has been over the last day
//! (`drift`). Outliers are clipped before they are learned, so an anomaly
//! teaches the model little.

use serde::{Deserialize, Serialize};

/// How fast the level follows the series.
pub const LEVEL_TAU_MS: f64 = 15.0 * 60_000.0;
/// How fast the base the cycles are learned against follows the series: a
/// day, so that a daily cycle barely moves it.
pub const BASE_TAU_MS: f64 = 24.0 * 3_600_000.0;
/// How long the tail and the residuals' second moment remember: a few
/// days, so that rare large values of a heavy-tailed series are remembered
/// between occurrences.
pub const TAIL_TAU_MS: f64 = 3.0 * 24.0 * 3_600_000.0;
/// During the first day, before any daily cycle can be known, the shift,
/// variance and drift tests ask this much more (a cycle not yet learned
/// looks like a shift).
const FIRST_DAY_CAUTION: f64 = 1.5;
/// Hours in a day: the buckets of the spread's daily profile.
const SPREAD_BUCKETS: usize = 24;
/// How many samples of its own an hour of the spread's daily profile needs
/// before it counts as much as the day's mean (see [`Model::spread_at`]).
const HOURLY_PRIOR: f64 = 60.0;
/// How fast the level's slope follows the level, during the first day.
const SLOPE_TAU_MS: f64 = 60.0 * 60_000.0;
/// How fast the spread and the tail follow the series.
pub const SPREAD_TAU_MS: f64 = 6.0 * 3_600_000.0;
/// How fast the short mean of squared residuals follows them.
const VARIANCE_TAU_MS: f64 = 10.0 * 60_000.0;
/// The share of samples past 4 spreads above which the noise counts as
/// heavy-tailed for the variance CUSUM: Gaussian noise passes it about
/// once in 16,000 samples, Student-t with 4 degrees of freedom once in 140.
pub(crate) const HEAVY_SHARE: f64 = 1e-3;
/// Where the noise is known to be light-tailed, the variance CUSUM adds up
/// the log-likelihood ratio of Gaussian noise grown this many times in
/// variance (3 times in spread, the smallest growth the detectors bench
/// labels) against the noise as it was, `z² (1 - 1/g) / 2 - ln(g) / 2`,
/// and decides at [`VARIANCE_DECISION`] times `Sensitivity::variance`. It
/// replaces Student-t's score with 12 degrees of freedom, bounded by 13,
/// which discounted every large residual: noise grown 3 times added 0.9 a
/// sample to it past its allowance, and adds 2.2 a sample to the
/// likelihood ratio (with one sample's share capped). On simulated
/// Gaussian noise, the likelihood ratio passes its threshold of 10 about
/// once in 375,000 samples (260 days of one a minute) and finds noise
/// grown 3 times 4 samples after it starts, at the median; the bounded
/// score, which passed it less than once in 3 million, took 7.
const VARIANCE_GROWTH: f64 = 9.0;
/// See [`VARIANCE_GROWTH`].
const VARIANCE_DECISION: f64 = 2.5;
/// The variance CUSUM's settings where the tail is not known to be light,
/// as (degrees of freedom of its score, allowance and decision threshold
/// in multiples of `Sensitivity::variance`), for noise whose tail is not
/// known yet and for noise known to be heavy-tailed. The score is
/// Student-t's for a change of scale, `(nu + 1) z² / (nu + z²)`: near z²
/// for small residuals, bounded by `nu + 1` for large ones, so a lone large
/// value adds at most 5 less the allowance. A young tail (the first half
/// day, where the spread and the cycle are still being learned and the
/// noise may be either) is treated as heavy, with a larger allowance.
/// (Student-t's own likelihood ratio for a growth of 3, tried in its place
/// for heavy tails, found no more within 5 samples on the detectors bench
/// at the same false alarms.)
const VARIANCE_YOUNG: (f64, f64, f64) = (4.0, 0.5, 2.0);
/// See [`VARIANCE_YOUNG`].
const VARIANCE_HEAVY: (f64, f64, f64) = (4.0, 0.45, 2.0);
/// Where the noise is known to be heavy-tailed, the shift CUSUM adds up
/// the log-likelihood ratio of Student-t noise (4 degrees of freedom) moved
/// by this many of its scale units against the noise as it was: a large
/// residual then adds a bounded amount, where the clipped residual of the
/// light-tailed test added up to 4 spreads less the allowance at every
/// burst of normal large values (those were a fifth of the detector's
/// false alarms on the detectors bench).
const HEAVY_SHIFT: f64 = 3.0;
/// The heavy-tailed shift CUSUM's sum that matches the light-tailed one's
/// [`Sensitivity::shift_threshold`] of 8: its increments are scaled by 8
/// over this, so that the threshold setting moves both.
const HEAVY_SHIFT_DECISION: f64 = 12.0;
/// The shift CUSUM's cap, in multiples of its decision threshold: higher
/// caps kept findings up for hours after the series was back, lower ones
/// (3 times) ended them while the level was still coming back, to be
/// raised again (18 more false alarms on the detectors bench, of 186).
const SHIFT_CAP: f64 = 5.0;
/// Student-t with 4 degrees of freedom in units of its own scale, per
/// spread (the spread being 1.2533 times the mean absolute residual, and
/// the mean absolute value of that Student-t 1).
const T4_PER_SPREAD: f64 = 1.2533;
/// How fast a cycle's bucket follows what it sees, per visit, once it has
/// seen a few (before that it averages its visits).
const CYCLE_RATE: f64 = 0.1;
/// The weight a sample the tests flag has in a cycle not yet in use, against
/// a normal one's.
const FLAGGED_SHARE: f64 = 0.01;
/// Quarter-hours in a day.
const DAY_BUCKETS: usize = 96;
/// Hours in a week.
const WEEK_BUCKETS: usize = 168;
const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// The levels the tail test counts exceedances of, in spreads.
pub const TAIL_LEVELS: [f64; 6] = [4.0, 5.0, 6.0, 8.0, 10.0, 14.0];
/// Samples the tail learns before a heavy tail would have shown at its low
/// levels (Student-t with 4 degrees of freedom passes 4 spreads about once
/// in 140 samples).
const TAIL_EVIDENCE: u64 = 720;
/// The power law the tail is extrapolated with: Student-t with 4 degrees of
/// freedom falls this fast, lighter tails faster.
const TAIL_INDEX: f64 = 4.0;
/// How far past the highest tail level its noise passes once in two days a
/// single sample must be to count as a spike.
const SINGLE_MARGIN: f64 = 2.0;
/// Two samples in a row past the tail on the same side are a burst: they
/// count from the level passed so often that two in a row are this many
/// times rarer than the single level's once in two days.
const PAIR_RARER: f64 = 30.0;
/// The pair's level as a share of the spike threshold, for light tails.
const PAIR_SHARE: f64 = 0.75;
/// How many level snapshots the drift test keeps (one per hour: a day).
const SNAPSHOTS: usize = 24;
const HOUR_MS: i64 = 3_600_000;

/// What a sample was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A point far outside the series' usual range.
    Spike,
    /// The level moved and stayed.
    Shift,
    /// The noise grew.
    Variance,
    /// The level drifted away from where it was over the last day.
    Drift,
}

impl Kind {
    /// A short description for people.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Spike => "a spike",
            Kind::Shift => "a shift of its level",
            Kind::Variance => "more noise than usual",
            Kind::Drift => "a drift away from its level of the last day",
        }
    }
}

/// The detector's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sensitivity {
    /// A point counts when its residual exceeds this many spreads (raised
    /// for series whose noise has heavier tails).
    pub spike: f64,
    /// The shift CUSUM's allowance, in spreads per sample (where the noise
    /// is heavy-tailed, the test looks for a shift of fixed size instead).
    pub shift_allowance: f64,
    /// The shift CUSUM's decision threshold.
    pub shift_threshold: f64,
    /// The short mean of squared residuals that counts as more noise; the
    /// variance CUSUM's threshold scales with it (and, where the noise may
    /// be heavy-tailed, its allowance).
    pub variance: f64,
    /// How many spreads the level may drift from its median of the day.
    pub drift: f64,
}

impl Default for Sensitivity {
    fn default() -> Self {
        Sensitivity {
            spike: 6.0,
            shift_allowance: 0.75,
            shift_threshold: 8.0,
            variance: 4.0,
            drift: 4.0,
        }
    }
}

/// A cycle: the usual value in each of its buckets, learned as it comes.
/// Its *offset* at a time is that bucket's usual value less the mean of all
/// buckets: what the cycle adds to the level then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    /// The usual value per bucket.
    pub means: Vec<f64>,
    /// The weight of the samples each bucket has learned (capped).
    pub weights: Vec<f64>,
    /// Buckets never visited.
    pub unvisited: usize,
    /// The sum of `means`.
    pub sum: f64,
    /// Mean absolute residual with the cycle, and without it.
    pub with: f64,
    /// See `with`.
    pub without: f64,
}

impl Cycle {
    fn new(buckets: usize) -> Cycle {
        Cycle {
            means: vec![0.0; buckets],
            weights: vec![0.0; buckets],
            unvisited: buckets,
            sum: 0.0,
            with: 0.0,
            without: 0.0,
        }
    }

    /// The two buckets around `pos` (in buckets) and their weights.
    fn around(&self, pos: f64) -> [(usize, f64); 2] {
        let n = self.means.len();
        let centred = pos - 0.5;
        let lo = centred.floor();
        let w = centred - lo;
        let lo = (lo as i64).rem_euclid(n as i64) as usize;
        [(lo, 1.0 - w), ((lo + 1) % n, w)]
    }

    /// The usual value at `pos`, from the buckets around it that have been
    /// visited.
    fn value_at(&self, pos: f64) -> Option<f64> {
        let (mut sum, mut weight) = (0.0, 0.0);
        for (b, w) in self.around(pos) {
            if self.weights[b] > 0.0 {
                sum += self.means[b] * w;
                weight += w;
            }
        }
        (weight > 0.0).then(|| sum / weight)
    }

    /// What the cycle adds to the level at `pos` (0 until every bucket is
    /// known).
    fn offset_at(&self, pos: f64) -> f64 {
        if self.unvisited > 0 {
            return 0.0;
        }
        self.value_at(pos)
            .map_or(0.0, |v| v - self.sum / self.means.len() as f64)
    }

    /// Learns `target` at `pos`, with `scale` times a sample's usual weight.
    fn learn(&mut self, pos: f64, target: f64, scale: f64) {
        for (b, w) in self.around(pos) {
            if w <= 0.0 {
                continue;
            }
            let w = w * scale;
            if self.weights[b] == 0.0 {
                self.unvisited -= 1;
            }
            // A running mean of what the bucket saw, weighted by how close
            // each sample was to its centre, until it is an exponential one.
            self.weights[b] = (self.weights[b] + w).min(1e6);
            let rate = (w / self.weights[b]).max(CYCLE_RATE * w);
            let delta = rate * (target - self.means[b]);
            self.means[b] += delta;
            self.sum += delta;
        }
    }

    /// Measures how far `target` is from the cycle and from `base`, then
    /// learns it (with `scale` times a sample's usual weight).
    fn observe(&mut self, pos: f64, target: f64, base: f64, weight: f64, scale: f64) {
        let with = self
            .value_at(pos)
            .map_or(target - base, |v| target - v)
            .abs();
        self.with += weight * (with - self.with);
        self.without += weight * ((target - base).abs() - self.without);
        self.learn(pos, target, scale);
    }

    /// True if and only if every bucket has been visited and the cycle
    /// explains a good part of the deviations from the base.
    fn helps(&self) -> bool {
        self.unvisited == 0 && self.with < 0.8 * self.without
    }
}

/// What scoring one sample found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The value the model expected.
    pub expected: f64,
    /// The residual in spreads.
    pub z: f64,
    /// What the sample is, if anomalous.
    pub anomaly: Option<Kind>,
    /// How far past its test's threshold, as a multiple of it (≥ 1 when
    /// anomalous).
    pub strength: f64,
}

/// Everything learned of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Samples learned.
    pub samples: u64,
    /// When the first and the newest were taken, ms since the epoch.
    pub first_ms: i64,
    /// See `first_ms`.
    pub last_ms: i64,
    /// The level, cycles taken out.
    pub level: f64,
    /// A slow level (time constant [`BASE_TAU_MS`]) the cycles are learned
    /// against.
    pub base: f64,
    /// The mean absolute residual.
    pub abs_residual: f64,
    /// The mean product of consecutive residuals, and of squared ones: their
    /// ratio is the residuals' lag-1 autocorrelation.
    pub lag_product: f64,
    /// See `lag_product`.
    pub square: f64,
    /// The previous residual.
    pub previous: f64,
    /// The previous sample's residual in spreads, unclipped (0 until warm).
    #[serde(default)]
    pub previous_z: f64,
    /// The daily cycle.
    pub daily: Cycle,
    /// The weekly cycle (on top of the daily one).
    pub weekly: Cycle,
    /// Whether the level has the daily cycle taken out.
    pub daily_on: bool,
    /// Whether the level has the weekly cycle taken out.
    pub weekly_on: bool,
    /// Per [`TAIL_LEVELS`], the share of samples whose residual exceeded it.
    pub tail: [f64; 6],
    /// Samples the tail and the second moment have learned: only those
    /// scored once the model was warm, as before that the spread is not
    /// known and every residual looks huge.
    #[serde(default)]
    pub tail_samples: u64,
    /// The long-run mean of the squared (clipped) residual in spreads: 1 for
    /// Gaussian noise, more for heavier tails.
    pub second_moment: f64,
    /// Per hour of the day, the mean absolute residual against the spread:
    /// busy hours may be noisier than quiet ones.
    pub hourly: Vec<f64>,
    /// Per hour of the day, the weight learned.
    pub hourly_weight: Vec<f64>,
    /// The two sides of the CUSUM.
    pub cusum_high: f64,
    /// See `cusum_high`.
    pub cusum_low: f64,
    /// The short mean of squared (clipped) residuals.
    pub variance: f64,
    /// A CUSUM of a bounded score of the residual (see [`VARIANCE_LIGHT`])
    /// past its allowance: grown noise adds up in it sample by sample,
    /// while the short mean still remembers ten minutes of the old noise
    /// and wavers around its threshold. (It replaces a CUSUM of squared
    /// residuals clipped at 4 spreads, which noise grown 3 times passes a
    /// fifth of the time, so that it added up slowly; that one's saved
    /// value, in other units, is not read.)
    #[serde(default)]
    pub scale_cusum: f64,
    /// The level at each of the last hours, oldest first.
    pub snapshots: Vec<f64>,
    /// When the newest snapshot was taken.
    pub snapshot_ms: i64,
    /// How fast the level moves, per ms (time constant [`SLOPE_TAU_MS`]),
    /// learned during the first day only.
    #[serde(default)]
    pub slope: f64,
}

/// The weight of a new sample for an exponential mean of time constant `tau`,
/// `dt` after the previous one.
fn weight(dt: f64, tau: f64) -> f64 {
    1.0 - (-dt.max(0.0) / tau).exp()
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// A model that has learned nothing.
    pub fn new() -> Model {
        Model {
            samples: 0,
            first_ms: 0,
            last_ms: 0,
            level: 0.0,
            base: 0.0,
            abs_residual: 0.0,
            lag_product: 0.0,
            square: 0.0,
            previous: 0.0,
            previous_z: 0.0,
            daily: Cycle::new(DAY_BUCKETS),
            weekly: Cycle::new(WEEK_BUCKETS),
            daily_on: false,
            weekly_on: false,
            tail: [0.0; 6],
            tail_samples: 0,
            second_moment: 1.0,
            hourly: vec![0.0; SPREAD_BUCKETS],
            hourly_weight: vec![0.0; SPREAD_BUCKETS],
            cusum_high: 0.0,
            cusum_low: 0.0,
            variance: 1.0,
            scale_cusum: 0.0,
            snapshots: Vec::new(),
            snapshot_ms: 0,
            slope: 0.0,
        }
    }

    fn positions(t: i64) -> (f64, f64) {
        let day = t.rem_euclid(DAY_MS) as f64 / DAY_MS as f64 * DAY_BUCKETS as f64;
        let week = t.rem_euclid(WEEK_MS) as f64 / WEEK_MS as f64 * WEEK_BUCKETS as f64;
        (day, week)
    }

    /// The cycles' part of the expected value at `t`, each counted only if
    /// it helps.
    fn seasonal(&self, t: i64) -> f64 {
        let (d, w) = Model::positions(t);
        let mut s = 0.0;
        if self.daily_on {
            s += self.daily.offset_at(d);
        }
        if self.weekly_on {
            s += self.weekly.offset_at(w);
        }
        s
    }

    /// The noise's scale: the mean absolute residual as a standard deviation
    /// of Gaussian noise, never below a thousandth of the level (a constant
    /// series would otherwise call any change infinitely anomalous).
    pub fn spread(&self) -> f64 {
        (self.abs_residual * 1.2533)
            .max(self.level.abs() * 1e-3)
            .max(1e-9)
    }

    /// The spread at `t`: [`spread`](Self::spread), scaled by how noisy
    /// this hour of the day is against the others once a daily cycle is
    /// known and every hour has been seen.
    pub fn spread_at(&self, t: i64) -> f64 {
        let base = self.spread();
        if !self.daily_on || self.hourly_weight.contains(&0.0) {
            return base;
        }
        let mean = self.hourly.iter().sum::<f64>() / SPREAD_BUCKETS as f64;
        let h = (t.rem_euclid(DAY_MS) / HOUR_MS) as usize % SPREAD_BUCKETS;
        if mean <= 0.0 {
            return base;
        }
        // An hour's own mean counts as much as the day's once it has seen
        // HOURLY_PRIOR samples, and less before: the profile is used as soon
        // as every hour has been seen once, and an hour seen for a few
        // samples, all in grown noise, would otherwise make that noise its
        // normal (a variance change in the last hour to be seen went unfound
        // for 62 samples on the detectors bench, seed 2).
        let n = self.hourly_weight[h];
        let own = (self.hourly[h] * n + mean * HOURLY_PRIOR) / (n + HOURLY_PRIOR);
        base * (own / mean).clamp(0.5, 3.0)
    }

    /// True if and only if the model is in its first day without a known
    /// cycle.
    fn first_day(&self) -> bool {
        !self.daily_on && self.last_ms - self.first_ms < DAY_MS
    }

    /// True if and only if the model has seen 30 samples over half an hour
    /// at least: enough to know the spread.
    pub fn warmed_up(&self) -> bool {
        self.samples >= 30 && self.last_ms - self.first_ms >= HOUR_MS / 2
    }

    /// The spike thresholds for this series, for one sample and for two in
    /// a row on the same side: the default, raised to clear the series' own
    /// tail (the level its noise passes once in two days, with a margin;
    /// for a pair, the level it passes so often that two in a row are as
    /// rare).
    pub(crate) fn spike_threshold(&self, s: &Sensitivity, dt: f64) -> (f64, f64) {
        // Share of samples that may pass: one in two days.
        let allowed = (dt / (2.0 * DAY_MS as f64)).max(1e-7);
        let single = self.tail_level(allowed, dt) * SINGLE_MARGIN;
        // Until the tail has seen enough samples for a heavy one to have
        // shown at its low levels, a lone sample must be further out.
        let young = if self.tail_samples < TAIL_EVIDENCE {
            FIRST_DAY_CAUTION
        } else {
            1.0
        };
        let pair = self.tail_level((allowed / PAIR_RARER).sqrt(), dt);
        (
            (s.spike * young).max(single),
            (s.spike * PAIR_SHARE).max(pair),
        )
    }

    /// The level the residual passes with a share of `share` of the samples
    /// (0 if the tail is lighter than that), read off each tail level passed
    /// more often as if the tail fell no faster than a power law beyond it:
    /// the low levels, passed often, tell a heavy tail within hours, long
    /// before the high ones have been passed even once. A level counts once
    /// passed twice at least: a single pass, weighted 1/n while the tail is
    /// young, says little.
    fn tail_level(&self, share: f64, dt: f64) -> f64 {
        let once = weight(dt, TAIL_TAU_MS).max(1.0 / self.tail_samples.max(1) as f64);
        TAIL_LEVELS
            .iter()
            .zip(&self.tail)
            .filter(|(_, s)| **s > share && **s >= 2.0 * once)
            .map(|(level, s)| level * (s / share).powf(1.0 / TAIL_INDEX))
            .fold(0.0, f64::max)
    }

    /// Scores the sample `(t, v)` against what was learned, then learns it.
    pub fn observe(&mut self, t: i64, v: f64, s: &Sensitivity) -> Score {
        if self.samples == 0 {
            *self = Model::new();
            self.first_ms = t;
            self.last_ms = t;
            self.snapshot_ms = t;
            self.level = v;
            self.base = v;
            self.samples = 1;
            return Score {
                expected: v,
                z: 0.0,
                anomaly: None,
                strength: 0.0,
            };
        }
        let dt = (t - self.last_ms).max(1) as f64;
        self.switch_cycles();
        let seasonal = self.seasonal(t);
        let expected = self.level + seasonal;
        let spread = self.spread_at(t);
        let r = v - expected;
        let z = r / spread;
        let zc = z.clamp(-4.0, 4.0);
        // Residuals in units of their own long-run size, for the tests that
        // add them up: a heavy tail must not read as a shift or more noise.
        let norm = self.second_moment.max(1.0).sqrt();
        let caution = if self.first_day() {
            FIRST_DAY_CAUTION
        } else {
            1.0
        };

        // The tests.
        let rho = if self.square > 0.0 {
            (self.lag_product / self.square).clamp(0.0, 0.9)
        } else {
            0.0
        };
        let decorrelate = ((1.0 - rho) / (1.0 + rho)).sqrt();
        // In the first day the cycle is not known yet, and its ramps (a
        // business day starting) read as shifts against a level that lags
        // them: the shift test measures from the level carried along its
        // slope, where the level would be had it not lagged. (Over a
        // quarter of the false alarms on the detectors bench were such, in
        // the first day of series with a cycle.)
        let zs = if self.first_day() {
            ((r - self.slope * LEVEL_TAU_MS) / spread).clamp(-4.0, 4.0)
        } else {
            zc
        };
        let known_tail = self.tail_samples >= TAIL_EVIDENCE;
        let heavy = known_tail && self.tail[0] >= HEAVY_SHARE;
        if heavy {
            let u = T4_PER_SPREAD * zs * decorrelate;
            let ratio = |shift: f64| -2.5 * ((4.0 + (u - shift).powi(2)) / (4.0 + u * u)).ln();
            let scale = Sensitivity::default().shift_threshold / HEAVY_SHIFT_DECISION;
            self.cusum_high = (self.cusum_high + scale * ratio(HEAVY_SHIFT)).max(0.0);
            self.cusum_low = (self.cusum_low + scale * ratio(-HEAVY_SHIFT)).max(0.0);
        } else {
            let step = zs / norm * decorrelate;
            let k = s.shift_allowance;
            self.cusum_high = (self.cusum_high + step - k).max(0.0);
            self.cusum_low = (self.cusum_low - step - k).max(0.0);
        }
        // Capped at 5 times the threshold, so that a finding ends within
        // the hour once the level has caught up: after a two-hour ramp the
        // sum reached 140, and the finding lasted three hours after it.
        let shift_cap = SHIFT_CAP * s.shift_threshold * caution;
        self.cusum_high = self.cusum_high.min(shift_cap);
        self.cusum_low = self.cusum_low.min(shift_cap);
        let wv = weight(dt, VARIANCE_TAU_MS);
        let square = zc * zc / (norm * norm);
        self.variance += wv * (square - self.variance);
        let (increment, decision) = if known_tail && !heavy {
            // The residual freed of its autocorrelation (the part the
            // previous one did not predict, rescaled): AR(1) noise's squared
            // residuals come in runs that add up like grown noise, while the
            // innovations grow exactly as the noise does.
            let e = (z - rho * self.previous_z) / (1.0 - rho * rho).sqrt() / norm;
            let g = VARIANCE_GROWTH;
            let decision = VARIANCE_DECISION * s.variance;
            // One sample adds at most the decision threshold: a lone value
            // far out is for the spike test to judge.
            (
                (e * e * (1.0 - 1.0 / g) / 2.0 - g.ln() / 2.0).min(decision),
                decision,
            )
        } else {
            let (nu, allowance, decision) = if known_tail {
                VARIANCE_HEAVY
            } else {
                VARIANCE_YOUNG
            };
            let score = (nu + 1.0) * z * z / (nu + z * z);
            (score - allowance * s.variance, decision * s.variance)
        };
        // Capped at twice the decision threshold, so that the finding ends
        // soon after the noise is normal again: a ramp or a shift drives
        // the residuals far out for a long while, and without the cap the
        // sum took over six hours to come back after a two-hour ramp.
        self.scale_cusum = (self.scale_cusum + increment).clamp(0.0, 2.0 * decision);
        let drift = self.drift(spread);
        let mut anomaly = None;
        let mut strength = 0.0;
        let warm = self.warmed_up();
        // Whether the spike test called this sample an outlier, whatever
        // test scored highest: the tail must not learn it.
        let mut outlier = false;
        if warm {
            let (spike, pair) = self.spike_threshold(s, dt);
            let burst = if z * self.previous_z > 0.0 {
                z.abs().min(self.previous_z.abs()) / pair
            } else {
                0.0
            };
            let single = (z.abs() / spike).max(burst);
            outlier = single >= 1.0;
            let tests = [
                (Kind::Spike, single),
                (
                    Kind::Shift,
                    self.cusum_high.max(self.cusum_low) / (s.shift_threshold * caution),
                ),
                (
                    Kind::Variance,
                    (self.variance / s.variance).max(self.scale_cusum / decision) / caution,
                ),
                (Kind::Drift, drift / (s.drift * caution)),
            ];
            for (kind, x) in tests {
                if x >= 1.0 && x > strength {
                    anomaly = Some(kind);
                    strength = x;
                }
            }
        }

        // Learning, with the residual clipped so an outlier teaches little.
        let clipped = expected + zc * spread;
        let (d, w) = Model::positions(t);
        let wl = weight(dt, LEVEL_TAU_MS);
        // Once a cycle is in use, it does not learn what the tests flag: its
        // buckets remember mostly the last day, so a shift, ramp or break
        // learned today would be expected at the same time tomorrow, and the
        // normal value then would look anomalous. Until then a flagged
        // sample still visits its bucket (or a cycle would never be known
        // when the first day has an anomaly), with so little weight that
        // the next normal visit overrides it.
        let cycle_share = match anomaly {
            None => 1.0,
            Some(_) if self.daily_on || self.weekly_on => 0.0,
            Some(_) => FLAGGED_SHARE,
        };
        let before = self.level;
        self.level += wl * (clipped - seasonal - self.level);
        // Only the first day's shift test reads the slope.
        if self.first_day() {
            let wsl = weight(dt, SLOPE_TAU_MS);
            self.slope += wsl * ((self.level - before) / dt - self.slope);
        }
        // Each cycle learns the usual value of its buckets with the other
        // cycle taken out, and is judged against the slow base (which a
        // daily cycle barely moves): how far the samples are from the cycle,
        // and from the base.
        let n = self.samples as f64;
        let wb = weight(dt, BASE_TAU_MS).max(1.0 / (n + 1.0));
        let ws = weight(dt, SPREAD_TAU_MS);
        let weekly_now = if self.weekly_on {
            self.weekly.offset_at(w)
        } else {
            0.0
        };
        let daily_now = if self.daily_on {
            self.daily.offset_at(d)
        } else {
            0.0
        };
        if cycle_share > 0.0 {
            self.daily
                .observe(d, clipped - weekly_now, self.base, ws, cycle_share);
            self.weekly
                .observe(w, clipped - daily_now, self.base, ws, cycle_share);
        }
        self.base += wb * (clipped - seasonal - self.base);
        let rc = clipped - expected;
        // The spread learns slowly and from clipped residuals; before the
        // model is warm it learns fast, so the first half hour sets it.
        let wa = if self.samples < 30 { 1.0 / n } else { ws };
        self.abs_residual += wa * (rc.abs() - self.abs_residual);
        // The autocorrelation does not learn what the tests flag (nor do
        // the tail and the second moment, below): during a ramp or a shift
        // the level lags the values, and the residuals, all on one side,
        // would read as noise leaning on its past for hours after (0.9 for
        // six hours after a trend), which the shift test discounts as
        // noise: a level shift of 3.6 spreads then went unfound for 177
        // samples (detectors bench, seed 2).
        if anomaly.is_none() {
            self.lag_product += ws * (rc * self.previous - self.lag_product);
            self.square += ws * (rc * rc - self.square);
        }
        self.previous = rc;
        self.previous_z = if warm { z } else { 0.0 };
        // The tail and the second moment learn from warm samples only: a
        // residual against a spread still being set (near 0 at first) says
        // nothing of the tail, yet weighted 1/n it would stay above the
        // allowed share for days and lift the spike threshold past any
        // spike. Nor do they learn what any test flags: spikes would lift
        // the tail past the next one, and an hour of grown noise or of a
        // shifted level would make a light-tailed series count as heavy for
        // days, so that its next anomaly met the slower heavy-tailed tests
        // and higher spike thresholds (in the detectors bench, seeds 1-3,
        // not learning them finds 5 more spikes of 62, and variance changes
        // 1-2 samples sooner at the median). They average everything at
        // first, then remember a few days.
        if warm && anomaly.is_none() {
            self.tail_samples += 1;
            let wt = weight(dt, TAIL_TAU_MS).max(1.0 / self.tail_samples as f64);
            self.second_moment += wt * (zc * zc - self.second_moment);
            if !outlier {
                for (share, level) in self.tail.iter_mut().zip(TAIL_LEVELS) {
                    let past = if z.abs() > level { 1.0 } else { 0.0 };
                    *share += wt * (past - *share);
                }
            }
        }
        if self.daily_on {
            let h = (t.rem_euclid(DAY_MS) / HOUR_MS) as usize % SPREAD_BUCKETS;
            let relative = (rc / self.spread()).abs();
            self.hourly_weight[h] += 1.0;
            let rate = (1.0 / self.hourly_weight[h]).max(0.02);
            self.hourly[h] += rate * (relative - self.hourly[h]);
        }
        while t - self.snapshot_ms >= HOUR_MS {
            self.snapshot_ms += HOUR_MS;
            if self.snapshots.len() == SNAPSHOTS {
                self.snapshots.remove(0);
            }
            self.snapshots.push(self.level);
        }
        self.samples += 1;
        self.last_ms = t;
        Score {
            expected,
            z,
            anomaly,
            strength,
        }
    }

    /// Starts (or stops) taking a cycle out of the level the moment it
    /// starts (or stops) helping, so that the expected value stays where it
    /// was: the level and its hourly snapshots lose (or regain) the cycle's
    /// offset at their times, and the tests, which saw the old level, start
    /// afresh.
    fn switch_cycles(&mut self) {
        let (daily, weekly) = (self.daily.helps(), self.weekly.helps());
        if daily == self.daily_on && weekly == self.weekly_on {
            return;
        }
        let at = |t: i64, m: &Model, d: bool, w: bool| {
            let (dp, wp) = Model::positions(t);
            let mut s = 0.0;
            if d {
                s += m.daily.offset_at(dp);
            }
            if w {
                s += m.weekly.offset_at(wp);
            }
            s
        };
        let shift = |t: i64, m: &Model| at(t, m, daily, weekly) - at(t, m, m.daily_on, m.weekly_on);
        self.level -= shift(self.last_ms, self);
        let n = self.snapshots.len() as i64;
        for k in 0..n {
            let t = self.snapshot_ms - (n - 1 - k) * HOUR_MS;
            self.snapshots[k as usize] -= shift(t, self);
        }
        self.daily_on = daily;
        self.weekly_on = weekly;
        self.cusum_high = 0.0;
        self.cusum_low = 0.0;
        self.variance = 1.0;
        self.scale_cusum = 0.0;
    }

    /// How many spreads the level is from its median over the last day: 0
    /// until there are six hourly snapshots, and during the first day unless
    /// a daily cycle is known, as a cycle not yet learned looks like a drift.
    fn drift(&self, spread: f64) -> f64 {
        let first_day = self.last_ms - self.first_ms < DAY_MS;
        if self.snapshots.len() < 6 || (first_day && !self.daily_on) {
            return 0.0;
        }
        let mut s = self.snapshots.clone();
        s.sort_unstable_by(f64::total_cmp);
        let median = s[s.len() / 2];
        (self.level - median).abs() / spread
    }
}
