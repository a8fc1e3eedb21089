use super::*;

fn sel(metric: &str, matchers: &[(&str, &str)]) -> SeriesSelector {
    SeriesSelector {
        metric: metric.into(),
        matchers: matchers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    }
}

fn store(max_series: usize, max_samples: usize) -> SeriesStore {
    SeriesStore::new(
        StoreLimits {
            max_series,
            max_samples,
            retention: Duration::from_secs(3600),
        },
        PiiKeys::default(),
    )
}

#[test]
fn query_filters_by_labels_and_window_and_keeps_order() {
    let s = store(10, 100);
    for t in 1..=5 {
        s.record("cpu", &[("core", "0")], t * 1000, t as f64)
            .unwrap();
        s.record("cpu", &[("core", "1")], t * 1000, -(t as f64))
            .unwrap();
    }
    let got = s.query(&sel("cpu", &[("core", "0")]), 2500, 5000);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].samples.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![3.0, 4.0, 5.0]
    );
    assert_eq!(s.query(&sel("cpu", &[]), 60_000, 5000).len(), 2);
    assert!(s.query(&sel("mem", &[]), 60_000, 5000).is_empty());
}

/// `query-reduced` in place gives what reducing the copied query gives,
/// for every reduction, grouped or not, across a wrapped ring, and is
/// refused past its budget.
#[test]
fn reducing_in_place_equals_reducing_the_copied_window() {
    use warden_core::records::{Aggregate, Over, Reduce, reduce_series};
    // Four samples kept: the ring wraps, so windows span both runs.
    let s = store(20, 4);
    for t in 1..=9i64 {
        for (host, zone) in [("a", "x"), ("b", "x"), ("c", "y")] {
            let v = match (host, t) {
                ("a", 6) => f64::NAN,
                // A counter reset.
                ("b", 7) => 1.0,
                _ => (t * (host.len() as i64 + 2)) as f64 + zone.len() as f64,
            };
            // Past validation, as a restored or replayed store may hold.
            let id = s
                .interner()
                .intern("m", &[("host", host), ("zone", zone)], Kind::Gauge)
                .unwrap();
            s.apply(&[(id, Op::Set, t * 1000, v)], |_, _, _| {});
        }
    }
    // A series with no sample in the window is left out of both.
    s.record("m", &[("host", "old"), ("zone", "y")], 500, 1.0)
        .unwrap();
    let overs = [
        Over::Latest,
        Over::Avg,
        Over::Min,
        Over::Max,
        Over::Sum,
        Over::Count,
        Over::Rate,
        Over::Increase,
        Over::Quantile,
    ];
    for over in overs {
        for by in [None, Some(vec!["zone".to_owned()]), Some(vec![])] {
            for aggregate in [Aggregate::Sum, Aggregate::Avg, Aggregate::Count] {
                let how = Reduce {
                    over,
                    quantile: Some(0.9),
                    by: by.clone(),
                    aggregate,
                };
                let (got, _) = s
                    .reduce_bounded(&sel("m", &[]), 3500, 9000, &how, usize::MAX)
                    .unwrap();
                let copied = s.query(&sel("m", &[]), 3500, 9000);
                assert_eq!(got, reduce_series(&copied, &how), "{how:?}");
                assert!(!got.is_empty(), "{how:?}");
            }
        }
    }
    let how = Reduce::default();
    let (all, used) = s
        .reduce_bounded(&sel("m", &[]), 3500, 9000, &how, usize::MAX)
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(matches!(
        s.reduce_bounded(&sel("m", &[]), 3500, 9000, &how, used - 1),
        Err(needed) if needed >= used - 1
    ));
    // A quantile's scratch copy of the samples counts: within a budget
    // the answer alone fits, it is refused.
    let quantile = Reduce {
        over: Over::Quantile,
        quantile: Some(0.5),
        ..Reduce::default()
    };
    assert!(
        s.reduce_bounded(&sel("m", &[]), 3500, 9000, &quantile, used)
            .is_err()
    );
    assert!(
        s.reduce_bounded(&sel("m", &[]), 3500, 9000, &quantile, used + 3 * 4 * 8)
            .is_ok()
    );
}

