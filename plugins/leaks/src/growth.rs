//! Whether one series grows as a leak does: steadily, for long enough, by
//! enough, with its floor rising — and not as a garbage collector's
//! sawtooth, bursts that return to their baseline, a single step (a reload,
//! a bigger pool) or a warm-up that has levelled off.

use crate::stats::{Point, best_step, mann_kendall_z, quantile, theil_sen};

/// At most this many points are judged (evenly thinned): the pairwise
/// statistics are quadratic, and 180 points span 30 minutes at 10 s.
pub const MAX_POINTS: usize = 180;

/// Each level of a step moves by less than this share of the jump between
/// them, over its own length: a leak's later part keeps rising by about
/// as much as it stands above the earlier, a step's stays where it landed.
const STEP_FLAT: f64 = 0.3;

/// What a series must show to be called a leak.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Fewer points are not judged.
    pub min_samples: usize,
    /// Less history than this is not judged: a collector's sawtooth or a
    /// warm-up look like leaks until the history holds a few of their cycles.
    pub min_duration_ms: i64,
    /// The growth must have lasted this long: the medians of each half of
    /// this last stretch, and of the stretch as long before them, must rise
    /// in turn, so bursts, swells and warm-ups shorter than it are not leaks.
    pub min_rise_ms: i64,
    /// The robust growth over the window must reach this (in the metric's unit).
    pub min_growth: f64,
    /// The Mann–Kendall score the whole window must reach.
    pub min_score: f64,
}

/// The evidence of a leak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// The Theil–Sen slope over the window, per ms.
    pub slope: f64,
    /// `slope` times the time the window covers.
    pub growth: f64,
    /// The time the window covers, ms.
    pub duration_ms: i64,
    /// The Mann–Kendall score of the window.
    pub score: f64,
    /// The latest value.
    pub latest: f64,
    /// How far the floor (10th percentile) of the last quarter is above the first's.
    pub floor_rise: f64,
}

/// Why a series is not a leak, for tests and the plugin's debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Not {
    /// Too few points or too short a history.
    TooLittleData,
    /// No significant monotonic trend.
    NoTrend,
    /// It grows, by less than `min_growth`.
    TooSmall,
    /// The last `min_rise` does not rise throughout: a burst or swell still
    /// young, a warm-up that levelled off, a step.
    NotSustained,
    /// The floor does not rise with the slope: a sawtooth, or bursts.
    FloorFlat,
    /// Two flat levels explain it: a step.
    Step,
}

/// Judges `points` (time order) by `rules`.
pub fn judge(points: &[Point], rules: &Rules) -> Result<Growth, Not> {
    let p = thin(points, MAX_POINTS);
    let n = p.len();
    if n < rules.min_samples.max(8) {
        return Err(Not::TooLittleData);
    }
    let span = p[n - 1].0 - p[0].0;
    if span < rules.min_duration_ms || span <= 0 {
        return Err(Not::TooLittleData);
    }
    let values: Vec<f64> = p.iter().map(|x| x.1).collect();
    let score = mann_kendall_z(&values);
    if score < rules.min_score {
        return Err(Not::NoTrend);
    }
    let slope = theil_sen(&p).ok_or(Not::NoTrend)?;
    if slope <= 0.0 {
        return Err(Not::NoTrend);
    }
    let growth = slope * span as f64;
    if growth < rules.min_growth {
        return Err(Not::TooSmall);
    }

    // Sustained: the median of each half of the last `min_rise` is above
    // the median of the stretch as long before it. A swell or burst younger
    // than that leaves the earlier half flat; a warm-up that levelled off,
    // the later one. "Above" by a twentieth of what the window's slope
    // adds over a half, so that ties of noise do not count: asking more
    // (it was three tenths) made a leak wait until the earlier half stood
    // well clear, most of a minute more, and turned away no control in the
    // leak benchmark that the step test below does not.
    let half = (rules.min_rise_ms / 2).max(1);
    let end = p[n - 1].0;
    let block = |from: i64, to: i64| -> Option<f64> {
        let mut v: Vec<f64> = p
            .iter()
            .filter(|x| x.0 > from && x.0 <= to)
            .map(|x| x.1)
            .collect();
        if v.len() < 3 {
            return None;
        }
        crate::stats::median(&mut v)
    };
    let need = 0.05 * slope * half as f64;
    match (
        block(end - 3 * half, end - 2 * half),
        block(end - 2 * half, end - half),
        block(end - half, end),
    ) {
        (Some(before), Some(earlier), Some(later))
            if earlier - before >= need && later - earlier >= need => {}
        (Some(_), Some(_), Some(_)) => return Err(Not::NotSustained),
        _ => return Err(Not::TooLittleData),
    }

    // A leak lifts what the series falls back to, not only its peaks.
    let q = n / 4;
    let first_floor = quantile(&mut values[..q].to_vec(), 0.1).unwrap_or(0.0);
    let last_floor = quantile(&mut values[n - q..].to_vec(), 0.1).unwrap_or(0.0);
    let floor_rise = last_floor - first_floor;
    let between = (p[n - q].0 - p[q - 1].0).max(0) as f64;
    if floor_rise < 0.5 * slope * between {
        return Err(Not::FloorFlat);
    }

    // A step: the best split leaves two levels that barely move, next to
    // the jump between them. Measured against the jump, not the window's
    // slope: a step late in the window leaves most pairs of points flat, so
    // the window's slope is small and a little noise after the step would
    // read as growth beside it.
    if let Some(k) = best_step(&values, (n / 10).max(3)) {
        let level = |part: &[f64]| crate::stats::median(&mut part.to_vec()).unwrap_or(0.0);
        let jump = level(&values[k..]) - level(&values[..k]);
        let moves = |part: &[Point]| {
            let span = (part[part.len() - 1].0 - part[0].0) as f64;
            theil_sen(part).map_or(0.0, |b| b.abs() * span)
        };
        let flat = |part: &[Point]| moves(part) < STEP_FLAT * jump;
        if jump > 0.0 && flat(&p[..k]) && flat(&p[k..]) {
            return Err(Not::Step);
        }
    }

    Ok(Growth {
        slope,
        growth,
        duration_ms: span,
        score,
        latest: values[n - 1],
        floor_rise,
    })
}

