//! A seeded generator of labeled series for the detector benchmark.
//!
//! Each anomaly series is one minute apart, several days long, and drawn at
//! random from a mix of behaviours: a level spanning four orders of
//! magnitude; Gaussian, autocorrelated (AR(1)) or heavy-tailed (Student-t)
//! noise; a daily cycle (a sine or business hours) of random amplitude, or
//! none; a slow benign drift; and, for some, a counter with resets (the
//! detector then watches its rate). Into each go one to three labeled
//! anomaly windows, at least six hours apart and none in the first six
//! hours, of six kinds in equal shares: spikes, level shifts, trend changes,
//! variance changes, seasonal breaks (only where there is a cycle to break)
//! and slow leaks. Magnitudes are in units of the series' own noise, drawn
//! from fixed ranges chosen before any detector was run against them.
//!
//! Each exhaustion series is a resource (disk, memory) with a capacity: some
//! grow toward it (linearly, with noise, daily cycles and cleanups that drop
//! the usage back), some grow too slowly to get there within the horizon,
//! some are flat or cyclic. The label is, at every sample, the true time to
//! exhaustion of the generating trend.

#![allow(dead_code, reason = "each bench uses part of the generator")]

/// One minute, the resolution of every scenario.
pub(crate) const STEP_MS: i64 = 60_000;
/// Where every scenario starts: 2024-01-01T00:00:00Z (a Monday).
pub(crate) const START_MS: i64 = 1_704_067_200_000;
/// Samples per day.
pub(crate) const DAY: usize = 1440;

/// splitmix64: small, seeded, and the same everywhere.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// A uniform u64.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [lo, hi].
    pub(crate) fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// +1 or -1.
    pub(crate) fn sign(&mut self) -> f64 {
        if self.unit() < 0.5 { 1.0 } else { -1.0 }
    }
}

/// The kinds of labeled anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// One to three samples far off.
    Spike,
    /// The level moves and stays, then comes back.
    LevelShift,
    /// The series starts to ramp away from its behaviour.
    TrendChange,
    /// The noise grows.
    VarianceChange,
    /// The daily cycle stops or moves.
    SeasonalBreak,
    /// A slow steady climb, then a drop back (a restart).
    SlowLeak,
}

impl Kind {
    /// Every kind, in the order tables list them.
    pub(crate) const ALL: [Kind; 6] = [
        Kind::Spike,
        Kind::LevelShift,
        Kind::TrendChange,
        Kind::VarianceChange,
        Kind::SeasonalBreak,
        Kind::SlowLeak,
    ];

    /// Its name in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Spike => "spike",
            Kind::LevelShift => "level shift",
            Kind::TrendChange => "trend change",
            Kind::VarianceChange => "variance change",
            Kind::SeasonalBreak => "seasonal break",
            Kind::SlowLeak => "slow leak",
        }
    }
}

/// A labeled anomaly: samples `start..end` of its series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// Its kind.
    pub(crate) kind: Kind,
    /// The first anomalous sample.
    pub(crate) start: usize,
    /// One past the last.
    pub(crate) end: usize,
}

/// The noise a series has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noise {
    /// Independent Gaussian.
    Gaussian,
    /// AR(1): each sample leans on the one before.
    Correlated,
    /// Student-t with 4 degrees of freedom: occasional large values that
    /// are normal for the series.
    HeavyTailed,
}

/// One generated anomaly series.
#[derive(Debug, Clone)]
pub(crate) struct Labeled {
    /// Its values, one per minute from [`START_MS`].
    pub(crate) values: Vec<f64>,
    /// Its anomalies.
    pub(crate) windows: Vec<Window>,
    /// True if and only if the values are a counter (with resets) whose
    /// rate carries the behaviour and the anomalies.
    pub(crate) counter: bool,
    /// The noise it has.
    pub(crate) noise: Noise,
    /// Whether it has a daily cycle.
    pub(crate) seasonal: bool,
}

/// Generates `n` anomaly series of `days` days each from `seed`.
pub(crate) fn anomaly_series(seed: u64, n: usize, days: usize) -> Vec<Labeled> {
    (0..n)
        .map(|i| {
            one_anomaly_series(
                &mut Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
                i,
                days,
            )
        })
        .collect()
}