#[test]
fn the_latest_sample_is_the_newest_within_the_window_across_the_ring() {
    // Three samples kept: the ring wraps, so the newest sits in the
    // second of its two runs.
    let s = store(10, 3);
    for t in 1..=7 {
        s.record("q", &[("queue", "a")], t * 1000, t as f64)
            .unwrap();
    }
    // A late sample goes in time order, not last.
    s.record("q", &[("queue", "a")], 6500, 99.0).unwrap();
    s.record("q", &[("queue", "b")], 1000, 5.0).unwrap();
    let latest = |window_ms, now_ms| {
        let mut got = Vec::new();
        s.for_each_latest(&sel("q", &[]), window_ms, now_ms, |k, p| {
            got.push((k.labels[0].1.to_string(), p.at_ms, p.value));
        });
        got.sort_by(|a, b| a.0.cmp(&b.0));
        got
    };
    assert_eq!(
        latest(60_000, 7000),
        vec![("a".into(), 7000, 7.0), ("b".into(), 1000, 5.0)]
    );
    // Seen from before the newest: the newest at or before then.
    assert_eq!(
        latest(60_000, 6900),
        vec![("a".into(), 6500, 99.0), ("b".into(), 1000, 5.0)]
    );
    // `b` reported too long ago.
    assert_eq!(latest(2_000, 7000), vec![("a".into(), 7000, 7.0)]);
}

#[test]
fn a_cut_agrees_with_a_binary_search_on_steady_bursty_and_repeated_times() {
    // A small deterministic generator: no dependency for one test.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for case in 0..2_000 {
        let len = next(200) as usize;
        let mut t = next(1_000) as i64 - 500;
        let run: Vec<Sample> = (0..len)
            .map(|_| {
                // Steady, then bursts of equal times and long gaps.
                t += match case % 4 {
                    0 => 10,
                    1 => next(3) as i64,
                    2 => [0, 10, 10, 10, 5_000][next(5) as usize],
                    _ => next(100_000) as i64,
                };
                Sample {
                    at_ms: t,
                    value: 0.0,
                }
            })
            .collect();
        let lo = run.first().map_or(0, |s| s.at_ms) - 20;
        let hi = run.last().map_or(0, |s| s.at_ms) + 20;
        for _ in 0..50 {
            let q = lo + next((hi - lo + 1) as u64) as i64;
            assert_eq!(
                cut(&run, q),
                run.partition_point(|p| p.at_ms <= q),
                "case {case}, t {q}"
            );
        }
        for s in &run {
            for q in [s.at_ms - 1, s.at_ms, s.at_ms + 1] {
                assert_eq!(cut(&run, q), run.partition_point(|p| p.at_ms <= q));
            }
        }
    }
    let extreme = [
        Sample {
            at_ms: i64::MIN,
            value: 0.0,
        },
        Sample {
            at_ms: 0,
            value: 0.0,
        },
        Sample {
            at_ms: i64::MAX,
            value: 0.0,
        },
    ];
    for q in [i64::MIN, -1, 0, 1, i64::MAX - 1, i64::MAX] {
        assert_eq!(
            cut(&extreme, q),
            extreme.partition_point(|p| p.at_ms <= q),
            "{q}"
        );
    }
}