/// At most `max` of `points`, evenly spaced by index, the last one kept.
fn thin(points: &[Point], max: usize) -> Vec<Point> {
    let finite = points.iter().filter(|p| p.1.is_finite());
    let n = points.len();
    if n <= max {
        return finite.copied().collect();
    }
    let step = n as f64 / max as f64;
    let mut out: Vec<Point> = (0..max)
        .map(|i| points[((i as f64 * step) as usize).min(n - 1)])
        .filter(|p| p.1.is_finite())
        .collect();
    if let Some(last) = points.last().filter(|p| p.1.is_finite())
        && out.last() != Some(last)
    {
        out.push(*last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 10_000; // one sample every 10 s
    const MIN: f64 = 6.0; // samples per minute

    fn rules() -> Rules {
        Rules {
            min_samples: 12,
            min_duration_ms: 15 * 60_000,
            min_rise_ms: 10 * 60_000,
            min_growth: 10.0,
            min_score: 3.0,
        }
    }

    /// A fixed noise in [-1, 1).
    fn noise(i: usize) -> f64 {
        let x = (i as u64 + 17)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// 30 minutes of `f(sample index)`, rounded as counts are.
    fn series(f: impl Fn(usize) -> f64) -> Vec<Point> {
        (0..180).map(|i| (i as i64 * S, f(i).round())).collect()
    }

    #[test]
    fn steady_leaks_fast_and_slow_are_leaks_with_their_rate() {
        // 2 descriptors a minute over a baseline of 40 that wobbles by 3.
        let slow = series(|i| 40.0 + 2.0 * i as f64 / MIN + 3.0 * noise(i));
        let g = judge(&slow, &rules()).unwrap();
        assert!((g.slope * 60_000.0 - 2.0).abs() < 0.2, "{g:?}");
        assert!(g.growth > 50.0 && g.floor_rise > 30.0, "{g:?}");
        let fast = series(|i| 40.0 + 30.0 * i as f64 / MIN);
        assert!(judge(&fast, &rules()).is_ok());
        // A leak in chunks: 8 every 4 minutes.
        let stairs = series(|i| 40.0 + 8.0 * (i / 24) as f64);
        assert!(judge(&stairs, &rules()).is_ok());
    }

    #[test]
    fn a_leak_that_began_mid_window_is_a_leak() {
        let late = series(|i| {
            40.0 + if i < 100 {
                0.0
            } else {
                3.0 * (i - 100) as f64 / MIN
            } + noise(i)
        });
        assert!(
            judge(&late, &rules()).is_ok(),
            "{:?}",
            judge(&late, &rules())
        );
    }

    #[test]
    fn a_leak_under_a_sawtooth_is_a_leak() {
        // Memory a collector frees every 3 minutes, whose floor rises 1 a minute.
        let gc = series(|i| 100.0 + i as f64 / MIN + 40.0 * ((i % 18) as f64 / 18.0));
        assert!(judge(&gc, &rules()).is_ok(), "{:?}", judge(&gc, &rules()));
    }

    #[test]
    fn a_sawtooth_over_a_flat_floor_is_not() {
        for period in [12, 18, 30, 36] {
            let gc = series(|i| 100.0 + 60.0 * ((i % period) as f64 / period as f64) + noise(i));
            assert!(judge(&gc, &rules()).is_err(), "period {period}");
        }
    }

    #[test]
    fn bursts_that_return_steps_and_levelled_warm_ups_are_not() {
        let bursts = series(|i| 40.0 + if i % 30 >= 24 { 50.0 } else { 0.0 } + noise(i));
        assert!(judge(&bursts, &rules()).is_err());
        // A reload that holds 60 more from minute 22 on: right after it, and long after.
        for at in [130, 150, 170] {
            let step = series(|i| 40.0 + if i >= at { 60.0 } else { 0.0 } + 2.0 * noise(i));
            assert!(
                judge(&step, &rules()).is_err(),
                "step at {at}: {:?}",
                judge(&step, &rules())
            );
        }
        // A warm-up that grew for 8 minutes and levelled off.
        let warm = series(|i| 40.0 + 80.0 * (1.0 - (-(i as f64) / 16.0).exp()) + noise(i));
        assert_eq!(judge(&warm, &rules()), Err(Not::NotSustained));
        // Flat with noise, and too little data.
        let flat = series(|i| 40.0 + 5.0 * noise(i));
        assert!(judge(&flat, &rules()).is_err());
        assert_eq!(judge(&flat[..6], &rules()), Err(Not::TooLittleData));
        // A swell that has risen for 6 minutes may be a leak's start; it is
        // not called one until it has risen for `min_rise`: over the whole
        // window most pairs of points are still flat, and over the last
        // `min_rise` the earlier half is.
        let swell = |i: usize| {
            40.0 + if i >= 144 {
                5.0 * (i - 144) as f64
            } else {
                0.0
            } + noise(i)
        };
        assert_eq!(judge(&series(swell), &rules()), Err(Not::TooSmall));
        let short: Vec<Point> = series(swell)[89..].to_vec();
        assert_eq!(judge(&short, &rules()), Err(Not::NotSustained));
        // The same rise, once it has gone on for 12 minutes, is one.
        let on = series(|i| swell(i + 36));
        assert!(judge(&on, &rules()).is_ok(), "{:?}", judge(&on, &rules()));
        // Ten minutes of history is not enough to judge.
        let young = series(|i| 40.0 + i as f64);
        assert_eq!(judge(&young[..60], &rules()), Err(Not::TooLittleData));
    }

    #[test]
    fn a_step_late_in_a_short_history_is_a_step_though_noise_after_it_drifts_up() {
        // Threads: 20 minutes at about 11, then 20 more held from minute
        // 20, drifting up by 2 over the next 7 minutes as a busy process's
        // own use wanders. Most pairs of points lie on one side of the step,
        // so the window's slope is small, and the drift after the step is
        // not small beside it; beside the jump of 20 it is.
        let step: Vec<Point> = (0..162)
            .map(|i| {
                let wander = 1.5 * noise(i);
                let v = if i < 120 {
                    11.0 + wander
                } else {
                    30.0 + 2.0 * (i - 120) as f64 / 42.0 + wander
                };
                (i as i64 * S, v.round())
            })
            .collect();
        // Counts of a few dozen: any growth counts.
        let rules = Rules {
            min_growth: 1.0,
            ..rules()
        };
        assert_eq!(judge(&step, &rules), Err(Not::Step));
    }

    #[test]
    fn growth_below_the_minimum_is_too_small() {
        let slow = series(|i| 40.0 + 0.2 * i as f64 / MIN);
        assert_eq!(judge(&slow, &rules()), Err(Not::TooSmall));
    }

    #[test]
    fn thinning_keeps_the_ends_and_skips_non_finite_values() {
        let mut p: Vec<Point> = (0..1000).map(|i| (i, i as f64)).collect();
        p[500].1 = f64::NAN;
        let t = thin(&p, 100);
        assert!(t.len() <= 101 && t.len() >= 99);
        assert_eq!(t[0], (0, 0.0));
        assert_eq!(*t.last().unwrap(), (999, 999.0));
        assert!(t.iter().all(|x| x.1.is_finite()));
    }
}