fn one_anomaly_series(rng: &mut Rng, i: usize, days: usize) -> Labeled {
    let len = days * DAY;
    let level = 10f64.powf(rng.range(0.0, 4.0));
    let sigma = level * rng.range(0.02, 0.1);
    let noise = match rng.int(0, 2) {
        0 => Noise::Gaussian,
        1 => Noise::Correlated,
        _ => Noise::HeavyTailed,
    };
    let phi = rng.range(0.3, 0.7);
    let seasonal = rng.unit() < 0.7;
    let amplitude = if seasonal {
        sigma * rng.range(2.0, 8.0)
    } else {
        0.0
    };
    let phase = rng.range(0.0, std::f64::consts::TAU);
    let business_hours = rng.unit() < 0.4;
    let drift_per_day = sigma * rng.range(-0.5, 0.5);
    let counter = rng.unit() < 0.2;

    // Windows: one to three, six hours apart, none in the first six hours,
    // kinds drawn evenly (a seasonal break only where there is a cycle).
    let mut windows: Vec<Window> = Vec::new();
    let wanted = rng.int(1, 3);
    let mut tries = 0;
    while windows.len() < wanted && tries < 100 {
        tries += 1;
        let mut kind = Kind::ALL[rng.int(0, 5)];
        if kind == Kind::SeasonalBreak && !seasonal {
            kind = Kind::ALL[[0usize, 1, 2, 3, 5][rng.int(0, 4)]];
        }
        let length = match kind {
            Kind::Spike => rng.int(1, 3),
            Kind::LevelShift => rng.int(30, 240),
            Kind::TrendChange => rng.int(60, 180),
            Kind::VarianceChange => rng.int(60, 240),
            Kind::SeasonalBreak => rng.int(120, 360),
            Kind::SlowLeak => rng.int(240, 720),
        };
        let start = rng.int(360, len.saturating_sub(length + 60).max(361));
        let end = start + length;
        if end + 60 > len {
            continue;
        }
        let clear = windows
            .iter()
            .all(|w| end + 360 <= w.start || w.end + 360 <= start);
        if clear {
            windows.push(Window { kind, start, end });
        }
    }
    windows.sort_by_key(|w| w.start);
    let effects: Vec<(Window, f64, f64)> = windows
        .iter()
        .map(|w| {
            let size = match w.kind {
                Kind::Spike => rng.range(6.0, 12.0),
                Kind::LevelShift => rng.range(3.0, 6.0),
                Kind::TrendChange => rng.range(0.1, 0.3),
                Kind::VarianceChange => rng.range(3.0, 5.0),
                Kind::SeasonalBreak => rng.range(6.0, 12.0),
                Kind::SlowLeak => rng.range(4.0, 8.0),
            };
            (*w, size, rng.sign())
        })
        .collect();

    let mut ar = 0.0;
    let mut values = Vec::with_capacity(len);
    for t in 0..len {
        let day_phase = (t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
        let mut shift_hours = 0.0;
        let mut flat = false;
        let mut extra = 0.0;
        let mut noise_scale = 1.0;
        for (w, size, sign) in &effects {
            if t < w.start || t >= w.end {
                continue;
            }
            let k = (t - w.start) as f64;
            match w.kind {
                Kind::Spike => extra += sign * size * sigma,
                Kind::LevelShift => extra += sign * size * sigma,
                Kind::TrendChange => extra += sign * size * sigma * k,
                Kind::VarianceChange => noise_scale = *size,
                Kind::SeasonalBreak => {
                    // Half the breaks flatten the cycle, half move it.
                    if *sign > 0.0 {
                        flat = true;
                    } else {
                        shift_hours = *size;
                    }
                }
                Kind::SlowLeak => {
                    extra += size * sigma * k / (w.end - w.start) as f64;
                }
            }
        }
        let cycle = if flat {
            0.0
        } else {
            let p = day_phase + phase + shift_hours / 24.0 * std::f64::consts::TAU;
            if business_hours {
                // A smooth plateau, high for about eight hours a day.
                (1.0 / (1.0 + (-6.0 * (p.sin() - 0.3)).exp()) - 0.5) * 2.0
            } else {
                p.sin()
            }
        };
        let e = match noise {
            Noise::Gaussian => rng.normal(),
            Noise::Correlated => {
                ar = phi * ar + (1.0 - phi * phi).sqrt() * rng.normal();
                ar
            }
            Noise::HeavyTailed => {
                // Student-t(4), scaled to unit variance.
                let chi: f64 = (0..4).map(|_| rng.normal().powi(2)).sum();
                rng.normal() / (chi / 4.0).sqrt() / 2f64.sqrt()
            }
        };
        let v = level
            + drift_per_day * t as f64 / DAY as f64
            + amplitude * cycle
            + extra
            + sigma * noise_scale * e;
        values.push(v);
    }
    if counter {
        // The behaviour is the per-minute rate; the series is its running
        // total, restarted from 0 a few times (a process restart).
        let resets: Vec<usize> = (0..rng.int(1, 3))
            .map(|_| rng.int(DAY / 4, len - 1))
            .collect();
        let mut total = 0.0;
        for (t, v) in values.iter_mut().enumerate() {
            if resets.contains(&t) {
                total = 0.0;
            }
            total += v.max(0.0);
            *v = total;
        }
    }
    let _ = i;
    Labeled {
        values,
        windows,
        counter,
        noise,
        seasonal,
    }
}

/// One generated exhaustion series.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    /// Its usage, one sample a minute from [`START_MS`].
    pub(crate) values: Vec<f64>,
    /// The capacity.
    pub(crate) capacity: f64,
    /// At each sample, the true minutes to exhaustion of the generating
    /// trend (`f64::INFINITY` when it does not grow).
    pub(crate) eta_minutes: Vec<f64>,
}

