use super::*;

#[path = "../../../../host/warden/benches/support/scenarios.rs"]
mod scenarios;
mod tune;

const MIN: i64 = 60_000;
const T0: i64 = 1_704_067_200_000;

/// `minutes` samples a minute apart: `f(minute)` plus deterministic noise
/// of spread about 1.
fn series(minutes: i64, f: impl Fn(i64) -> f64) -> (Vec<i64>, Vec<f64>) {
    let mut rng = scenarios::Rng::new(7);
    (0..minutes)
        .map(|m| (T0 + m * MIN, f(m) + rng.normal()))
        .unzip()
}

fn detector(json: &str) -> Anomaly {
    Anomaly::new(serde_json::from_str(json).unwrap()).unwrap()
}

fn now_of(times: &[i64]) -> i64 {
    *times.last().unwrap()
}

#[test]
fn steady_noise_says_nothing_and_a_spike_in_it_is_found_at_once() {
    let d = detector(r#"{"metric": "m"}"#);
    let (t, v) = series(240, |_| 100.0);
    for end in (60..240).step_by(7) {
        assert_eq!(
            d.scan(&t[..end], &v[..end], t[end - 1]),
            None,
            "at minute {end}"
        );
    }
    let (t, mut v) = series(240, |_| 100.0);
    v[239] += 12.0;
    let f = d.scan(&t, &v, now_of(&t)).unwrap();
    assert_eq!((f.at_ms, f.score.anomaly), (t[239], Some(Kind::Spike)));
    assert!(f.score.z > 8.0, "{f:?}");
}

#[test]
fn a_level_shift_is_found_within_a_few_samples() {
    let d = detector(r#"{"metric": "m"}"#);
    // Ten samples after a shift of 4 spreads in the first day (its tests are
    // cautious then); how fast on average is the detectors bench's figure.
    let (t, v) = series(300, |m| if m >= 290 { 104.0 } else { 100.0 });
    let f = d.scan(&t, &v, now_of(&t));
    assert!(f.is_some_and(|f| f.score.anomaly.is_some()), "{f:?}");
}

#[test]
fn a_learned_daily_cycle_is_normal_and_its_absence_is_not() {
    let d = detector(r#"{"metric": "m", "window": "26h"}"#);
    let cycle = |m: i64| 100.0 + 10.0 * (m as f64 / 1440.0 * std::f64::consts::TAU).sin();
    let (t, v) = series(1440 + 600, cycle);
    for end in (1560..2040).step_by(13) {
        let from = end - 1560;
        assert_eq!(
            d.scan(&t[from..end], &v[from..end], t[end - 1]),
            None,
            "at minute {end}"
        );
    }
    // The cycle stops near its peak: flat at the mean.
    let (t, v) = series(
        1440 + 600,
        |m| if m >= 1440 + 330 { 100.0 } else { cycle(m) },
    );
    let end = 1440 + 340;
    let f = d.scan(&t[end - 1560..end], &v[end - 1560..end], t[end - 1]);
    assert!(f.is_some(), "a broken cycle is anomalous");
}

#[test]
fn counter_resets_are_not_anomalies() {
    let d = detector(r#"{"metric": "m", "counter": true}"#);
    let (t, rate) = series(300, |_| 50.0);
    let mut total = 0.0;
    let v: Vec<f64> = rate
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i == 200 {
                total = 0.0;
            }
            total += r * 60.0;
            total
        })
        .collect();
    for end in [199, 201, 202, 250, 300] {
        assert_eq!(d.scan(&t[..end], &v[..end], t[end - 1]), None, "at {end}");
    }
    let (t2, r2) = rates(&t[..3], &v[..3]);
    assert_eq!(t2.len(), 2);
    assert!((r2[0] - rate[1]).abs() < 1e-9, "per second: {r2:?}");
}

#[test]
fn the_model_is_a_value_that_can_be_kept_and_continued() {
    let (t, v) = series(600, |m| 50.0 + (m % 30) as f64 * 0.1);
    let s = Sensitivity::default();
    let mut whole = Model::new();
    let mut kept = Model::new();
    for (i, (t, v)) in t.iter().zip(&v).enumerate() {
        let a = whole.observe(*t, *v, &s);
        let b = kept.observe(*t, *v, &s);
        // JSON may round a float's last bit; nothing else may differ.
        assert_eq!(a.anomaly, b.anomaly, "sample {i}");
        assert!(
            (a.z - b.z).abs() < 1e-6 && (a.expected - b.expected).abs() < 1e-6,
            "sample {i}"
        );
        if i == 300 {
            let json = serde_json::to_string(&kept).unwrap();
            kept = serde_json::from_str(&json).unwrap();
        }
    }
    assert_eq!(
        (whole.samples, whole.snapshots.len()),
        (kept.samples, kept.snapshots.len())
    );
}

#[test]
fn configs_that_cannot_work_are_refused() {
    for (json, field) in [
        (r#"{"metric": "m", "window": "10m"}"#, "window"),
        (r#"{"metric": "m", "critical_at": 0}"#, "critical_at"),
        (
            r#"{"metric": "m", "sensitivity": {"spike": -1}}"#,
            "sensitivity.spike",
        ),
    ] {
        let e = Anomaly::new(serde_json::from_str(json).unwrap())
            .err()
            .unwrap();
        // The path is what `warden check` turns into a line and column.
        assert_eq!(e.path(), Some(field), "{json}: {e}");
    }
    assert!(
        serde_json::from_str::<Config>(r#"{"metric": "m", "sensitivity": {"spikes": 1}}"#).is_err()
    );
}

/// The series `m` holding the first `upto` samples of `(t, v)`.
fn mock_series(t: &[i64], v: &[f64], upto: usize) -> Series {
    let points: Vec<(i64, f64)> = t[..upto]
        .iter()
        .copied()
        .zip(v[..upto].iter().copied())
        .collect();
    Series::new("m", &[("host", "a")], &points)
}

#[test]
fn the_models_are_kept_as_plugin_state_and_fed_only_new_samples() {
    use warden_sdk::detector::Detector as _;
    use warden_sdk::mock::{MockHost, invocation, stored_state};
    let d = detector(r#"{"metric": "m", "window": "2h"}"#);
    let (t, mut v) = series(600, |_| 100.0);
    v[599] += 12.0;
    // First evaluation at minute 300: learned from the 2 h window.
    MockHost::new()
        .now_ms(t[299])
        .series(mock_series(&t, &v, 300))
        .install();
    assert!(d.detect(&invocation("a")).unwrap().is_empty());
    let learned: Learned = stored_state().expect("the models are saved");
    let track = &learned.series["host=a"];
    assert_eq!(track.last.0, t[299]);
    assert_eq!(
        track.model.samples, 120,
        "the 2 h window, a sample a minute"
    );
    // Later evaluations (closer together than the window) continue that
    // model with what is new, so by minute 600 it has learned 420 samples,
    // more than any window holds.
    let mut state = learned;
    for end in [400, 500, 599] {
        MockHost::new()
            .now_ms(t[end - 1])
            .state(&state)
            .series(mock_series(&t, &v, end))
            .install();
        assert!(d.detect(&invocation("a")).unwrap().is_empty(), "at {end}");
        state = stored_state().unwrap();
    }
    assert_eq!(state.series["host=a"].model.samples, 120 + 299);
    // The spike at minute 600 is found by the kept model.
    MockHost::new()
        .now_ms(t[599])
        .state(&state)
        .series(mock_series(&t, &v, 600))
        .install();
    let found = d.detect(&invocation("a")).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].evidence_of("at_ms"), Some(t[599] as f64));
    let state: Learned = stored_state().unwrap();
    assert_eq!(state.series["host=a"].model.samples, 120 + 300);
}

#[test]
fn models_that_outgrow_the_state_limit_fall_back_to_the_window() {
    use warden_sdk::detector::Detector as _;
    use warden_sdk::mock::{MockHost, invocation, logs, stored_state};
    let d = detector(r#"{"metric": "m", "window": "2h"}"#);
    let (t, mut v) = series(300, |_| 100.0);
    v[299] += 12.0;
    MockHost::new()
        .now_ms(t[299])
        .state_limit(1000)
        .series(mock_series(&t, &v, 300))
        .install();
    // The spike is still found, from the window; nothing is kept, and the
    // log says why and what to do.
    assert_eq!(d.detect(&invocation("a")).unwrap().len(), 1);
    assert!(stored_state::<Learned>().is_none());
    assert!(
        logs().iter().any(|(_, m)| m.contains("state_limit")),
        "{:?}",
        logs()
    );
}

#[test]
fn a_spike_on_a_seasonal_noisy_series_is_found_at_once() {
    // A daily cycle of 5 spreads, Gaussian noise, and a spike of 9 spreads
    // in the second day, then another on the other side: the first samples,
    // scored while the spread was still being set (from a thousandth of the
    // level), must not have taught the tail that such excursions are normal.
    let cycle = |m: i64| 10.0 + 5.0 * (m as f64 / 1440.0 * std::f64::consts::TAU).sin();
    let (t, mut v) = series(3 * 1440, cycle);
    let spikes = [(2000, 9.0), (3100, -9.0)];
    for (at, size) in spikes {
        v[at] += size;
    }
    let s = Sensitivity::default();
    let mut m = Model::new();
    let found: Vec<(usize, Option<Kind>)> = t
        .iter()
        .zip(&v)
        .enumerate()
        .map(|(i, (t, v))| (i, m.observe(*t, *v, &s).anomaly))
        .filter(|(_, a)| *a == Some(Kind::Spike))
        .collect();
    assert_eq!(
        found,
        spikes
            .iter()
            .map(|(at, _)| (*at, Some(Kind::Spike)))
            .collect::<Vec<_>>()
    );
}

/// What the model flags over three days of a daily cycle of 5 spreads with
/// a ramp of 0.2 spreads a minute for the two hours from `at`, then back.
fn flagged_around_a_ramp(at: i64) -> Vec<(usize, Kind)> {
    let cycle = |m: i64| 100.0 + 5.0 * (m as f64 / 1440.0 * std::f64::consts::TAU).sin();
    let ramp = at..at + 120;
    let (t, v) = series(3 * 1440, |m| {
        cycle(m)
            + if ramp.contains(&m) {
                0.2 * (m - ramp.start) as f64
            } else {
                0.0
            }
    });
    let s = Sensitivity::default();
    let mut m = Model::new();
    let found: Vec<(usize, Kind)> = t
        .iter()
        .zip(&v)
        .enumerate()
        .filter_map(|(i, (t, v))| m.observe(*t, *v, &s).anomaly.map(|a| (i, a)))
        .collect();
    assert!(
        found.iter().any(|(i, _)| ramp.contains(&(*i as i64))),
        "{found:?}"
    );
    found
}

#[test]
fn a_ramp_on_a_seasonal_series_is_not_expected_again_the_next_day() {
    // Found then, and the day after, when the series is normal at that
    // time, nothing is raised: the cycle, in use by then, did not learn it.
    let found = flagged_around_a_ramp(1440 + 600);
    let next_day: Vec<_> = found.iter().filter(|(i, _)| *i >= 2 * 1440).collect();
    assert!(next_day.is_empty(), "{next_day:?}");
}

#[test]
fn a_ramp_in_the_first_day_of_a_seasonal_series_is_not_expected_again() {
    // The first day, before the cycle is known, is learned into it as it
    // comes, but the ramp's flagged samples barely: the next day's normal
    // samples then are not anomalous.
    let found = flagged_around_a_ramp(600);
    let later: Vec<_> = found.iter().filter(|(i, _)| *i >= 1440).collect();
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn grown_heavy_tailed_noise_is_found() {
    // Student-t noise (4 degrees of freedom, as the detectors bench draws
    // it), grown 3.5 times for two hours late in the first day (when the
    // tests are cautious). Its squared residuals, clipped and in units of
    // their usual size, average little past the short mean's threshold, so
    // the mean wavers under it between the large values; the CUSUM adds
    // each excess up. Over 16 draws, all but a few are found.
    let grown = 1200..1320;
    let found = (1..=16)
        .filter(|&seed| {
            let mut rng = scenarios::Rng::new(seed);
            let mut m = Model::new();
            let s = Sensitivity::default();
            (0..1440).any(|i| {
                let chi: f64 = (0..4).map(|_| rng.normal().powi(2)).sum();
                let e = rng.normal() / (chi / 4.0).sqrt() / 2f64.sqrt();
                let scale = if grown.contains(&i) { 3.5 } else { 1.0 };
                let a = m.observe(T0 + i * MIN, 100.0 + scale * e, &s).anomaly;
                grown.contains(&i) && a == Some(Kind::Variance)
            })
        })
        .count();
    assert!(found >= 12, "found in {found} of 16");
}

#[test]
fn steady_heavy_tailed_noise_raises_nothing() {
    // Student-t noise and nothing else, three days, several draws: its
    // large values are normal for it, so no test that adds residuals up
    // (shift, variance, drift) may make a finding of them. (A lone value
    // past the spike threshold still may: its tail is a power law.)
    for seed in 1..=8 {
        let mut rng = scenarios::Rng::new(seed);
        let mut m = Model::new();
        let s = Sensitivity::default();
        let found: Vec<(i64, Kind)> = (0..3 * 1440)
            .filter_map(|i| {
                let chi: f64 = (0..4).map(|_| rng.normal().powi(2)).sum();
                let e = rng.normal() / (chi / 4.0).sqrt() / 2f64.sqrt();
                let a = m.observe(T0 + i * MIN, 100.0 + e, &s).anomaly;
                a.filter(|a| *a != Kind::Spike).map(|a| (i, a))
            })
            .collect();
        assert!(found.is_empty(), "seed {seed}: {found:?}");
    }
}

/// In how many of 16 draws of Student-t noise (4 degrees of freedom, as the
/// detectors bench draws it), grown `scale` times for the two hours from
/// minute `start`, a Variance finding comes within `within` samples.
fn grown_heavy_noise_found(scale: f64, start: i64, within: i64) -> usize {
    (1..=16)
        .filter(|&seed| {
            let mut rng = scenarios::Rng::new(seed);
            let mut m = Model::new();
            let s = Sensitivity::default();
            (0..start + 120).any(|i| {
                let chi: f64 = (0..4).map(|_| rng.normal().powi(2)).sum();
                let e = rng.normal() / (chi / 4.0).sqrt() / 2f64.sqrt();
                let k = if i >= start { scale } else { 1.0 };
                let a = m.observe(T0 + i * MIN, 100.0 + k * e, &s).anomaly;
                (start..start + within).contains(&i) && a == Some(Kind::Variance)
            })
        })
        .count()
}

#[test]
fn grown_heavy_tailed_noise_early_in_the_first_day_is_found() {
    // Eight hours in, the tail is still young. The old CUSUM of squared
    // residuals (clipped at 4 spreads, in units of a second moment still
    // being learned) found noise grown 3.5 times in 7 of 16 draws over the
    // two hours; a bounded score with an allowance of half the threshold's
    // finds it in 14.
    let found = grown_heavy_noise_found(3.5, 500, 120);
    assert!(found >= 12, "found in {found} of 16");
}

#[test]
fn grown_heavy_tailed_noise_in_a_known_tail_is_found() {
    // Once the tail is known to be heavy, a lone large value adds at most
    // 5 less the allowance, yet noise grown 3.5 times still adds up.
    let found = grown_heavy_noise_found(3.5, 2000, 20);
    assert!(found >= 12, "found within 20 samples in {found} of 16");
}

#[test]
fn steady_light_tailed_noise_raises_no_variance() {
    // Three days of Gaussian noise, several draws: once the tail is known
    // to be light, the score is near z², and must not add up to a finding
    // on its own.
    for seed in 1..=8 {
        let mut rng = scenarios::Rng::new(100 + seed);
        let mut m = Model::new();
        let s = Sensitivity::default();
        let found: Vec<i64> = (0..3 * 1440)
            .filter(|&i| {
                let a = m.observe(T0 + i * MIN, 100.0 + rng.normal(), &s).anomaly;
                a == Some(Kind::Variance)
            })
            .collect();
        assert!(found.is_empty(), "seed {seed}: {found:?}");
    }
}

#[test]
fn a_model_saved_before_the_scale_cusum_loads() {
    // Older saves hold `variance_cusum` (squared units, up to 24 and more)
    // and no `scale_cusum`: the old value is not read, the new one starts at
    // 0, so an upgrade cannot raise on its first sample.
    let (t, v) = series(120, |_| 100.0);
    let s = Sensitivity::default();
    let mut m = Model::new();
    for (t, v) in t.iter().zip(&v) {
        m.observe(*t, *v, &s);
    }
    let mut json = serde_json::to_value(&m).unwrap();
    let fields = json.as_object_mut().unwrap();
    fields.remove("scale_cusum").unwrap();
    fields.insert("variance_cusum".into(), 30.0.into());
    let old: Model = serde_json::from_value(json).unwrap();
    assert_eq!(old.scale_cusum, 0.0);
    assert_eq!(old.samples, m.samples);
}

#[test]
fn grown_noise_does_not_teach_the_tail_so_the_next_growth_is_found_as_fast() {
    // Gaussian noise, grown 3.5 times for three hours on the second day,
    // then normal again, then grown again on the fourth. While the first
    // growth is flagged its residuals are not the series' normal noise: had
    // the tail learned them, it would count the series heavy-tailed for days
    // (a share past 4 spreads far above Gaussian's), and the second growth
    // would be met by the heavy-tailed test, slower, and the spike
    // thresholds lifted. Each second growth is found within the hour.
    let first = 1800..1980;
    let second = 4000..4120;
    let mut delays = Vec::new();
    for seed in 1..=8 {
        let mut rng = scenarios::Rng::new(300 + seed);
        let mut m = Model::new();
        let s = Sensitivity::default();
        let mut found = None;
        for i in 0..4120 {
            let k = if first.contains(&i) || second.contains(&i) {
                3.5
            } else {
                1.0
            };
            let a = m
                .observe(T0 + i * MIN, 100.0 + k * rng.normal(), &s)
                .anomaly;
            if i == second.start - 1 {
                assert!(
                    m.tail[0] < model::HEAVY_SHARE,
                    "seed {seed}: the tail learned the grown noise: {:?}",
                    m.tail
                );
            }
            if second.contains(&i) && a == Some(Kind::Variance) && found.is_none() {
                found = Some(i - second.start);
            }
        }
        delays.push(found.unwrap_or(i64::MAX));
    }
    assert!(delays.iter().all(|d| *d < 60), "{delays:?}");
}

#[test]
fn a_ramp_does_not_teach_autocorrelation_that_hides_the_next_shift() {
    // Independent Gaussian noise. On the second day a ramp of 0.2 spreads a
    // sample for almost three hours, then back to normal; a quarter of a
    // day later a shift of 4 spreads. While the ramp is flagged the level
    // lags it and its residuals all lean one way; had the autocorrelation
    // learned them, it would still read about 0.5 at the shift, and the
    // shift test, which discounts correlated residuals, would take well
    // over a hundred samples.
    let ramp = 1800..1960;
    let shift = 2500..2700;
    for seed in 1..=6 {
        let mut rng = scenarios::Rng::new(500 + seed);
        let mut m = Model::new();
        let s = Sensitivity::default();
        let mut found = None;
        for i in 0..shift.end {
            let mut v = 100.0 + rng.normal();
            if ramp.contains(&i) {
                v += 0.2 * (i - ramp.start) as f64;
            }
            if shift.contains(&i) {
                v += 4.0;
            }
            if i == shift.start {
                let rho = m.lag_product / m.square;
                assert!(
                    rho < 0.2,
                    "seed {seed}: autocorrelation {rho:.2} at the shift"
                );
            }
            let a = m.observe(T0 + i * MIN, v, &s).anomaly;
            if shift.contains(&i) && a.is_some() && found.is_none() {
                found = Some(i - shift.start);
            }
        }
        let found = found.unwrap_or(i64::MAX);
        assert!(
            found <= 10,
            "seed {seed}: the shift was found after {found} samples"
        );
    }
}

/// The first sample, from `from` on, at which the model flags `kind`, over
/// `minutes` of `value(minute, rng)`; `None` if it never does.
fn first_flag(
    seed: u64,
    minutes: i64,
    from: i64,
    kind: Kind,
    mut value: impl FnMut(i64, &mut scenarios::Rng) -> f64,
) -> Option<i64> {
    let mut rng = scenarios::Rng::new(seed);
    let mut m = Model::new();
    let s = Sensitivity::default();
    (0..minutes).find(|&i| {
        let v = value(i, &mut rng);
        m.observe(T0 + i * MIN, v, &s).anomaly == Some(kind) && i >= from
    })
}

/// Over draws `seeds` of `value(minute, rng)`, sorted, how many samples
/// after `start` the model first flags `kind` (`i64::MAX` if not within
/// `within`).
fn delays(
    seeds: std::ops::RangeInclusive<u64>,
    start: i64,
    within: i64,
    kind: Kind,
    value: impl Fn(i64, &mut scenarios::Rng) -> f64,
) -> Vec<i64> {
    let mut delays: Vec<i64> = seeds
        .map(|seed| {
            first_flag(seed, start + within, start, kind, |i, rng| value(i, rng))
                .map_or(i64::MAX, |i| i - start)
        })
        .collect();
    delays.sort_unstable();
    delays
}

#[test]
fn grown_noise_in_the_last_hour_of_the_spread_profile_to_be_seen_is_found() {
    // A daily cycle of 5 spreads; its profile of how noisy each hour is
    // starts once the cycle is known (minute 1404 here), and is used from
    // the moment every hour has been seen, that is from the first sample of
    // the hour seen last (minute 2760). Noise grown 3 times from its
    // second sample on: were that hour's few samples taken as its normal
    // noise, the grown noise would be expected there, and found only after
    // tens of samples.
    let cycle = |m: i64| 100.0 + 5.0 * (m as f64 / 1440.0 * std::f64::consts::TAU).sin();
    let start = 2762;
    let delays = delays(601..=608, start, 120, Kind::Variance, |i, rng| {
        let k = if i >= start { 3.0 } else { 1.0 };
        cycle(i) + k * rng.normal()
    });
    assert!(delays[3] <= 5, "delays {delays:?}");
}

#[test]
fn grown_light_tailed_noise_is_found_within_a_few_samples() {
    // Gaussian noise, its tail known light by the second day, grown 3
    // times (the least the detectors bench labels) from minute 2000. The
    // likelihood ratio of grown noise counts every large residual in full;
    // the bounded score it replaced (Student-t's, 12 degrees of freedom)
    // counted at most 13 less its allowance of 3 however far out, and took
    // a median of 6 samples over these draws where this takes 3.
    let start = 2000;
    let delays = delays(701..=716, start, 120, Kind::Variance, |i, rng| {
        let k = if i >= start { 3.0 } else { 1.0 };
        100.0 + k * rng.normal()
    });
    assert!(delays[7] <= 4, "delays {delays:?}");
}

#[test]
fn steady_autocorrelated_noise_does_not_add_up_to_grown_noise() {
    // AR(1) noise leaning 0.7 on the sample before, three days, several
    // draws. Its squared residuals come in runs: summed as they are, a run
    // of large ones adds up like grown noise. The variance CUSUM sums the
    // residuals freed of their autocorrelation, which are as independent
    // as Gaussian noise, and stays under its decision threshold (summing
    // the residuals themselves, it passed it in 4 of 8 draws). (The short
    // mean of squared residuals may still pass its own threshold in a long
    // run of large values, as it did before.)
    let s = Sensitivity::default();
    for seed in 1..=8 {
        let mut rng = scenarios::Rng::new(800 + seed);
        let mut m = Model::new();
        let mut ar = 0.0;
        let mut highest: f64 = 0.0;
        for i in 0..3 * 1440 {
            ar = 0.7 * ar + (1.0f64 - 0.49).sqrt() * rng.normal();
            m.observe(T0 + i * MIN, 100.0 + ar, &s);
            if i > 1440 {
                highest = highest.max(m.scale_cusum);
            }
        }
        let decision = 2.5 * s.variance;
        assert!(
            highest < decision,
            "seed {seed}: the CUSUM reached {highest:.1}"
        );
    }
}

#[test]
fn a_business_day_in_the_first_day_is_not_a_shift() {
    // A cycle high for about eight hours a day, 16 spreads from low to high,
    // its morning at a different hour in each draw; the first day, before
    // the cycle is known. Its morning climbs about a spread every ten
    // minutes, and the level, which follows the series over a quarter of an
    // hour, lags it by one and a half spreads for an hour: measured from
    // the level, 6 of these 8 mornings (or evenings) added up to a shift.
    // The shift test measures from the level carried along its slope.
    for seed in 1..=8 {
        let phase = seed as f64 * 0.7;
        let day = |m: i64| {
            let p = m as f64 / 1440.0 * std::f64::consts::TAU + phase;
            100.0 + 16.0 * (1.0 / (1.0 + (-6.0 * (p.sin() - 0.3)).exp()) - 0.5)
        };
        let found = first_flag(900 + seed, 1440, 0, Kind::Shift, |i, rng| {
            day(i) + rng.normal()
        });
        assert_eq!(found, None, "seed {seed}");
    }
}

/// The second day's two-hour ramp of 0.2 spreads a sample, then back.
const RAMP: std::ops::Range<i64> = 2040..2160;

/// Runs a model over Gaussian noise with [`RAMP`] for `minutes`, then
/// returns it and the last sample it flagged.
fn after_a_ramp(seed: u64, minutes: i64) -> (Model, Option<i64>) {
    let mut rng = scenarios::Rng::new(seed);
    let mut m = Model::new();
    let s = Sensitivity::default();
    let mut last = None;
    for i in 0..minutes {
        let mut v = 100.0 + rng.normal();
        if RAMP.contains(&i) {
            v += 0.2 * (i - RAMP.start) as f64;
        }
        if m.observe(T0 + i * MIN, v, &s).anomaly.is_some() {
            last = Some(i);
        }
    }
    (m, last)
}

#[test]
fn findings_end_within_two_hours_of_a_ramp() {
    // The shift CUSUM, capped at 5 times its threshold, ends its finding
    // within two hours of the drop, most of which the level takes to come
    // back down (uncapped, the sum reached 140 and the finding lasted three
    // hours after the drop).
    for seed in 1001..=1004 {
        let last = after_a_ramp(seed, RAMP.end + 360).1;
        let last = last.expect("the ramp is found");
        assert!(
            last < RAMP.end + 120,
            "seed {seed}: still flagged {} samples after the drop",
            last - RAMP.end
        );
    }
}

#[test]
fn the_variance_test_settles_soon_after_a_ramp() {
    // During the ramp and the drop the residuals are tens of spreads; the
    // variance CUSUM, capped at twice its threshold, is back under it
    // within the hour once the noise is normal (uncapped, it reached
    // hundreds, and was still over it six hours on).
    let s = Sensitivity::default();
    for seed in 1001..=1004 {
        let m = after_a_ramp(seed, RAMP.end + 60).0;
        assert!(
            m.scale_cusum < 2.5 * s.variance,
            "seed {seed}: {:.1} an hour after the ramp",
            m.scale_cusum
        );
    }
}

#[test]
fn a_shift_in_heavy_tailed_noise_is_found_within_a_few_samples() {
    // Student-t noise (4 degrees of freedom, unit variance), its tail known
    // heavy by the second day, shifted by 3 from minute 2000 (the least the
    // detectors bench labels). The shift test there adds up Student-t's
    // likelihood ratio, in which a single large value counts for little;
    // a shift still adds up within a few samples (a median of 4 over these
    // draws, where the clipped residuals took 3, at more false alarms in
    // noise that does not fit the model exactly).
    let start = 2000;
    let delays = delays(1101..=1116, start, 60, Kind::Shift, |i, rng| {
        let chi: f64 = (0..4).map(|_| rng.normal().powi(2)).sum();
        let e = rng.normal() / (chi / 4.0).sqrt() / 2f64.sqrt();
        100.0 + e + if i >= start { 3.0 } else { 0.0 }
    });
    assert!(delays[7] <= 4, "delays {delays:?}");
}