#[test]
fn ring_buffer_keeps_the_newest_samples_and_drops_the_expired() {
    let s = store(10, 3);
    for t in 1..=10 {
        s.record("m", &[], t, t as f64).unwrap();
    }
    let got = s.query(&sel("m", &[]), 1000, 10);
    assert_eq!(
        got[0].samples.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    let s = SeriesStore::new(
        StoreLimits {
            max_series: 10,
            max_samples: 100,
            retention: Duration::from_secs(10),
        },
        PiiKeys::default(),
    );
    for t in [0, 5_000, 9_000, 15_000, 20_000] {
        s.record("m", &[], t, 1.0).unwrap();
    }
    let got = s.range(&sel("m", &[]), i64::MIN, i64::MAX);
    assert_eq!(
        got[0].samples.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
        vec![15_000, 20_000]
    );
}

#[test]
fn late_samples_keep_time_order() {
    let s = store(10, 10);
    for t in [1, 3, 2] {
        s.record("m", &[], t, t as f64).unwrap();
    }
    let got = s.range(&sel("m", &[]), 0, 10);
    assert_eq!(
        got[0].samples.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn counters_accumulate_and_histograms_keep_observations() {
    let s = store(10, 10);
    let c = s.interner().intern("reqs", &[], Kind::Counter).unwrap();
    let h = s.interner().intern("lat", &[], Kind::Histogram).unwrap();
    let mut stored = Vec::new();
    s.apply(
        &[
            (c, Op::Add, 1, 2.0),
            (c, Op::Add, 2, 3.0),
            (h, Op::Observe, 2, 7.0),
        ],
        |id, at, v| stored.push((id, at, v)),
    );
    assert_eq!(stored, vec![(c, 1, 2.0), (c, 2, 5.0), (h, 2, 7.0)]);
    let r = s.aggregate(
        &sel("reqs", &[]),
        Duration::from_secs(1),
        2,
        &[Aggregation::Last, Aggregation::Rate],
    );
    // 3 more over 1 ms.
    assert_eq!(r.combined, vec![Some(5.0), Some(3000.0)]);
}

#[test]
fn aggregates_per_series_and_combined() {
    let s = store(10, 100);
    for t in 1..=4 {
        s.record("lat", &[("route", "a")], t * 1000, t as f64)
            .unwrap();
        s.record("lat", &[("route", "b")], t * 1000, 10.0 * t as f64)
            .unwrap();
    }
    let r = s.aggregate(
        &sel("lat", &[]),
        Duration::from_secs(60),
        4000,
        &[Aggregation::Avg, Aggregation::Max, Aggregation::Count],
    );
    assert_eq!(r.series.len(), 2);
    assert_eq!(r.series[0].values, vec![Some(2.5), Some(4.0), Some(4.0)]);
    assert_eq!(r.series[1].values, vec![Some(25.0), Some(40.0), Some(4.0)]);
    assert_eq!(r.combined, vec![Some(13.75), Some(40.0), Some(8.0)]);
    let r = s.aggregate(
        &sel("lat", &[("route", "a")]),
        Duration::from_millis(1500),
        4000,
        &[Aggregation::Sum],
    );
    assert_eq!(r.combined, vec![Some(7.0)]);
}

#[test]
fn many_series_are_aggregated_in_parallel_with_the_same_answer() {
    let n = PARALLEL_FROM * 2 + 3;
    let s = store(n, 10);
    for i in 0..n {
        let name = i.to_string();
        for t in 0..3i64 {
            // Each series rises by i per second.
            s.record("m", &[("i", &name)], t * 1000, (i as i64 * t) as f64)
                .unwrap();
        }
    }
    let aggs = [
        Aggregation::Count,
        Aggregation::Sum,
        Aggregation::Rate,
        Aggregation::Max,
        Aggregation::Quantile(0.5),
    ];
    let r = s.aggregate(&sel("m", &[]), Duration::from_secs(60), 2000, &aggs);
    assert_eq!(r.series.len(), n);
    let total: i64 = (0..n as i64).sum();
    assert_eq!(r.combined[0], Some(3.0 * n as f64));
    assert_eq!(r.combined[1], Some(3.0 * total as f64));
    assert_eq!(r.combined[2], Some(total as f64));
    assert_eq!(r.combined[3], Some(2.0 * (n - 1) as f64));
    assert!(r.combined[4].is_some());
    // Series keep their order and their own values.
    assert_eq!(r.series[7].values[2], Some(7.0));
    // Each scope computes only its part, with the same answers.
    let each = s.aggregate_by(
        &sel("m", &[]),
        Duration::from_secs(60),
        2000,
        &aggs,
        Scope::Each,
    );
    assert!(each.combined.is_empty());
    assert_eq!(each.series[7].values, r.series[7].values);
    let all = s.aggregate_by(
        &sel("m", &[]),
        Duration::from_secs(60),
        2000,
        &aggs,
        Scope::Combined,
    );
    assert!(all.series.is_empty());
    // The combined sketch fed directly gives the same quantile too.
    assert_eq!(all.combined, r.combined);
    // A combined rate over series of one sample each says nothing.
    let one = store(n, 10);
    for i in 0..n {
        one.record("m", &[("i", &i.to_string())], i as i64, 1.0)
            .unwrap();
    }
    let r = one.aggregate(
        &sel("m", &[]),
        Duration::from_secs(60),
        n as i64,
        &[Aggregation::Rate],
    );
    assert_eq!(r.combined, vec![None]);
}

#[test]
fn the_series_cap_refuses_new_series_with_a_clear_error() {
    let s = store(2, 3);
    s.record("m", &[("i", "1")], 1, 1.0).unwrap();
    s.record("m", &[("i", "2")], 1, 1.0).unwrap();
    let e = s.record("m", &[("i", "3")], 1, 1.0).unwrap_err();
    assert!(e.to_string().contains("limit of 2 series"), "{e}");
    s.record("m", &[("i", "1")], 2, 1.0).unwrap();
    assert_eq!((s.series_count(), s.refused_series()), (2, 1));
    assert!(s.record("m", &[], 1, f64::NAN).is_err());
}
