//! The tuning aid: the online model over the detectors bench's generated
//! scenarios, scored as the bench scores them.

use super::*;

/// Tuning aid: the online model over generated scenarios, natively, one pass
/// per series (no window recompute). Run with `--ignored --nocapture`.
#[test]
#[ignore = "a tuning aid, not a test"]
fn tune() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    // SEED 1 is the detectors bench's default.
    let seed = env("SEED", 42);
    let days = env("DAYS", 4) as usize;
    let sens = Sensitivity::default();
    let series = scenarios::anomaly_series(seed, n, days);
    let mut per_kind: BTreeMap<&str, (usize, usize, Vec<usize>)> = BTreeMap::new();
    let mut false_alarms = 0;
    let mut by_noise: BTreeMap<String, usize> = BTreeMap::new();
    for (si, s) in series.iter().enumerate() {
        let times: Vec<i64> = (0..s.values.len())
            .map(|i| scenarios::START_MS + i as i64 * scenarios::STEP_MS)
            .collect();
        let (times, values) = if s.counter {
            rates(&times, &s.values)
        } else {
            (times, s.values.clone())
        };
        let _ = &sens;
        let d = Anomaly::new(serde_json::from_str(r#"{"metric": "m"}"#).unwrap()).unwrap();
        let window = (26 * 3_600_000 / scenarios::STEP_MS) as usize;
        let mut active = false;
        let mut quiet = 0;
        let mut raises = Vec::new();
        let online = std::env::var("ONLINE").is_ok();
        let mut m = Model::new();
        for (i, &t) in times.iter().enumerate() {
            let found = if online {
                let thr = m.spike_threshold(&d.0.sensitivity, scenarios::STEP_MS as f64);
                let sc = m.observe(t, values[i], &d.0.sensitivity);
                // TRACE=series,from,to[,step]: the model's state sample by sample
                // (every step-th).
                if let Ok(tr) = std::env::var("TRACE") {
                    let p: Vec<usize> = tr.split(',').map(|x| x.parse().unwrap()).collect();
                    let step = p.get(3).copied().unwrap_or(1);
                    if p[0] == si && (p[1]..p[2]).contains(&i) && (i - p[1]).is_multiple_of(step) {
                        println!(
                            "{i} rho {:.2} v {:.3} exp {:.3} lvl {:.3} base {:.3} z {:.2} spread {:.3} sm {:.2} cu {:.1}/{:.1} var {:.2}/{:.1} at {:.3} d {} {:?} {:.2}",
                            m.lag_product / m.square,
                            values[i],
                            sc.expected,
                            m.level,
                            m.base,
                            sc.z,
                            m.spread(),
                            m.second_moment,
                            m.cusum_high,
                            m.cusum_low,
                            m.variance,
                            m.scale_cusum,
                            m.spread_at(t),
                            m.daily_on,
                            sc.anomaly,
                            sc.strength
                        );
                    }
                }
                if std::env::var("VS").is_ok() && sc.anomaly == Some(Kind::Spike) {
                    println!(
                        "SPIKE series {si} at {} z {:.2} thresholds {thr:.1?}",
                        (t - scenarios::START_MS) / scenarios::STEP_MS,
                        sc.z
                    );
                }
                sc.anomaly
            } else {
                let from = (i + 1).saturating_sub(window);
                d.scan(&times[from..=i], &values[from..=i], t)
                    .and_then(|f| f.score.anomaly)
            };
            if found.is_some() {
                quiet = 0;
                if !active {
                    active = true;
                    raises.push((
                        ((t - scenarios::START_MS) / scenarios::STEP_MS) as usize,
                        found,
                    ));
                }
            } else if active {
                quiet += 1;
                if quiet >= 3 {
                    active = false;
                }
            }
        }
        let mut hit = vec![None; s.windows.len()];
        for (r, why) in &raises {
            let w = s
                .windows
                .iter()
                .position(|w| *r >= w.start && *r < w.end + 60);
            match w {
                Some(i) => {
                    if hit[i].is_none() {
                        hit[i] = Some(r - s.windows[i].start);
                    }
                }
                None => {
                    false_alarms += 1;
                    *by_noise
                        .entry(format!("{:?} {:?}", s.noise, why))
                        .or_default() += 1;
                    if std::env::var("V").is_ok() {
                        // The windows before it: a false alarm a day after
                        // one is the model having learned the anomaly.
                        let before: Vec<String> = s
                            .windows
                            .iter()
                            .filter(|w| w.start <= *r)
                            .map(|w| format!("{} {}..{}", w.kind.name(), w.start, w.end))
                            .collect();
                        println!(
                            "FA series {si} at {r} (day {}, {:?} {:?}, seasonal {}, counter {}) after {before:?}",
                            r / 1440,
                            why,
                            s.noise,
                            s.seasonal,
                            s.counter
                        );
                    }
                }
            }
        }
        for (w, h) in s.windows.iter().zip(hit) {
            let e = per_kind.entry(w.kind.name()).or_default();
            e.0 += 1;
            if let Some(d) = h {
                e.1 += 1;
                e.2.push(d);
                // DELAYS=1: each detection's delay, to see what is slow.
                if std::env::var("DELAYS").is_ok() {
                    println!(
                        "HIT series {si} {:?} {}..{} delay {d} ({:?}, seasonal {}, counter {})",
                        w.kind, w.start, w.end, s.noise, s.seasonal, s.counter
                    );
                }
            } else if std::env::var("V").is_ok() {
                println!(
                    "MISS series {si} {:?} {}..{} ({:?}, seasonal {}, counter {})",
                    w.kind, w.start, w.end, s.noise, s.seasonal, s.counter
                );
                if w.kind == scenarios::Kind::Spike {
                    // What the model said of the spike's samples (and the
                    // one after): why it was not enough.
                    let mut m = Model::new();
                    for (i, &t) in times.iter().enumerate() {
                        let k = ((t - scenarios::START_MS) / scenarios::STEP_MS) as usize;
                        let thr = m.spike_threshold(&d.0.sensitivity, scenarios::STEP_MS as f64);
                        let sc = m.observe(t, values[i], &d.0.sensitivity);
                        if k >= w.start && k <= w.end {
                            println!(
                                "  at {k}: z {:.2} {:?} thresholds {thr:.1?} tail {:.5?}",
                                sc.z, sc.anomaly, m.tail
                            );
                        }
                    }
                }
            }
        }
    }
    let (mut total, mut detected, mut delays) = (0, 0, Vec::new());
    for (k, (n, d, ds)) in &per_kind {
        let mut ds = ds.clone();
        ds.sort_unstable();
        println!(
            "{k:16} {d}/{n} median delay {:?}",
            ds.get(ds.len().saturating_sub(1) / 2)
        );
        total += n;
        detected += d;
        delays.extend(ds);
    }
    delays.sort_unstable();
    println!(
        "seed {seed}: recall {:.1}% precision {:.1}% ({false_alarms} false alarms over {} series-days) median delay {:?}",
        100.0 * detected as f64 / total as f64,
        100.0 * detected as f64 / (detected + false_alarms) as f64,
        n * days,
        delays.get(delays.len().saturating_sub(1) / 2)
    );
    println!("false alarms by noise: {by_noise:?}");
}