/// Generates `n` resources of `days` days each from `seed`, for a detector
/// whose horizon is `horizon_minutes`.
pub(crate) fn exhaustion_series(
    seed: u64,
    n: usize,
    days: usize,
    horizon_minutes: f64,
) -> Vec<Resource> {
    (0..n)
        .map(|i| {
            let mut rng = Rng::new(seed.wrapping_mul(7_919).wrapping_add(i as u64));
            one_resource(&mut rng, days, horizon_minutes)
        })
        .collect()
}

fn one_resource(rng: &mut Rng, days: usize, horizon: f64) -> Resource {
    let len = days * DAY;
    let capacity = 10f64.powf(rng.range(2.0, 6.0));
    let sigma = capacity * rng.range(0.002, 0.01);
    let amplitude = if rng.unit() < 0.5 {
        capacity * rng.range(0.0, 0.03)
    } else {
        0.0
    };
    let phase = rng.range(0.0, std::f64::consts::TAU);
    // The growth, per minute, in episodes: between cleanups, usage climbs
    // from a base at a slope drawn per episode; some episodes reach the
    // capacity within the horizon, some grow too slowly, some are flat.
    let mut values = Vec::with_capacity(len);
    let mut eta = Vec::with_capacity(len);
    let mut t = 0;
    while t < len {
        let episode = rng.int(DAY / 2, 2 * DAY).min(len - t);
        let base = capacity * rng.range(0.1, 0.5);
        let slope = match rng.int(0, 3) {
            // Gets there well within the horizon, somewhere in the episode.
            0 => (capacity - base) / (episode as f64 * rng.range(0.6, 1.2)),
            // Grows, but would need three to ten horizons.
            1 => (capacity - base) / (horizon * rng.range(3.0, 10.0)),
            // Flat.
            2 => 0.0,
            // Shrinks slowly.
            _ => -(base * 0.5) / episode as f64,
        };
        for k in 0..episode {
            let trend = base + slope * k as f64;
            let p = (t + k) as f64 / DAY as f64 * std::f64::consts::TAU + phase;
            let v = (trend + amplitude * p.sin() + sigma * rng.normal()).min(capacity);
            values.push(v);
            eta.push(if slope > 0.0 {
                ((capacity - trend) / slope).max(0.0)
            } else {
                f64::INFINITY
            });
        }
        t += episode;
    }
    Resource {
        values,
        capacity,
        eta_minutes: eta,
    }
}
